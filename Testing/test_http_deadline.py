"""Total deadlines on our HTTP clients (issue 16 item 3): FHIR requests and tool calls, DICOMweb.

A server that sends one byte every half second never trips a per-read timeout: before the
deadline, `verify_fhir_connection` with `timeout_s: 10` waited ~500 s for such a server. The
trickling server below is a FAKE: no real FHIR or DICOMweb server (sekmet, Orthanc) can be made
to drip its answer. It speaks just enough HTTP/1.1 to be read by `requests`. The bounds asserted
are generous (a tenth of what the drip takes), not timing measurements.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from fixtures.fhir import call_error, fhir_services
from SlicerMCPLib.core.domain_config import DicomNode
from SlicerMCPLib.core.errors import ErrorCode, SlicerMCPError

DRIP_S = 0.5  # one byte per half second
BODY = b'{"resourceType": "CapabilityStatement", "fhirVersion": "4.0.1", "rest": []}' + b" " * 200
DRIP_TOTAL_S = DRIP_S * (len(BODY) + 60)  # status line and headers drip too: ~170 s


@dataclass
class DripServer:
    """FAKE HTTP server: answers every request with `status`, byte by byte (or at once if not `drip`)."""

    url: str = ""
    status: int = 200
    drip: bool = True
    requests: int = 0
    sockets: list[socket.socket] = field(default_factory=list)


def _read_request(conn: socket.socket) -> None:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    length = next(
        (
            int(line.split(b":", 1)[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        ),
        0,
    )
    while len(rest) < length:
        chunk = conn.recv(65536)
        if not chunk:
            return
        rest += chunk


def _answer(server: DripServer, conn: socket.socket) -> None:
    try:
        _read_request(conn)
        server.requests += 1
        reason = b"OK" if server.status == 200 else b"Service Unavailable"
        answer = (
            b"HTTP/1.1 %d %s\r\nContent-Type: application/fhir+json\r\nContent-Length: %d\r\n\r\n"
            % (server.status, reason, len(BODY))
        ) + BODY
        if not server.drip:
            conn.sendall(answer)
            return
        for byte in answer:
            conn.sendall(bytes([byte]))
            time.sleep(DRIP_S)
    except OSError:  # the client gave up: that is the point
        pass
    finally:
        conn.close()


@pytest.fixture
def drip() -> Iterator[DripServer]:
    server = DripServer()
    listener = socket.create_server(("127.0.0.1", 0))
    server.url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    server.sockets.append(listener)

    def accept() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            server.sockets.append(conn)
            threading.Thread(target=_answer, args=(server, conn), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    yield server
    for sock in server.sockets:
        sock.close()


def _fhir(url: str, **server) -> object:
    return fhir_services({"s": {"url": f"{url}/fhir", **server}}, current="s")


@pytest.mark.parametrize(
    ("tool", "args"), [("verify_fhir_connection", {}), ("fhir_search_patient", {"family": "Drip"})]
)
def test_a_trickling_fhir_server_fails_at_the_request_deadline(
    drip: DripServer, tool: str, args: dict
) -> None:
    started = time.monotonic()
    err = call_error(_fhir(drip.url, timeout_s=2, retries=3), tool, args)
    waited = time.monotonic() - started
    assert err["code"] == ErrorCode.SLICER_TIMEOUT
    assert err["details"]["setting"] == "fhir_servers.s.timeout_s" and err["details"]["server"] == "s"
    assert "raise fhir_servers.s.timeout_s" in err["message"] and "verify_fhir_connection" in err["message"]
    assert drip.requests == 1  # a timeout is not retried
    assert waited < DRIP_TOTAL_S / 10  # the drip would take ~170 s


def test_a_fhir_tool_call_ends_at_its_own_deadline_whatever_its_requests_do(drip: DripServer) -> None:
    """Each request is quick (503 at once), but retries and their waits (1, 2, 4 ... 512 s) would
    go on for 17 minutes: the call's total deadline (timeouts.fhir_call_s) ends it."""
    drip.status, drip.drip = 503, False
    services = fhir_services(
        {"s": {"url": f"{drip.url}/fhir", "retries": 10, "retry_backoff_s": 1.0}},
        current="s",
        timeouts={"fhir_call_s": 3},
    )
    started = time.monotonic()
    err = call_error(services, "verify_fhir_connection")
    waited = time.monotonic() - started
    assert err["code"] == ErrorCode.SLICER_TIMEOUT and err["details"]["setting"] == "timeouts.fhir_call_s"
    assert "the FHIR tool call took longer than 3 s" in err["message"]
    assert 2 <= drip.requests <= 4
    assert waited < 60


def _node(url: str, **extra) -> DicomNode:
    return DicomNode(host="127.0.0.1", port=104, ae_title="DRIP", dicomweb_url=f"{url}/dicom-web", **extra)


def test_a_trickling_dicomweb_metadata_answer_fails_at_timeout_s(drip: DripServer) -> None:
    from SlicerMCPLib.dicom.metadata import series_headers
    from SlicerMCPLib.dicom.move import Target

    started = time.monotonic()
    with pytest.raises(SlicerMCPError) as caught:
        series_headers(_node(drip.url, timeout_s=2), "pacs", Target(generate_uid(), generate_uid()), dict)
    assert caught.value.code == ErrorCode.SLICER_TIMEOUT
    assert caught.value.details["setting"] == "nodes.pacs.timeout_s"
    assert time.monotonic() - started < DRIP_TOTAL_S / 10


def test_a_trickling_stow_answer_fails_at_transfer_timeout_s(drip: DripServer) -> None:
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian

    from SlicerMCPLib.dicom.stow import stow

    ds = Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID = "1.2.840.10008.5.1.4.1.1.7", generate_uid()
    ds.PatientID = "DRIP"
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    started = time.monotonic()
    with pytest.raises(SlicerMCPError) as caught:
        stow(_node(drip.url, transfer_timeout_s=2), [ds], node_name="pacs")
    assert caught.value.code == ErrorCode.SLICER_TIMEOUT
    assert caught.value.details["setting"] == "nodes.pacs.transfer_timeout_s"
    assert "c-store" in caught.value.message
    assert time.monotonic() - started < DRIP_TOTAL_S / 10
