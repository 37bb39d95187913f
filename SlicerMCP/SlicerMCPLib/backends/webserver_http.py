"""HTTP to Slicer's WebServer: the one place that knows its URLs, connections, retries and errors.

Slicer's WebServer answers one request at a time on Slicer's main thread and closes the
connection after every response without saying so (no `Connection: close`). The client
notices the close after each response and opens a fresh connection for the next request;
a server that keeps connections open gets them reused. Only connection failures are
retried (after 1, 2 and 4 s), and only for requests that change nothing. A request that still
finds no WebServer counts against the client's circuit breaker; once it is open, requests fail
fast with CIRCUIT_OPEN until the cool-down ends and one probe request finds Slicer again.
"""

from __future__ import annotations

import http.client
import json
import logging
import select
import socket
import struct
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

from ..core.breaker import CircuitBreaker
from ..core.config import BreakerConfig
from ..core.errors import ErrorCode, ScreenshotFailed, SlicerConnectionError, SlicerMCPError, SlicerTimeout

log = logging.getLogger(__name__)

DEFAULT_URL = "http://localhost:2016"
BACKOFF_S: tuple[float, ...] = (1.0, 2.0, 4.0)

# Every WebServer path the bridge uses (Modules/Scripted/WebServer/WebServerLib/SlicerRequestHandler.py)
VERSION = "/slicer/system/version"
MRML_NAMES = "/slicer/mrml/names"
MRML_IDS = "/slicer/mrml/ids"
MRML_PROPERTIES = "/slicer/mrml/properties"
MRML = "/slicer/mrml"
SLICE = "/slicer/slice"
THREE_D = "/slicer/threeD"
SCREENSHOT = "/slicer/screenshot"
VOLUME = "/slicer/volume"
VOLUMES = "/slicer/volumes"
SAMPLEDATA = "/slicer/sampledata"
GUI = "/slicer/gui"
EXEC = "/slicer/exec"

START_HINT = (
    "Start 3D Slicer, open the Web Server module (Modules > Servers > Web Server) and click "
    "'Start server'; or start the SlicerMCP module's server; or run 'slicer-mcp --headless' "
    "for a scene without Slicer."
)
EXEC_HINT = (
    "Slicer's WebServer refuses Python execution: 'Slicer API exec' is off (the default). In Slicer, "
    "open the Web Server module, click 'Stop server', expand 'Advanced', check 'Slicer API exec' "
    "(and 'Slicer API'), then click 'Start server'. Only do this on a trusted network: the WebServer "
    "has no authentication."
)

_DROPPED = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError, ConnectionAbortedError)


@dataclass
class Response:
    status: int
    content_type: str
    body: bytes

    def json(self, path: str) -> Any:
        try:
            return json.loads(self.body)
        except ValueError as exc:
            raise SlicerMCPError(
                f"Slicer's WebServer sent a response to {path} that is not JSON. Is another program "
                "listening on the WebServer's port? Check --webserver-url.",
                code=ErrorCode.SLICER_WEBSERVER_ERROR,
                details={"path": path, "status": self.status, "body_start": self.body[:80].decode("latin-1")},
            ) from exc


