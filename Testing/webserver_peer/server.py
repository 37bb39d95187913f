"""The test WebServer: Slicer's `/slicer/...` REST API on a headless slicer-core scene.

Behaves like Slicer's WebServer module (Slicer main, Modules/Scripted/WebServer/WebServer.py,
`SlicerHTTPServer.SlicerRequestCommunicator.onReadable` / `onWritable`): one request at a
time on the thread that owns the scene, the connection closed after every response
(without a `Connection: close` header), `Access-Control-Allow-Origin: *` only with CORS
enabled (off by default, the "Enable CORS" checkbox), handler errors as 500
`{"success": false, "message": "Server error: ..."}`, an empty answer as a bare 404, and
`/slicer/exec` only when started with exec enabled (off by default, like "Slicer API exec").

One deliberate difference: accepted sockets get TCP_NODELAY (Slicer leaves Nagle on). Since
the connection closes right after each response, the close flushes the last segment either
way; the option only matters for servers that keep connections alive, and servers we run set it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import socket
import sys
import threading
from urllib.parse import parse_qs, urlsplit

from .handlers import SlicerApi

log = logging.getLogger("webserver_peer")

_MAX_HEADER = 64 * 1024


class PeerServer:
    """Serves until `stop()`; `serve_forever()` runs on the calling thread, which owns the scene."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        enable_exec: bool = False,
        config_path: str | None = None,
        enable_cors: bool = False,
    ):
        self.host = host
        self.enable_exec = enable_exec
        self.enable_cors = enable_cors
        self.config_path = config_path
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((host, port))
        self._sock.listen(16)
        self._sock.settimeout(0.2)
        self.port = self._sock.getsockname()[1]
        self._stop = threading.Event()
        self.requests_served = 0

    def stop(self) -> None:
        self._stop.set()

    def serve_forever(self, ready: threading.Event | None = None) -> None:
        api = SlicerApi(self.enable_exec, self.config_path)
        loop = asyncio.new_event_loop()
        api.run = loop.run_until_complete
        if ready is not None:
            ready.set()
        try:
            while not self._stop.is_set():
                try:
                    conn, _ = self._sock.accept()
                except TimeoutError:
                    continue
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                with conn:
                    self._serve_one(conn, api)
        finally:
            self._sock.close()
            loop.run_until_complete(api.close())
            loop.close()

    def _serve_one(self, conn: socket.socket, api: SlicerApi) -> None:
        conn.settimeout(30)
        try:
            request = _read_request(conn)
        except (OSError, ValueError) as exc:
            log.info("bad request: %s", exc)
            return
        if request is None:
            return
        method, target, body = request
        parts = urlsplit(target)
        status, ctype, payload = 200, b"text/plain", b""
        if parts.path.startswith("/slicer"):
            try:
                ctype, payload = api.handle(method, parts.path[len("/slicer") :], parse_qs(parts.query), body)
            except Exception as exc:  # onReadable: any handler error is a 500 "Server error: " + str(e)
                log.info("handler error on %s: %s", parts.path, exc)
                status, ctype = 500, b"application/json"
                payload = json.dumps({"success": False, "message": "Server error: " + str(exc)}).encode()
        self.requests_served += 1
        if status == 500:
            head = b"HTTP/1.1 500 Internal Server Error\r\n"
        elif payload:
            head = b"HTTP/1.1 200 OK\r\n"
        else:
            conn.sendall(b"HTTP/1.1 404 Not Found\r\n\r\n")
            return
        if self.enable_cors:
            head += b"Access-Control-Allow-Origin: *\r\n"
        head += b"Content-Type: %s\r\nContent-Length: %d\r\nCache-Control: no-cache\r\n\r\n" % (
            ctype,
            len(payload),
        )
        try:
            conn.sendall(head + payload)
        except OSError as exc:
            log.info("client went away: %s", exc)


def _read_request(conn: socket.socket) -> tuple[str, str, bytes] | None:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return None
        data += chunk
        if len(data) > _MAX_HEADER and b"\r\n\r\n" not in data:
            raise ValueError("header too large")
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    method, target, _version = lines[0].split(" ", 2)
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value.strip())
    while len(body) < length:
        chunk = conn.recv(max(65536, length - len(body)))
        if not chunk:
            break
        body += chunk
    return method, target, body


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="webserver_peer", description="Slicer WebServer stand-in for tests")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=2016)
    parser.add_argument(
        "--exec", dest="enable_exec", action="store_true", help='like "Slicer API exec" checked'
    )
    parser.add_argument("--cors", dest="enable_cors", action="store_true", help='like "Enable CORS" checked')
    parser.add_argument("--config", help="slicer-mcp config YAML (sample data mirror)")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="webserver_peer %(levelname)s: %(message)s"
    )
    os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")
    server = PeerServer(args.host, args.port, args.enable_exec, args.config, args.enable_cors)
    print(f"webserver_peer listening on http://{args.host}:{server.port}", file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0
