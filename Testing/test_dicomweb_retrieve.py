"""DICOMweb WADO-RS retrieve against real Orthanc: parts read by their Content-Length (dicom/multipart.py).

A missing, deleted or truncated instance by DICOMweb is covered in test_dicom_faults.py; here: the
parts are byte for byte Orthanc's stored files however the body is split into reads, a series
mixing transfer syntaxes loads voxel for voxel, and a series load is verified by the node's count
when it vouches for what arrived, by the instance list otherwise.
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
from fixtures.scene import error_of
from SlicerMCPLib.dicom import retrieve as retrieve_module
from SlicerMCPLib.dicom.loader import SeriesCollector
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


def _c_finds(caplog: pytest.LogCaptureFixture, level: str) -> int:
    return sum(1 for r in caplog.records if r.getMessage().startswith(f"C-FIND {level} on"))


@pytest.mark.parametrize("method", ["dicomweb", "c-get"])
def test_a_series_load_whose_count_vouches_for_it_asks_no_instance_list(
    orthanc: Orthanc, dicom_server: Any, headless_backend: Any, caplog: pytest.LogCaptureFixture, method: str
) -> None:
    """Every instance that arrived is of the series and there are as many as Orthanc counts for it
    (NumberOfSeriesRelatedInstances): that stands for the instance-level C-FIND, which is not made."""
    spec, ds = make_ct_series(slices=7, rows=24, columns=20)
    orthanc.upload(ds)
    caplog.set_level("INFO", logger="SlicerMCPLib.dicom")
    result = ok(call(dicom_server, "load_series", {"series_instance_uid": spec.series_uid, "method": method}))
    assert result["loaded"][0]["slices"] == 7
    assert _c_finds(caplog, "series") >= 1 and _c_finds(caplog, "instance") == 0
    exported = asyncio.run(headless_backend.export_volume(result["loaded"][0]["node"]["id"]))
    expected = np.stack([stored_values(spec, k) for k in range(7)]).astype(np.int32) - 1024
    np.testing.assert_array_equal(exported.array, expected)


@pytest.mark.parametrize("method", ["dicomweb", "c-get"])
def test_a_series_load_short_of_the_count_asks_for_the_list_and_names_the_missing(
    orthanc: Orthanc, dicom_server: Any, caplog: pytest.LogCaptureFixture, method: str
) -> None:
    """Orthanc still counts and lists an instance whose file it lost, and ends its answer there (the
    instances before it arrive): the count does not match, so the list is asked for and names the
    lost one among the missing. Nothing is loaded."""
    spec, ds = make_ct_series(slices=5, rows=24, columns=20)
    orthanc.upload(ds)
    lost = str(ds[3].SOPInstanceUID)
    orthanc.lose_file(lost)
    caplog.set_level("INFO", logger="SlicerMCPLib.dicom")
    err = error_of(
        call(dicom_server, "load_series", {"series_instance_uid": spec.series_uid, "method": method})
    )
    assert err["code"] == "RETRIEVE_INCOMPLETE" and lost in err["details"]["missing"], err
    assert _c_finds(caplog, "instance") == 1
    nodes = call(dicom_server, "list_scene_nodes", {"class_name": "vtkMRMLScalarVolumeNode"})
    assert nodes.structured_content["total"] == 0


def test_only_readable_arrivals_of_the_series_under_their_own_uid_can_stand_for_the_list() -> None:
    """What `all_of_series` refuses: an instance of another series, an unreadable one, one that
    arrived under another UID than its own, one that did not arrive at all."""
    spec, ds = make_ct_series(slices=3, rows=8, columns=6)
    _, other = make_ct_series(slices=1, rows=8, columns=6)
    collector = SeriesCollector()

    def encoded(d: Any) -> bytes:
        out = io.BytesIO()
        d.save_as(out, enforce_file_format=True)
        return out.getvalue()

    try:
        own = {str(d.SOPInstanceUID): encoded(d) for d in ds}
        for uid, data in own.items():
            collector.add(uid, data)
        assert collector.all_of_series(own, spec.series_uid)
        assert not collector.all_of_series([*own, "1.2.3.4"], spec.series_uid)  # never arrived
        collector.add(str(other[0].SOPInstanceUID), encoded(other[0]))
        assert not collector.all_of_series([*own, str(other[0].SOPInstanceUID)], spec.series_uid)
        collector.add("1.2.3.5", encoded(ds[0]))  # arrived under another UID than its own
        assert not collector.all_of_series([*own, "1.2.3.5"], spec.series_uid)
        collector.add("1.2.3.6", b"not DICOM at all")
        assert not collector.all_of_series([*own, "1.2.3.6"], spec.series_uid)
    finally:
        collector.close()
