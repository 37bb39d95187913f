"""The lifespan context every tool receives: config, the scene backend and the domain services.

Domain services (DICOM, FHIR, RIS, the sample data cache, ...) are made on first use through
`services.domain(DicomService)`, so a server that never touches a PACS never opens a socket.
Each is built from the config as `Kind(config)`; the few whose constructor takes a part of it
name that in the call: `services.domain(RenderQueue, lambda c: RenderQueue(c.rendering...))`.

The host that builds `Services` owns them: it enters them once (`async with services:`, or
`with hosted(services):` on a thread that runs no event loop) and leaving closes every domain
service and the backend, once. The MCP lifespan only hands them to the tools.
"""

from __future__ import annotations

import collections
import inspect
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import anyio
from mcp.server.mcpserver import Context

from .breaker import BreakerStatus, GuardsPeers
from .config import Config
from .errors import OperationDisabled
from .scene_backend import SceneBackend

D = TypeVar("D")
log = logging.getLogger(__name__)


@dataclass
class CallRecord:
    """One served tool call, as the module panel's table and the audit log show it (no arguments:
    they may hold PHI; only their digest)."""

    started_at: float
    tool: str
    duration_s: float
    ok: bool
    error_code: str | None = None
    client: str | None = None  # the name and version the client declared
    session: str | None = None  # a short digest of the transport's session id (never the id)
    arguments_hmac: str | None = None
    result_bytes: int = 0


class CallLog:
    """Recent tool calls and counters, thread-safe; listeners are told of each new record."""

    def __init__(self, keep: int = 200):
        self._records: collections.deque[CallRecord] = collections.deque(maxlen=keep)
        self._lock = threading.Lock()
        self.calls_served = 0
        self.listeners: list[Callable[[CallRecord], None]] = []

    def add(self, record: CallRecord) -> None:
        with self._lock:
            self._records.append(record)
            self.calls_served += 1
        for listener in list(self.listeners):
            try:
                listener(record)
            except Exception:  # a broken listener must not fail the call it is told about
                log.exception("call log listener %r failed", listener)

    def recent(self, n: int = 50) -> list[CallRecord]:
        with self._lock:
            return list(self._records)[-n:]


@dataclass
class Services:
    """What a server's tools share; an async context manager whose exit closes everything once."""

    config: Config
    backend: SceneBackend
    call_log: CallLog = field(default_factory=CallLog)
    started_at: float = field(default_factory=time.time)
    _domains: dict[type, Any] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _closed: bool = False

    async def __aenter__(self) -> Services:
        if self._closed:
            raise RuntimeError("these services were closed; a host builds new ones to serve again")
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @property
    def closed(self) -> bool:
        return self._closed

    def domain(self, kind: type[D], make: Callable[[Config], D] | None = None) -> D:
        """The server's one `kind`, made on first use as `kind(config)` (or `make(config)`)."""
        with self._lock:
            if self._closed:
                raise RuntimeError(f"the services are closed; no {kind.__name__} is made any more")
            if kind not in self._domains:
                self._domains[kind] = (make or kind)(self.config)  # type: ignore[call-arg]
            return self._domains[kind]

    def existing(self, kind: type[D]) -> D | None:
        """The server's `kind` if one was made (a host or test closing it early), else None."""
        with self._lock:
            return self._domains.get(kind)

    def peer_states(self) -> list[BreakerStatus]:
        """The breaker of every peer the backend and the domain services made so far."""
        with self._lock:
            guards = [self.backend, *self._domains.values()]
        return [b.status() for g in guards if isinstance(g, GuardsPeers) for b in g.breakers()]

    def require_allowed(self, operation: str, what: str, person: Any = None) -> None:
        """Raise OPERATION_DISABLED unless `allow.<operation>` is on, or the person allowed this one call.

        `person` is the answer tools/confirm.py resolved for this call (never a tool argument): its
        `data.approved_operations` names what the person accepted."""
        if getattr(self.config.allow, operation):
            return
        if operation in getattr(getattr(person, "data", None), "approved_operations", ()):
            log.warning("allow.%s is off; the person allowed this one call", operation)
            return
        raise OperationDisabled(operation, what)

    async def close(self) -> None:
        """Close every domain service, then the backend; one failing close does not leak the rest.

        Only the first call closes (the host's exit); later ones return at once."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            domains = list(self._domains.items())
            self._domains.clear()
        for name, service in domains:
            closer = getattr(service, "close", None)
            if closer is None:
                continue
            try:
                result = closer()
                if inspect.isawaitable(result):
                    await result
            except Exception as exc:  # shutdown goes on: sockets and threads of the others must go too
                log.warning("closing the %s service failed: %s", name, exc)
        await self.backend.close()


AsyncRunner = Callable[[Callable[[], Awaitable[Any]]], Any]


@contextmanager
def hosted(services: Services, run: AsyncRunner = anyio.run) -> Iterator[Services]:
    """`async with services` for a host thread that runs no event loop (Slicer's main thread, the
    headless scene thread, `slicer-mcp`'s main thread); `run` runs a coroutine function there."""
    run(services.__aenter__)
    try:
        yield services
    finally:
        run(services.close)


def services_of(ctx: Context) -> Services:
    """The services of the server handling this call (the lifespan context)."""
    try:
        return ctx.request_context.lifespan_context
    except ValueError:  # called outside a client request, e.g. from the Slicer Python console
        return ctx.mcp_server.services  # type: ignore[attr-defined]
