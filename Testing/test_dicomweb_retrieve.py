"""DICOMweb WADO-RS retrieve against real Orthanc: parts read by their Content-Length (dicom/multipart.py).

A missing, deleted or truncated instance by DICOMweb is covered in test_dicom_faults.py; here: the
parts are byte for byte Orthanc's stored files however the body is split into reads, and a series
mixing transfer syntaxes loads voxel for voxel.
"""

from __future__ import annotations

import asyncio
import io
import random
from typing import Any

import numpy as np
import pytest
import requests
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, RLELossless
from test_dicom_tools import call, ok

from fixtures.orthanc import Orthanc, make_ct_series, orthanc_config, stored_values
from SlicerMCPLib.dicom import retrieve as retrieve_module
from SlicerMCPLib.dicom.move import Target
from SlicerMCPLib.dicom.retrieve import Arrivals, expected_instances, retrieve
from SlicerMCPLib.dicom.service import DicomService


def _stored_file(orthanc: Orthanc, sop_uid: str) -> bytes:
    r = requests.get(f"{orthanc.url}/instances/{orthanc.orthanc_id(sop_uid)}/file", timeout=30)
    r.raise_for_status()
    return r.content


@pytest.mark.parametrize("largest_read", [1, 7, 4096, 70_000])
def test_parts_are_the_stored_files_however_the_body_is_split(
    orthanc: Orthanc, monkeypatch: pytest.MonkeyPatch, largest_read: int
) -> None:
    """Orthanc's real answer, handed to the reader in reads of random sizes up to `largest_read`
    bytes (split inside boundaries, part headers and bodies): every part is its stored file."""
    config = orthanc_config(orthanc)
    service = DicomService(config)
    spec, ds = make_ct_series(slices=4, rows=40, columns=30)
    orthanc.upload(ds)
    real_body = retrieve_module.response_body
    rng = random.Random(largest_read)

    class OddReads(io.RawIOBase):
        def __init__(self, body: Any):
            self.body = body

        def readable(self) -> bool:
            return True

        def readinto(self, view: Any) -> int:
            data = self.body.read(rng.randint(1, min(len(view), largest_read)))
            view[: len(data)] = data
            return len(data)

    def odd_body(response: Any) -> Any:
        return io.BufferedReader(OddReads(real_body(response)), 16)

    monkeypatch.setattr(retrieve_module, "response_body", odd_body)
    try:
        name, node = service.node("orthanc")
        target = Target(spec.study_uid, spec.series_uid)
        expected = expected_instances(node, config.calling_aet, target, name)
        arrivals = Arrivals(expected, None)
        items = retrieve(node, config.calling_aet, target, arrivals, method="dicomweb", node_name=name)
        assert sorted(items) == sorted(str(d.SOPInstanceUID) for d in ds)
        for sop_uid, data in items.items():
            assert bytes(data) == _stored_file(orthanc, sop_uid)  # type: ignore[arg-type]
    finally:
        service.close()


def test_series_mixing_transfer_syntaxes_loads_voxel_for_voxel(
    orthanc: Orthanc, dicom_server: Any, headless_backend: Any
) -> None:
    """Explicit and implicit VR little endian (the fast header reader) and RLE Lossless (pydicom) in one
    series, retrieved as stored (transfer-syntax=*): every slice has its exact values and place."""
    spec, ds = make_ct_series(slices=6, rows=32, columns=28)
    syntaxes = [ExplicitVRLittleEndian, ImplicitVRLittleEndian, RLELossless] * 2
    for d, syntax in zip(ds, syntaxes, strict=True):
        if syntax == RLELossless:
            d.compress(RLELossless)
        else:
            d.file_meta.TransferSyntaxUID = syntax
    orthanc.upload(ds)
    stored = {s["TransferSyntax"] for s in _series_syntaxes(orthanc, [str(d.SOPInstanceUID) for d in ds])}
    assert stored == {ExplicitVRLittleEndian, ImplicitVRLittleEndian, RLELossless}

    result = ok(
        call(dicom_server, "load_series", {"series_instance_uid": spec.series_uid, "method": "dicomweb"})
    )
    assert result["loaded"][0]["slices"] == 6
    exported = asyncio.run(headless_backend.export_volume(result["loaded"][0]["node"]["id"]))
    expected = np.stack([stored_values(spec, k) for k in range(6)]).astype(np.int32) - 1024
    np.testing.assert_array_equal(exported.array, expected)


def _series_syntaxes(orthanc: Orthanc, sop_uids: list[str]) -> list[dict[str, str]]:
    out = []
    for uid in sop_uids:
        r = requests.get(f"{orthanc.url}/instances/{orthanc.orthanc_id(uid)}/metadata?expand", timeout=10)
        out.append(r.json())
    return out
