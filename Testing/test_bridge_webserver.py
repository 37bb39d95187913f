"""The WebServer backend against the test WebServer, below the MCP layer, and the peer's own
conformance to Slicer's WebServer (status codes, bodies, closing connections).
"""

from __future__ import annotations

import json
import socket
from urllib.parse import urlsplit

import anyio
import numpy as np
import pytest

from fixtures.bridge import PeerProcess
from SlicerMCPLib.backends.webserver import WebServerBackend
from SlicerMCPLib.backends.webserver_http import png_size
from SlicerMCPLib.backends.webserver_nrrd import decode, encode
from SlicerMCPLib.core.config import Config
from SlicerMCPLib.core.errors import ErrorCode, SlicerMCPError
from SlicerMCPLib.core.scene_backend import VolumeArray


def raw_request(url: str, method: str, path: str, body: bytes | None = None) -> tuple[bytes, bytes]:
    """Send one request on a plain socket; returns (head, body) and checks the server closed."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as sock:
        head = f"{method} {path} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
        if body is not None:
            head += f"Content-Length: {len(body)}\r\n"
        sock.sendall(head.encode() + b"\r\n" + (body or b""))
        data = b""
        while chunk := sock.recv(65536):
            data += chunk  # recv returns b"" only when the server closed the connection
    response_head, _, response_body = data.partition(b"\r\n\r\n")
    return response_head, response_body


def test_peer_answers_like_slicer(webserver_peer: PeerProcess) -> None:
    head, body = raw_request(webserver_peer.url, "GET", "/slicer/system/version")
    assert head.startswith(b"HTTP/1.1 200 OK")
    assert b"Access-Control-Allow-Origin" not in head, "CORS is off unless 'Enable CORS' is checked"
    assert b"Connection:" not in head, "Slicer closes without announcing it"
    assert {"applicationName", "applicationVersion", "majorVersion"} <= set(json.loads(body))

    head, body = raw_request(webserver_peer.url, "GET", "/slicer/mrml/properties?id=nope")
    assert head.startswith(b"HTTP/1.1 500")
    assert json.loads(body) == {
        "success": False,
        "message": "Server error: No nodes matched the filter criteria",
    }

    head, body = raw_request(webserver_peer.url, "GET", "/slicer/mrml/names?name=nope")
    assert head.startswith(b"HTTP/1.1 200") and json.loads(body) == []

    head, body = raw_request(webserver_peer.url, "POST", "/slicer/exec", b"")
    assert head.startswith(b"HTTP/1.1 404") and body == b"", (
        "exec without source: an empty answer is a bare 404"
    )

    head, body = raw_request(webserver_peer.url, "GET", "/other")
    assert head == b"HTTP/1.1 404 Not Found"

    head, body = raw_request(webserver_peer.url, "GET", "/slicer/nosuch")
    assert head.startswith(b"HTTP/1.1 500") and "unknown command" in json.loads(body)["message"]


def test_exec_is_off_by_default(webserver_peer_no_exec: PeerProcess) -> None:
    head, body = raw_request(webserver_peer_no_exec.url, "POST", "/slicer/exec", b"__execResult = 1")
    assert head.startswith(b"HTTP/1.1 500") and "unknown command" in json.loads(body)["message"]


def test_nrrd_codec_round_trip_keeps_geometry() -> None:
    voxels = np.arange(2 * 3 * 4, dtype=np.int16).reshape(2, 3, 4)
    ijk_to_ras = np.array([[0, 0, -1.5, 10], [-0.5, 0, 0, -20], [0, 2.0, 0, 30], [0, 0, 0, 1]], float)
    body = encode(voxels, ijk_to_ras)
    assert b"space: left-posterior-superior" in body and b"sizes: 4 3 2" in body
    back, matrix = decode(body)
    assert np.array_equal(back, voxels)
    assert np.allclose(matrix, ijk_to_ras)


def test_a_truncated_or_malformed_nrrd_is_a_webserver_error() -> None:
    body = encode(np.zeros((2, 3, 4), dtype=np.int16), np.eye(4))
    for broken in (body[:-5], body.replace(b"space origin: (", b"space origin: (1.0,")):
        with pytest.raises(SlicerMCPError) as err:
            decode(broken)
        assert err.value.code == ErrorCode.SLICER_WEBSERVER_ERROR


def test_values_outside_16_bits_are_refused_with_a_way_out() -> None:
    with pytest.raises(SlicerMCPError) as err:
        encode(np.array([[[0, 40000]]], dtype=np.uint16), np.eye(4))
    assert err.value.code == ErrorCode.NOT_SUPPORTED and "SlicerMCP module" in err.value.message


def test_add_and_export_volume_through_the_webserver(webserver_peer: PeerProcess) -> None:
    """The DICOM tools' last step: a volume with an oblique LPS->RAS geometry into Slicer and back."""
    backend = WebServerBackend(Config(), webserver_peer.url)
    voxels = (np.arange(5 * 6 * 7).reshape(5, 6, 7) % 300 - 100).astype(np.int16)
    ijk_to_ras = np.array([[-0.8, 0, 0, 100.0], [0, -0.8, 0, 80.0], [0, 0, 2.5, -40.0], [0, 0, 0, 1]])

    async def main() -> None:
        await backend.clear_scene()
        attrs = {"DICOM.SeriesInstanceUID": "1.2.3"}
        first = await backend.add_volume(VolumeArray(voxels, ijk_to_ras, "CT*chest", attrs))
        second = await backend.add_volume(VolumeArray(voxels, ijk_to_ras, "CT*chest"))
        assert first.name == "CT_chest" and second.name == "CT_chest_2", (
            "a new node each time, never overwritten"
        )
        assert first.volume is not None and first.volume.dimensions == (7, 6, 5)
        exported = await backend.export_volume(first.id)
        assert np.array_equal(exported.array, voxels)
        assert np.allclose(exported.ijk_to_ras, ijk_to_ras)
        assert exported.attributes == attrs
        details = await backend.get_node(first.id)
        assert details.attributes == attrs
        shot = await backend.capture_screenshot("axial", 0.0, None, 256)
        assert png_size(shot.png) == (shot.info.width, shot.info.height)
        assert shot.info.notes and "ignores size" in shot.info.notes[0]
        await backend.clear_scene()
        await backend.close()

    anyio.run(main)
    assert backend.http.closes_connections, "learned that Slicer closes after each response"
    assert backend.http.retries == 0


