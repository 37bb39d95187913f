"""Our in-Slicer DICOM code with the pydicom Slicer 5.10 ships (2.4.4, with pynetdicom 2.1).

SlicerMCP never replaces Slicer's pydicom (docs/slicer-compatibility.md), so inside Slicer 5.10
the DICOM and RIS code runs on pydicom 2.4. The test environment has pydicom 3; the pydicom 2
run uses a folder holding the old pair, which `scripts/setup.sh --test` makes with
  .venv/bin/pip install --no-deps --target .test-tools/pydicom2 pydicom==2.4.4 pynetdicom==2.1.1
(SLICER_MCP_PYDICOM2_PATH names another folder). The same checks run on the installed pydicom 3.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from fixtures.module import MODULE_DIR, PROJECT_ROOT

PYDICOM2 = os.environ.get("SLICER_MCP_PYDICOM2_PATH") or str(PROJECT_ROOT / ".test-tools" / "pydicom2")

# writes a CT series as Part 10 files, reads it back as a volume, builds a C-FIND identifier and
# matches a worklist query: the pydicom calls our dicom/ and ris/ code makes without a peer
CHECKS = textwrap.dedent(
    """
    import io, sys
    import pydicom, pynetdicom
    from pydicom.dataset import Dataset
    from fixtures.orthanc import make_ct_series
    from SlicerMCPLib.dicom.part10 import write_file
    from SlicerMCPLib.dicom.loader import load_series
    from SlicerMCPLib.dicom.query import build_identifier
    from SlicerMCPLib.ris import worklist

    spec, datasets = make_ct_series()
    blobs = []
    for ds in datasets:
        buf = io.BytesIO()
        write_file(ds, buf)
        blobs.append(buf.getvalue())
    assert all(b[128:132] == b"DICM" for b in blobs)
    back = pydicom.dcmread(io.BytesIO(blobs[0]))
    assert back.file_meta.TransferSyntaxUID == datasets[0].file_meta.TransferSyntaxUID
    loaded = load_series(blobs)
    assert loaded.volume.array.shape[0] == len(datasets), loaded.volume.array.shape
    assert loaded.volume.attributes["DICOM.SeriesInstanceUID"] == str(datasets[0].SeriesInstanceUID)
    ident = build_identifier("study", ["StudyDate", "PatientName"], {"PatientID": "P1"})
    assert ident.QueryRetrieveLevel == "STUDY" and ident.PatientID == "P1"
    query = Dataset()
    query.PatientID = "P*"
    worklist.compile_query(query)
    print(pydicom.__version__, pynetdicom.__version__)
    """
)


def run_checks(extra_path: str | None) -> str:
    paths = [p for p in (extra_path, str(PROJECT_ROOT / "Testing"), str(MODULE_DIR)) if p]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
    done = subprocess.run(
        [sys.executable, "-c", CHECKS], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.strip()


def test_dicom_code_runs_on_the_installed_pydicom() -> None:
    assert run_checks(None).startswith("3.")


def test_dicom_code_runs_on_slicer_5_10_pydicom() -> None:
    if not (Path(PYDICOM2) / "pydicom").is_dir():
        pytest.fail(f"{PYDICOM2} holds no pydicom 2.4: run scripts/setup.sh --test")
    versions = run_checks(PYDICOM2)
    assert versions.startswith("2.4."), versions
