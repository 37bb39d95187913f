"""What keeps one misbehaving peer from starving the HTTP server: deadlines, caps, quiet logs.

An adversarial run held ~20,000 idle or half-sent connections open for minutes: the process ran
out of file descriptors, legitimate calls timed out and each refused accept() logged a line
(110 MB in 45 s). `HttpServer` (core/http_server.py) therefore serves through:

- `guarded_protocol(base)`: uvicorn's HTTP protocol with a deadline for the request headers
  (from connect, or from the previous response) and one for the body; a connection that misses
  one is closed. At `max_connections` a new connection evicts the longest-idle one (no request in
  progress), else it is answered 503 and closed, so descriptors stay bounded and a real client
  still gets in while a flood of idle sockets holds the port.
- `InFlightLimiter`: at most N requests being handled per client (MCP session, else connection);
  more get 429 with a JSON-RPC error body the SDK surfaces as that one call's error.
- `RateLimitedLoopErrors`: the event loop's exception handler; the same error (e.g. accept()
  failing with EMFILE) is logged once, then at most once per interval with a count.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import MutableMapping
from typing import Any

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]

_AWAIT_HEAD, _AWAIT_BODY, _HANDLING = range(3)
_BUSY_503 = (
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nconnection: close\r\n"
    b"retry-after: 1\r\ncontent-length: 76\r\n\r\n"
    b'{"error": "too many open connections", "hint": "retry in a second or two"}\r\n'
)


class GuardLimits:
    """The numbers the guards enforce (from ServerSettings), shared by every connection."""

    def __init__(self, header_timeout_s: float, body_timeout_s: float, max_connections: int):
        self.header_timeout_s = header_timeout_s
        self.body_timeout_s = body_timeout_s
        self.max_connections = max_connections
        self.evicted = 0
        self.refused = 0
        self.timed_out = 0


def guarded_protocol(base: type[asyncio.Protocol], limits: GuardLimits) -> type[asyncio.Protocol]:
    """A subclass of uvicorn's HTTP protocol `base` (httptools or h11) enforcing `limits`.

    Both uvicorn protocols keep the current request in `self.cycle` (whose `more_body` turns
    False when the body is complete), call `on_response_complete` after each response and
    register themselves in `self.connections`; the guard reads only those.
    """

    class Guarded(base):  # type: ignore[misc, valid-type]
        _guard_phase = _AWAIT_HEAD
        _guard_since = 0.0
        _guard_timer: asyncio.TimerHandle | None = None
        _guard_cycle: Any = None

        def connection_made(self, transport: Any) -> None:  # type: ignore[override]
            if len(self.connections) >= limits.max_connections and not _evict_one(self.connections):
                limits.refused += 1
                try:
                    transport.write(_BUSY_503)
                finally:
                    transport.close()
                return
            super().connection_made(transport)
            self._guard_enter(_AWAIT_HEAD, limits.header_timeout_s)

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            cycle = getattr(self, "cycle", None)
            if cycle is None or cycle is self._guard_cycle or self._guard_phase == _HANDLING:
                if self._guard_phase == _AWAIT_BODY and cycle is not None and not cycle.more_body:
                    self._guard_enter(_HANDLING, None)
                return
            self._guard_cycle = cycle  # headers of a new request are in
            if cycle.more_body:
                self._guard_enter(_AWAIT_BODY, limits.body_timeout_s)
            else:
                self._guard_enter(_HANDLING, None)

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._guard_enter(_AWAIT_HEAD, limits.header_timeout_s)

        def connection_lost(self, exc: Exception | None) -> None:
            self._guard_cancel()
            super().connection_lost(exc)

        def _guard_enter(self, phase: int, deadline_s: float | None) -> None:
            self._guard_cancel()
            self._guard_phase = phase
            self._guard_since = time.monotonic()
            if deadline_s is not None and self.transport is not None:
                self._guard_timer = self.loop.call_later(deadline_s, self._guard_expired, phase)

        def _guard_cancel(self) -> None:
            if self._guard_timer is not None:
                self._guard_timer.cancel()
                self._guard_timer = None

        def _guard_expired(self, phase: int) -> None:
            self._guard_timer = None
            if self._guard_phase != phase or self.transport is None or self.transport.is_closing():
                return
            limits.timed_out += 1
            self.transport.close()  # the app (if any) sees http.disconnect

        @property
        def guard_idle_since(self) -> float | None:
            """When this connection started waiting for a request, or None while one is in progress."""
            return self._guard_since if self._guard_phase == _AWAIT_HEAD else None

    Guarded.__name__ = Guarded.__qualname__ = f"Guarded{base.__name__}"
    return Guarded


def _evict_one(connections: Any) -> bool:
    """Close the connection that has waited longest for a request; False when none is idle."""
    idle = [(c.guard_idle_since, id(c), c) for c in list(connections) if getattr(c, "guard_idle_since", None)]
    if not idle:
        return False
    _, _, victim = min(idle)
    victim._guard_phase = _HANDLING  # counted once: it is on its way out
    victim.transport.close()
    connections.discard(victim)  # connection_lost follows on the next loop turn; make room now
    return True


class InFlightLimiter:
    """ASGI middleware: at most `limit` requests being handled per client; more get 429.

    A client is its MCP session (Mcp-Session-Id) when it has one, else its connection (peer
    address and port). Long-lived event streams (GET text/event-stream) are not counted.
    """

    def __init__(self, app: Any, limit: int):
        self.app = app
        self.limit = limit
        self._counts: dict[str, int] = {}
        self.refused = 0

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or is_event_stream(scope):
            await self.app(scope, receive, send)
            return
        key = _client_key(scope)
        count = self._counts.get(key, 0)
        if count >= self.limit:
            self.refused += 1
            await _too_many(send, self.limit)
            return
        self._counts[key] = count + 1  # only the server's event-loop thread touches the counts
        try:
            await self.app(scope, receive, send)
        finally:
            left = self._counts[key] - 1
            if left:
                self._counts[key] = left
            else:
                del self._counts[key]


def _client_key(scope: Scope) -> str:
    for name, value in scope.get("headers", []):
        if name == b"mcp-session-id":
            return "session:" + value.decode("latin-1")
    client = scope.get("client") or ("?", 0)
    return f"peer:{client[0]}:{client[1]}"


def is_event_stream(scope: Scope) -> bool:
    if scope.get("method") != "GET":
        return False
    return any(k == b"accept" and b"text/event-stream" in v for k, v in scope.get("headers", []))


async def _too_many(send: Any, limit: int) -> None:
    message = (
        f"BUSY: this client already has {limit} requests in progress; wait for one to finish, then retry"
    )
    body = json.dumps({"jsonrpc": "2.0", "id": None, "error": {"code": -32000, "message": message}}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 429,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"retry-after", b"1"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class RateLimitedLoopErrors:
    """An event-loop exception handler logging each kind of error at most once per `interval_s`."""

    def __init__(self, interval_s: float = 10.0):
        self.interval_s = interval_s
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        key = f"{context.get('message', '')}|{type(exc).__name__}|{getattr(exc, 'errno', '')}"
        now = time.monotonic()
        last = self._last.get(key)
        if last is not None and now - last < self.interval_s:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return
        self._last[key] = now
        if len(self._last) > 256:  # many distinct messages: forget the oldest
            oldest = min(self._last, key=self._last.__getitem__)
            self._last.pop(oldest)
            self._suppressed.pop(oldest, None)
        repeats = self._suppressed.pop(key, 0)
        said = f" ({repeats} more like it in the last {self.interval_s:g} s)" if repeats else ""
        log.error("HTTP server: %s: %s%s", context.get("message", "event loop error"), exc, said)