def test_http_client_reuses_keep_alive_connections(webserver_peer: PeerProcess) -> None:
    """Against a server that keeps connections open, one connection serves every request."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from SlicerMCPLib.backends.webserver_http import WebServerHttp

    class KeepAlive(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:  # noqa: N802 - http.server API
            body = b'{"applicationVersion": "5.8.0"}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), KeepAlive)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        client = WebServerHttp(f"http://127.0.0.1:{server.server_address[1]}")
        for _ in range(5):
            assert client.get("/slicer/system/version", timeout=5).status == 200
        assert client.connections_opened == 1 and not client.closes_connections
        assert client._conn is not None and client._conn.sock.getsockopt(
            socket.IPPROTO_TCP, socket.TCP_NODELAY
        ), "the client turns Nagle off: a kept-alive request is not held for the server's delayed ACK"
        client.close()
        slicer_like = WebServerHttp(webserver_peer.url)
        for _ in range(3):
            assert slicer_like.get("/slicer/system/version", timeout=5).status == 200
        assert slicer_like.connections_opened == 3 and slicer_like.retries == 0
        slicer_like.close()
    finally:
        server.shutdown()
        server.server_close()


def test_a_timeout_on_the_fresh_connection_after_a_dropped_kept_one_is_slicer_timeout() -> None:
    """FAKE server (a real one can't be made to do this on demand): the first connection answers
    once and keeps alive, then drops the second request; the fresh connection answers too late."""
    import socket
    import threading

    from SlicerMCPLib.backends.webserver_http import WebServerHttp
    from SlicerMCPLib.core.errors import SlicerTimeout

    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()
    answer = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"

    def serve() -> None:
        for n in (1, 2):
            conn, _ = listener.accept()
            with conn:
                conn.recv(65536)
                if n == 1:
                    conn.sendall(answer)  # kept alive...
                    conn.recv(65536)  # ...then the next request is dropped unanswered
                else:
                    stop.wait(3)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    client = WebServerHttp(f"http://127.0.0.1:{listener.getsockname()[1]}", backoff_s=())
    try:
        assert client.get("/slicer/system/version", timeout=5).status == 200
        with pytest.raises(SlicerTimeout):
            client.get("/slicer/system/version", timeout=0.5)
    finally:
        stop.set()
        client.close()
        thread.join(5)
        listener.close()


def test_measure_segmentation_through_exec(
    webserver_peer: PeerProcess, tmp_path, scene_thread, headless_backend
) -> None:
    """A .seg.nrrd written by Slicer's storage node, loaded and measured through the WebServer."""
    from fixtures.scene import LABEL_COUNTS, SEGMENT_NAMES, make_segmentation_file

    seg_file = make_segmentation_file(tmp_path, scene_thread, headless_backend)
    backend = WebServerBackend(Config(), webserver_peer.url)

    async def main() -> None:
        await backend.clear_scene()
        loaded = await backend.load_volume(seg_file, False, None)
        node = loaded.nodes[0]
        assert node.class_name == "vtkMRMLSegmentationNode"
        assert {s.name for s in node.segments or []} == set(SEGMENT_NAMES.values())
        measured = await backend.measure_volume(node.id, None)
        assert {s.name: s.voxel_count for s in measured.segments} == {
            SEGMENT_NAMES[label]: count for label, count in LABEL_COUNTS.items()
        }
        tumor = await backend.measure_volume(node.id, "Tumor")
        assert [s.voxel_count for s in tumor.segments] == [LABEL_COUNTS[5]]
        with pytest.raises(SlicerMCPError) as err:
            await backend.measure_volume(node.id, "Heart")
        assert err.value.code == ErrorCode.INVALID_PARAMETER
        await backend.clear_scene()
        await backend.close()

    anyio.run(main)
