"""Serving an ASGI app on a worker thread: loopback, bearer token, Origin check, no Nagle delay.

The MCP endpoint (serving/http_transport.py), the mini-RIS REST API and the test peers all
serve through `HttpServer`, so each gets the same socket handling: bound in the caller's
thread (a port in use fails at once with a clear message), TCP_NODELAY on every accepted
connection (without it a kept-alive client waits ~40 ms for each response body), and a
clean stop that frees the port, and the guards of core/http_guards.py (header and body
deadlines, a connection cap, per-client in-flight caps, rate-limited accept-error logs).
"""

from __future__ import annotations

import asyncio
import errno
import hmac
import json
import logging
import select
import socket
import threading
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import urlsplit

import uvicorn
from starlette.requests import ClientDisconnect

from .config import ServerSettings
from .errors import ErrorCode, SlicerMCPError
from .http_guards import (
    GuardLimits,
    InFlightLimiter,
    RateLimitedLoopErrors,
    guarded_protocol,
    is_event_stream,
)
from .localhost import LOOPBACK_HOSTS, served_host_names

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]], Awaitable[None]]


def origin_allowed(origin: str, extra: list[str]) -> bool:
    """Loopback origins (any port) and explicitly configured ones; everything else is a browser
    page on another site trying to reach the local server."""
    if origin in extra:
        return True
    parts = urlsplit(origin)
    return parts.scheme in ("http", "https") and (parts.hostname or "") in LOOPBACK_HOSTS


class AuthMiddleware:
    """Rejects requests without the bearer token (401) or from a foreign Origin (403)."""

    def __init__(self, app: ASGIApp, token: str, allowed_origins: list[str]):
        self.app = app
        self._token = token.encode()
        self.allowed_origins = allowed_origins

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, receive, send)
            return
        if scope["type"] != "http":  # websockets and anything newer: not served, never unauthenticated
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1008})
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        origin = headers.get("origin")
        if origin and not origin_allowed(origin, self.allowed_origins):
            log.warning("refused a request from a disallowed Origin")
            await _deny(send, 403, "origin not allowed", "Origin header is not an allowed origin")
            return
        auth = headers.get("authorization", "")
        scheme, _, value = auth.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(value.strip().encode(), self._token):
            await _deny(
                send,
                401,
                "missing or wrong bearer token",
                "send 'Authorization: Bearer <token>' with the token from the server's token file",
                extra=[(b"www-authenticate", b'Bearer realm="slicer-mcp"')],
            )
            return
        await self.app(scope, receive, send)


async def _deny(
    send: Any, status: int, error: str, hint: str, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    body = json.dumps({"error": error, "hint": hint}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
            + (extra or []),
        }
    )
    await send({"type": "http.response.body", "body": body})


def bind_socket(host: str, port: int) -> socket.socket:
    """Bind the listening socket now, so 'port in use' is reported to the caller, not a thread."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY on accepted connections only for TCP sockets,
    # and without it each response body on a kept-alive connection waits for a delayed ACK (~40 ms)
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise SlicerMCPError(
                f"port {port} on {host} is already in use (another SlicerMCP or program?). "
                f"Stop it, or choose another port, e.g. --port {port + 1} or port 0 for any free port.",
                code=ErrorCode.CONFIG_ERROR,
                details={"host": host, "port": port},
            ) from exc
        raise SlicerMCPError(
            f"cannot listen on {host}:{port}: {exc.strerror}", code=ErrorCode.CONFIG_ERROR
        ) from exc
    sock.listen(128)  # left non-inheritable: a child process must not keep the port after stop()
    return sock


class _RequestCounter:
    """Counts the requests being handled, so a host can tell when the server thread needs to run.

    Long-lived event streams (GET with Accept: text/event-stream) are not counted: they stay
    open while idle.
    """

    def __init__(self, app: ASGIApp):
        self.app = app
        self.in_flight = 0
        self.on_idle: list[Callable[[], None]] = []

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or is_event_stream(scope):
            await self.app(scope, receive, send)
            return
        self.in_flight += 1  # only the server's event-loop thread changes it
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1
            if not self.in_flight:
                for callback in list(self.on_idle):
                    callback()


class _QuietDisconnects:
    """A client that closes the connection before its request body is complete (a cancelled call, a
    killed client) is one log line, not uvicorn's 20-line "Exception in ASGI application"."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        try:
            await self.app(scope, receive, send)
        except ClientDisconnect:
            if scope.get("type") == "http":
                log.info(DISCONNECT_LINE, scope.get("method", ""), scope.get("path", ""))


DISCONNECT_LINE = "HTTP: the client closed the connection before its %s %s request body was complete"


def _any_readable(fds: list[int]) -> bool:
    """Whether any of `fds` has bytes (or a new connection) waiting, without blocking."""
    if hasattr(select, "poll"):  # no FD_SETSIZE limit: Slicer may hold many descriptors
        poller = select.poll()
        for fd in fds:
            poller.register(fd, select.POLLIN)
        return bool(poller.poll(0))
    readable, _, _ = select.select(fds, [], [], 0)
    return bool(readable)


class _QuietServer(uvicorn.Server):
    """uvicorn's server with the rate-limited loop error handler (EMFILE must not flood the log)."""

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        asyncio.get_running_loop().set_exception_handler(RateLimitedLoopErrors())
        await super().serve(sockets)


