"""The one-thread C-GET receive path (dicom/cget_receive.py).

Against Orthanc: what arrives is what Orthanc stores, element for element, and a series load by
C-GET hands the association back to pynetdicom in a state it can release. Faults Orthanc does not
produce on demand (an abort or a dropped link in the middle of the sub-operations, a silent peer)
come from pynetdicom acting as the C-GET SCP: a real DICOM implementation whose handler stops
the way the test says. The reader's buffer growth is tested on a socket pair with our own bytes.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Iterator
from typing import Any

import pydicom
import pytest
import requests
from pynetdicom import AE, evt
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    CTImageStorage,
    StudyRootQueryRetrieveInformationModelGet,
)

from fixtures.core import free_port
from fixtures.orthanc import Orthanc, make_ct_series, orthanc_config
from SlicerMCPLib.core.domain_config import DicomNode
from SlicerMCPLib.core.errors import ErrorCode, SlicerMCPError
from SlicerMCPLib.dicom import cget_receive
from SlicerMCPLib.dicom.move import Target
from SlicerMCPLib.dicom.retrieve import Arrivals, Expected, expected_instances, retrieve
from SlicerMCPLib.dicom.service import DicomService


def test_what_arrives_by_c_get_is_what_orthanc_stores(orthanc: Orthanc) -> None:
    """Every instance of a 6-slice series, read on one thread, equals Orthanc's stored file (pixels
    and every element); a second C-GET on a new association works as well (nothing left behind)."""
    config = orthanc_config(orthanc)
    service = DicomService(config)
    spec, ds = make_ct_series(slices=6, rows=64, columns=48)
    orthanc.upload(ds)
    try:
        name, node = service.node("orthanc-dimse")
        target = Target(spec.study_uid, spec.series_uid)
        expected = expected_instances(node, config.calling_aet, target, name)
        for _ in range(2):
            arrivals = Arrivals(expected, None)
            items = retrieve(node, config.calling_aet, target, arrivals, method="c-get", node_name=name)
            assert sorted(items) == sorted(str(d.SOPInstanceUID) for d in ds)
            for sop_uid, data in items.items():
                ours = pydicom.dcmread(pydicom.filebase.DicomBytesIO(bytes(data)))  # type: ignore[arg-type]
                r = requests.get(f"{orthanc.url}/instances/{orthanc.orthanc_id(sop_uid)}/file", timeout=30)
                theirs = pydicom.dcmread(pydicom.filebase.DicomBytesIO(r.content))
                assert ours.file_meta.MediaStorageSOPInstanceUID == sop_uid
                assert ours == theirs  # every data element, pixel data included
    finally:
        service.close()


class _GetScp:
    """pynetdicom as a C-GET SCP for one CT series; `stop_after` sub-operations, then `how`."""

    def __init__(self, datasets: list[Any], stop_after: int, how: str):
        self.datasets, self.stop_after, self.how = datasets, stop_after, how
        self.port = free_port()
        ae = AE(ae_title="GETSCP")
        ae.add_supported_context(StudyRootQueryRetrieveInformationModelGet)
        ae.add_supported_context(CTImageStorage, scu_role=True, scp_role=True)
        self.ae = ae
        self.server = ae.start_server(
            ("127.0.0.1", self.port), block=False, evt_handlers=[(evt.EVT_C_GET, self._on_get)]
        )

    def _on_get(self, event: Any) -> Iterator[Any]:
        yield len(self.datasets)
        for i, d in enumerate(self.datasets):
            if i == self.stop_after:
                if self.how == "abort":
                    event.assoc.abort()
                elif self.how == "drop":
                    event.assoc.dul.socket.socket.shutdown(socket.SHUT_RDWR)  # the link goes, no A-ABORT
                elif self.how == "silent":
                    time.sleep(4)
                return
            yield 0xFF00, d
        yield 0x0000, None

    def node(self) -> DicomNode:
        return DicomNode(host="127.0.0.1", port=self.port, ae_title="GETSCP", timeout_s=1.5, retries=0)

    def close(self) -> None:
        self.server.shutdown()


@pytest.mark.parametrize(
    ("how", "code"),
    [
        ("abort", ErrorCode.DICOM_ASSOCIATION_REJECTED),  # the peer's A-ABORT, read by our loop
        ("drop", ErrorCode.DICOM_NODE_UNREACHABLE),  # fake fault: the peer's socket shut mid-transfer
        ("silent", ErrorCode.DICOM_NODE_UNREACHABLE),  # fake fault: no answer for longer than timeout_s
    ],
)
def test_a_c_get_that_stops_midway_is_an_error_and_leaves_no_thread(how: str, code: ErrorCode) -> None:
    spec, ds = make_ct_series(slices=5, rows=16, columns=16)
    scp = _GetScp(ds, stop_after=2, how=how)
    threads = threading.active_count()
    try:
        expected = Expected({str(d.SOPInstanceUID): (spec.series_uid, CTImageStorage) for d in ds})
        arrivals = Arrivals(expected, None)
        started = time.perf_counter()
        with pytest.raises(SlicerMCPError) as err:
            retrieve(
                scp.node(), "SLICERMCP", Target(spec.study_uid, spec.series_uid), arrivals, method="c-get"
            )
        assert err.value.code == code, err.value
        assert time.perf_counter() - started < 6
        assert len(arrivals.items) == 2  # the two sent before the stop arrived, nothing more
    finally:
        scp.close()
    deadline = time.monotonic() + 5
    while threading.active_count() > threads and time.monotonic() < deadline:
        time.sleep(0.05)
    assert threading.active_count() <= threads


def test_a_c_get_answered_in_full_by_pynetdicom_arrives_in_full() -> None:
    """The same SCP without a stop: our C-GET-RQ and C-STORE-RSPs are what pynetdicom expects."""
    spec, ds = make_ct_series(slices=4, rows=16, columns=16)
    scp = _GetScp(ds, stop_after=-1, how="")
    try:
        expected = Expected({str(d.SOPInstanceUID): (spec.series_uid, CTImageStorage) for d in ds})
        arrivals = Arrivals(expected, None)
        items = retrieve(
            scp.node(), "SLICERMCP", Target(spec.study_uid, spec.series_uid), arrivals, method="c-get"
        )
        assert sorted(items) == sorted(expected.instances)
    finally:
        scp.close()


def test_the_reader_takes_pdus_larger_than_its_buffer_and_split_anyhow() -> None:
    a, b = socket.socketpair()
    try:
        bodies = [b"x" * 10, bytes(range(256)) * 12_000, b"", b"y" * 70_000]  # 3 MB > the 1 MB buffer
        wire = b"".join(struct.pack(">BBL", 4, 0, len(body)) + body for body in bodies)

        def send() -> None:
            for start in range(0, len(wire), 65_521):  # odd pieces: headers cut across reads
                a.sendall(wire[start : start + 65_521])
            a.close()

        sender = threading.Thread(target=send)
        sender.start()
        reader = cget_receive._Reader(b, size=1 << 20)
        for body in bodies:
            kind, got = reader.pdu()
            assert (kind, bytes(got)) == (4, body)
        with pytest.raises(cget_receive.LinkLost):
            reader.pdu()
        sender.join()
    finally:
        b.close()
