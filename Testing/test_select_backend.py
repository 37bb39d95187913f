"""`--headless` means headless, and only Slicer's own version record makes a WebServer (issue 15, item 6).

The peer here is a junk HTTP server on a free port: a real process answering HTTP, but not Slicer —
the fault a hostile or unrelated local service produces."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator

import pytest

from slicer_mcp.select import choose_backend


def _junk_server(body: bytes, content_type: str) -> Iterator[str]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(autouse=True)
def _no_endpoint_file(tmp_path, monkeypatch) -> None:
    """No SlicerMCP server in a Slicer here: the endpoint file lives in an empty folder."""
    from SlicerMCPLib.serving import endpoint

    monkeypatch.setattr(endpoint, "endpoint_path", lambda: tmp_path / "endpoint.json")


@pytest.fixture
def slicer_like() -> Iterator[str]:
    """Answers /slicer/system/version like Slicer would (anyone can)."""
    yield from _junk_server(json.dumps({"applicationVersion": "5.8.1"}).encode(), "application/json")


JUNK = [
    (b'{"hello": "world"}', "application/json"),
    (b"[1, 2, 3]", "application/json"),
    (b'{"nodes": 7, "applicationVersion": "5.8.1"}', "application/json"),
    (b"<html><body>router login</body></html>", "text/html"),
]


@pytest.mark.parametrize("body,content_type", [j for j in JUNK if b"applicationVersion" not in j[0]])
def test_a_reply_that_is_not_slicers_is_no_webserver(body: bytes, content_type: str) -> None:
    gen = _junk_server(body, content_type)
    url = next(gen)
    try:
        choice = choose_backend(None, False, url)
        assert choice.backend is None, choice.reason
    finally:
        gen.close()


def test_headless_flag_never_uses_what_answers_on_the_webserver_port(slicer_like: str) -> None:
    choice = choose_backend(None, True, slicer_like)
    assert choice.backend == "headless", choice.reason


def test_without_a_flag_slicers_webserver_is_used(slicer_like: str) -> None:
    assert choose_backend(None, False, slicer_like).backend == "webserver"
    assert choose_backend("webserver", True, slicer_like).backend == "webserver", "chosen explicitly"


@pytest.mark.parametrize("body,content_type", JUNK)
def test_junk_replies_to_the_webserver_backend_are_coded_errors(body: bytes, content_type: str) -> None:
    """Chosen explicitly, a WebServer that is not Slicer gives a coded error naming the URL, not a KeyError."""
    import asyncio

    from SlicerMCPLib.backends.webserver import WebServerBackend
    from SlicerMCPLib.core.config import Config
    from SlicerMCPLib.core.errors import ErrorCode, SlicerMCPError

    gen = _junk_server(body, content_type)
    url = next(gen)
    backend = WebServerBackend(Config(), url)
    try:
        with pytest.raises(SlicerMCPError) as caught:
            asyncio.run(backend.list_nodes(None, None, 0, 10))
        assert caught.value.code in (ErrorCode.SLICER_CONNECTION_ERROR, ErrorCode.SLICER_WEBSERVER_ERROR)
        assert url in caught.value.message or caught.value.code == ErrorCode.SLICER_WEBSERVER_ERROR
        status = asyncio.run(backend.status())
        if b"applicationVersion" in body:
            return  # a version record alone looks like Slicer; the scene calls above still fail coded
        assert status.connection == "unreachable", "a junk reply is not a connected Slicer"
        assert status.error["code"] == ErrorCode.SLICER_CONNECTION_ERROR and url in status.notes[0]
    finally:
        asyncio.run(backend.close())
        gen.close()