class WebServerHttp:
    """Blocking client of one WebServer; call it from a worker thread (`anyio.to_thread`)."""

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        *,
        backoff_s: Sequence[float] = BACKOFF_S,
        connect_timeout_s: float = 5.0,
        sleep: Callable[[float], None] = time.sleep,
        breaker: BreakerConfig | None = None,
    ):
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise SlicerMCPError(
                f"the WebServer URL {base_url!r} must look like http://localhost:2016",
                code=ErrorCode.CONFIG_ERROR,
                details={"webserver_url": base_url},
            )
        self.base_url = base_url.rstrip("/")
        self._scheme = parts.scheme
        self._host = parts.hostname
        self._port = parts.port or (443 if parts.scheme == "https" else 80)
        self.backoff_s = tuple(backoff_s)
        self.connect_timeout_s = connect_timeout_s
        self._sleep = sleep
        self._lock = threading.Lock()  # one request at a time, like the server
        self._conn: http.client.HTTPConnection | None = None
        self._reuse_confirmed = False
        self.closes_connections = False  # learned: the server closes after each response (Slicer does)
        self.retries = 0  # connection-error retries made (tests and logs)
        self.connections_opened = 0
        self.breaker = CircuitBreaker(
            f"Slicer's WebServer at {self.base_url}", breaker, address=(self._host, self._port)
        )

    # -- public ------------------------------------------------------------------------------------
    def get(self, path: str, params: dict[str, Any] | None = None, *, timeout: float) -> Response:
        return self.request("GET", path, params, timeout=timeout, changes_state=False)

    def get_head(
        self, path: str, params: dict[str, Any] | None, *, until: bytes, timeout: float, limit: int = 1 << 16
    ) -> Response:
        """A GET whose body is read only up to `until` (e.g. an NRRD header); then the connection is
        closed, so a large answer (a whole volume) is not transferred."""
        return self.request(
            "GET", path, params, timeout=timeout, changes_state=False, head_until=(until, limit)
        )

    def request(
        self,
        method: str,
        path: str,
        params: dict[str, Any] | None = None,
        body: bytes | None = None,
        *,
        timeout: float,
        changes_state: bool,
        content_type: str = "application/octet-stream",
        head_until: tuple[bytes, int] | None = None,
    ) -> Response:
        """Send one request; 200 and 404 come back, anything else raises a coded error.

        Through the breaker: a request that could not reach the WebServer (after its retries) counts."""
        target = path + (
            "?" + urlencode({k: v for k, v in params.items() if v is not None}) if params else ""
        )
        return self.breaker.call(
            lambda: self._with_retries(
                method, path, target, body, timeout, changes_state, content_type, head_until
            ),
            (SlicerConnectionError,),
        )

    def _with_retries(
        self,
        method: str,
        path: str,
        target: str,
        body: bytes | None,
        timeout: float,
        changes_state: bool,
        content_type: str,
        head_until: tuple[bytes, int] | None,
    ) -> Response:
        attempts = 1 if changes_state else 1 + len(self.backoff_s)
        for attempt in range(attempts):
            try:
                with self._lock:
                    response = self._send(
                        method, target, body, timeout, changes_state, content_type, head_until
                    )
                return self._check(path, response)
            except SlicerConnectionError as exc:
                if attempt + 1 >= attempts:
                    raise
                delay = self.backoff_s[attempt]
                self.retries += 1
                log.warning(
                    "WebServer %s %s: %s; retry %d in %g s",
                    method,
                    path,
                    exc.details.get("reason"),
                    attempt + 1,
                    delay,
                )
                self._sleep(delay)
        raise AssertionError("unreachable")

    def close(self) -> None:
        with self._lock:
            self._drop()

    # -- connection handling -----------------------------------------------------------------------
    def _drop(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _connection(self, timeout: float) -> tuple[http.client.HTTPConnection, bool]:
        if self._conn is not None and (self.closes_connections or _peer_closed(self._conn)):
            # a server that closed before any reuse worked closes every time: stop trying to reuse
            self.closes_connections = self.closes_connections or not self._reuse_confirmed
            self._drop()
        if self._conn is not None:
            self._conn.timeout = timeout
            if self._conn.sock is not None:
                self._conn.sock.settimeout(timeout)
            return self._conn, True
        self._drop()
        cls = http.client.HTTPSConnection if self._scheme == "https" else http.client.HTTPConnection
        conn = cls(self._host, self._port, timeout=self.connect_timeout_s)
        try:
            conn.connect()
        except TimeoutError as exc:
            conn.close()
            raise self._connection_error("connect timed out", sent=False) from exc
        except OSError as exc:
            conn.close()
            raise self._connection_error(exc.strerror or type(exc).__name__, sent=False) from exc
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn.sock.settimeout(timeout)
        conn.timeout = timeout
        self.connections_opened += 1
        self._conn = conn
        return conn, False

    def _send(
        self,
        method: str,
        target: str,
        body: bytes | None,
        timeout: float,
        changes_state: bool,
        ctype: str,
        head_until: tuple[bytes, int] | None = None,
    ) -> Response:
        if changes_state and not self._reuse_confirmed:
            self._drop()  # never risk a state change on a connection the server may have closed
        conn, reused = self._connection(timeout)
        headers = {"Accept": "*/*"}
        if body is not None:
            headers["Content-Type"] = ctype
        try:
            raw, data = self._exchange(conn, method, target, body, headers, timeout, head_until)
        except _DROPPED as exc:
            self._drop()
            if not reused or self._reuse_confirmed:
                raise self._connection_error(type(exc).__name__, sent=True) from exc
            # the server closes connections after each response: learn that, go again fresh
            log.debug("WebServer closed a kept connection; using a new connection per request")
            self.closes_connections = True
            conn, reused = self._connection(timeout)
            try:
                raw, data = self._exchange(conn, method, target, body, headers, timeout, head_until)
            except _DROPPED as exc2:
                self._drop()
                raise self._connection_error(type(exc2).__name__, sent=True) from exc2
        if reused:
            self._reuse_confirmed = True
        if raw.will_close or (head_until is not None and not raw.isclosed()):
            self._drop()  # a partly read answer leaves the connection unusable
        return Response(raw.status, raw.getheader("Content-Type", "") or "", data)

    def _exchange(
        self,
        conn: http.client.HTTPConnection,
        method: str,
        target: str,
        body: bytes | None,
        headers: dict[str, str],
        timeout: float,
        head_until: tuple[bytes, int] | None = None,
    ) -> tuple[http.client.HTTPResponse, bytes]:
        """One request and its answer (whole, or up to a marker); a dropped connection is left to the caller."""
        path = target.split("?")[0]
        try:
            conn.request(method, target, body=body, headers=headers)
            raw = conn.getresponse()
            if head_until is None or raw.status != 200:
                return raw, raw.read()
            marker, limit = head_until
            data = b""
            while marker not in data and len(data) < limit:
                chunk = raw.read1(8192)
                if not chunk:
                    break
                data += chunk
            return raw, data
        except _DROPPED:
            raise
        except TimeoutError as exc:
            self._drop()
            raise SlicerTimeout(
                f"Slicer's WebServer did not answer {method} {path} within {timeout:g} s "
                "(Slicer may be busy, or showing a dialog). It may still finish; check the scene before "
                "repeating a change, or raise the timeout in the config (timeouts).",
                details={"timeout_s": timeout, "path": path},
            ) from exc
        except http.client.HTTPException as exc:
            self._drop()
            raise SlicerMCPError(
                f"{self.base_url} did not answer like Slicer's WebServer ({type(exc).__name__}). "
                "Check --webserver-url.",
                code=ErrorCode.SLICER_WEBSERVER_ERROR,
                details={"reason": type(exc).__name__},
            ) from exc

    def _connection_error(self, reason: str, *, sent: bool) -> SlicerConnectionError:
        if sent:
            message = (
                f"the connection to Slicer's WebServer at {self.base_url} dropped during the request; "
                "a change may or may not have been made: check the scene. " + START_HINT
            )
        else:
            message = f"cannot reach Slicer's WebServer at {self.base_url} ({reason}). " + START_HINT
        return SlicerConnectionError(message, details={"url": self.base_url, "reason": reason, "sent": sent})

    def _check(self, path: str, response: Response) -> Response:
        if response.status in (200, 404):
            return response
        message = _server_message(response)
        if response.status == 500 and path == EXEC and "unknown command" in message:
            raise SlicerMCPError(
                EXEC_HINT,
                code=ErrorCode.OPERATION_DISABLED,
                details={"setting": "Slicer API exec", "module": "WebServer", "url": self.base_url},
            )
        raise SlicerMCPError(
            f"Slicer's WebServer failed on {path}: {message}",
            code=ErrorCode.SLICER_WEBSERVER_ERROR,
            details={"path": path, "status": response.status, "slicer_message": message},
        )


def _server_message(response: Response) -> str:
    """The `message` of the WebServer's `{"success": false, "message": ...}` error body."""
    try:
        data = json.loads(response.body)
        if isinstance(data, dict) and "message" in data:
            return str(data["message"])
    except ValueError:
        pass
    return response.body[:200].decode("utf-8", "replace") or f"HTTP {response.status}"


def _peer_closed(conn: http.client.HTTPConnection) -> bool:
    """True when the server has closed (or broken) the idle connection."""
    sock = conn.sock
    if sock is None:
        return True
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)  # an idle HTTP connection becomes readable only when closed (or broken)


def png_size(png: bytes) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk."""
    if len(png) < 24 or png[:8] != b"\x89PNG\r\n\x1a\n":
        raise ScreenshotFailed(
            "Slicer's WebServer sent an image that is not a PNG", details={"bytes": len(png)}
        )
    return struct.unpack(">II", png[16:24])


def probe_version(url: str, timeout: float = 2.0) -> dict[str, Any] | None:
    """Slicer's version record when a WebServer answers at `url`, else None (no retries)."""
    http = WebServerHttp(url, backoff_s=(), connect_timeout_s=timeout)
    try:
        response = http.get(VERSION, timeout=timeout)
        data = response.json(VERSION) if response.status == 200 else None
        return data if isinstance(data, dict) else None
    except SlicerMCPError:
        return None
    finally:
        http.close()
