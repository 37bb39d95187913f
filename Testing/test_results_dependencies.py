"""highdicom needs pydicom 3: beside Slicer 5.10's pydicom 2.4 it is not installed, and SEG/SR export
says so with a coded error, while loading a SEG (pydicom only) still works.

The pydicom 2.4 run uses the folder `scripts/setup.sh --test` makes (as test_module_pydicom2.py does).
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

CHECKS = textwrap.dedent(
    """
    import io, json, os
    import numpy as np, pydicom
    from fixtures.orthanc import make_ct_series
    from SlicerMCPLib.core.errors import SlicerMCPError
    from SlicerMCPLib.core.scene_backend import SegmentationArray, SegmentMask
    from SlicerMCPLib.dicom.loader import load_series
    from SlicerMCPLib.dicom.part10 import write_file
    from SlicerMCPLib.dicom.seg_export import build_seg
    from SlicerMCPLib.dicom.seg_load import decode_seg
    from SlicerMCPLib.hosts import dependencies

    spec, datasets = make_ct_series()
    blobs = []
    for ds in datasets:
        buf = io.BytesIO(); write_file(ds, buf); blobs.append(buf.getvalue())
    volume = load_series(blobs).volume
    mask = np.zeros(volume.array.shape, bool); mask[2:5, 3:9, 4:8] = True
    seg = SegmentationArray("s", [SegmentMask("1", "Lesion", mask)], "v", {}, volume.ijk_to_ras)
    out = {"pydicom": pydicom.__version__, "wants_highdicom": dependencies.missing_requirements(["highdicom>=99"]) != []}
    seg_file = os.environ["SEG_FILE"]
    try:
        built = build_seg(seg, datasets)
        built.save_as(seg_file)
    except SlicerMCPError as exc:
        out["error"] = str(exc.code)
        out["message"] = exc.message
    # a SEG written by the pydicom 3 run loads with either pydicom (onto its own geometry)
    stored = pydicom.dcmread(seg_file)
    decoded = decode_seg(stored)
    out["loaded_segments"] = [s.label for s in decoded.segments]
    out["voxels"] = int(sum(f.astype(bool).sum() for f in decoded.frames))
    print(json.dumps(out))
    """
)


def run_checks(extra_path: str | None, seg_file: Path) -> dict:
    import json

    paths = [p for p in (extra_path, str(PROJECT_ROOT / "Testing"), str(MODULE_DIR)) if p]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths), "SEG_FILE": str(seg_file)}
    done = subprocess.run(
        [sys.executable, "-c", CHECKS], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def seg_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SEG written with pydicom 3 and highdicom (the test below checks that run)."""
    return tmp_path_factory.mktemp("seg") / "seg.dcm"


def test_seg_export_with_pydicom_3(seg_file: Path) -> None:
    out = run_checks(None, seg_file)
    assert out["pydicom"].startswith("3.") and out["wants_highdicom"] and "error" not in out
    assert out["loaded_segments"] == ["Lesion"] and out["voxels"] == 3 * 6 * 4


def test_on_slicer_5_10_pydicom_highdicom_is_not_installed_and_export_says_why(seg_file: Path) -> None:
    if not (Path(PYDICOM2) / "pydicom").is_dir():
        pytest.fail(f"{PYDICOM2} holds no pydicom 2.4: run scripts/setup.sh --test")
    if not seg_file.exists():
        run_checks(None, seg_file)
    out = run_checks(PYDICOM2, seg_file)
    assert out["pydicom"].startswith("2.4.")
    assert out["wants_highdicom"] is False  # the installer leaves it out instead of failing on a conflict
    assert out["error"] == "NOT_SUPPORTED" and "Slicer 5.12" in out["message"]
    assert out["loaded_segments"] == ["Lesion"] and out["voxels"] == 3 * 6 * 4  # loading needs no highdicom