class HttpServer:
    """uvicorn serving one ASGI app (already wrapped in AuthMiddleware) on a daemon thread."""

    # uvicorn's choice: uvloop where installed (it sets TCP_NODELAY itself), else asyncio's loop
    # (which sets it only because the listening socket is IPPROTO_TCP). Tests run both.
    loop = "auto"

    def __init__(self, app: ASGIApp, settings: ServerSettings, *, path: str = ""):
        """`path` is the app's endpoint, appended to `url` (e.g. "/mcp")."""
        self.settings = settings
        self.limiter = InFlightLimiter(app, settings.max_in_flight_per_client)
        self._counter = _RequestCounter(_QuietDisconnects(self.limiter))
        self.limits = GuardLimits(
            settings.header_timeout_s, settings.body_timeout_s, settings.max_connections
        )
        self._app: ASGIApp = self._counter
        self._path = path
        self._uvicorn: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None
        self.port: int | None = None

    @property
    def url(self) -> str:
        host = f"[{self.settings.host}]" if ":" in self.settings.host else self.settings.host
        return f"http://{host}:{self.port}{self._path}"

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def open_connections(self) -> int:
        """HTTP connections open right now (sessionless MCP clients are only visible this way)."""
        return len(self._uvicorn.server_state.connections) if self._uvicorn is not None else 0

    def notify_when_idle(self, callback: Callable[[], None] | None) -> None:
        """Call `callback` (on the server thread; it must be quick) each time the last request
        being handled ends, so a host lending the GIL can take it back at once; None: stop."""
        self._counter.on_idle[:] = [callback] if callback is not None else []

    def needs_to_run(self) -> bool:
        """True while the server thread has work: a request being handled, or bytes waiting
        unread on the listening socket or a connection.

        A host whose main thread keeps the GIL while idle (Slicer's PythonQt) asks this to know
        when to let the server thread run; see hosts/qt_driver.py.
        """
        if self._counter.in_flight:
            return True
        server, sock = self._uvicorn, self._sock
        if server is None or sock is None:
            return False
        fds = [sock.fileno()]
        for connection in list(server.server_state.connections):
            transport = getattr(connection, "transport", None)
            raw = transport.get_extra_info("socket") if transport is not None else None
            fd = raw.fileno() if raw is not None else -1
            if fd >= 0:
                fds.append(fd)
        try:
            return _any_readable(fds)
        except (OSError, ValueError):  # a connection closed meanwhile: let the server see to it
            return True

    def connection_sockets(self) -> list[Any]:
        """The accepted sockets of the open connections (tests check their options, e.g. TCP_NODELAY)."""
        if self._uvicorn is None:
            return []
        found = (c.transport.get_extra_info("socket") for c in list(self._uvicorn.server_state.connections))
        return [s for s in found if s is not None]

    def start(self, timeout: float = 10.0) -> HttpServer:
        if self.running:
            return self
        self._sock = bind_socket(self.settings.host, self.settings.port)
        self.port = self._sock.getsockname()[1]
        config = uvicorn.Config(
            self._app,
            log_level="warning",
            lifespan="on",
            access_log=False,
            timeout_graceful_shutdown=2,
            timeout_keep_alive=self.settings.keep_alive_s,
            loop=self.loop,
        )
        config.load()
        config.http_protocol_class = guarded_protocol(config.http_protocol_class, self.limits)
        self._uvicorn = _QuietServer(config)
        self._thread = threading.Thread(
            target=self._uvicorn.run, kwargs={"sockets": [self._sock]}, name="slicer-mcp-http", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._uvicorn.started and self._thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.01)
        if not self._uvicorn.started:
            self.stop()
            raise SlicerMCPError(
                f"the HTTP server did not start within {timeout:g} s", code=ErrorCode.INTERNAL_ERROR
            )
        log.info("HTTP server listening on %s:%d", self.settings.host, self.port)
        if self.settings.host not in LOOPBACK_HOSTS:
            log.warning(
                "listening beyond this machine (%s) over plain HTTP: the bearer token and every request "
                "and answer (patient data included) travel in clear text. Use it only on a network you "
                "trust, or put a TLS proxy in front and keep this server on 127.0.0.1",
                self.settings.host,
            )
        return self

    def stop(self, timeout: float = 10.0) -> None:
        if self._uvicorn is not None:
            self._uvicorn.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive() and self._uvicorn is not None:
                self._uvicorn.force_exit = True
                self._thread.join(timeout)
        if self._sock is not None:
            self._sock.close()
        self._thread = None
        self._uvicorn = None
        self._sock = None


class RequestLimits:
    """Host and body-size rules for our own HTTP APIs, as the MCP endpoint gets them from the SDK.

    A Host that is not a loopback name (or the configured bind host) is refused with 421: a page
    on another site whose name resolves to 127.0.0.1 (DNS rebinding) sends its own name. A body
    larger than `max_body_bytes` is refused with 413 before it is read whole.
    """

    def __init__(self, app: ASGIApp, bind_host: str, max_body_bytes: int):
        self.app = app
        self.hosts = served_host_names(bind_host)
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        host = urlsplit("//" + headers.get("host", "")).hostname or ""
        if host not in self.hosts:
            log.warning("refused a request for a host name that is not this server's")
            await _deny(send, 421, "host not allowed", "use http://127.0.0.1:<port>/ (or localhost)")
            return
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_body_bytes:
            await _deny(send, 413, "body too large", f"send at most {self.max_body_bytes} bytes")
            return
        received = 0

        async def limited() -> Any:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    raise BodyTooLarge
            return message

        try:
            await self.app(scope, limited, send)
        except BodyTooLarge:
            await _deny(send, 413, "body too large", f"send at most {self.max_body_bytes} bytes")


class BodyTooLarge(Exception):
    """A chunked body went past the limit while the app read it."""
