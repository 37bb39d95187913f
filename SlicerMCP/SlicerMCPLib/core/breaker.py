"""Circuit breaker per peer: after N consecutive connection failures, calls fail fast.

Why: a stopped PACS, FHIR server, database or WebServer otherwise costs every call a full connect
timeout, so one dead peer stalls every client. Only connection failures count (the caller says
which failures those are); application errors (404, no match, a DIMSE failure status) prove the
peer is alive and reset it. Every peer's breaker lives in the object that talks to it (the
WebServer client, the DICOM service's nodes, each FHIR client, the RIS database); each of them
lists its breakers (`GuardsPeers`) so `slicer://status` can show their states.

How long it stays open: `breaker.first_cooldown_s` (1 s) the first time, doubled by each probe that
fails, up to `breaker.cooldown_s`; a success starts again from the first. So a peer that restarts
in a second or two is called again within a second or two, and one that stays down costs one probe
call per (growing) cool-down. A breaker that knows its peer's TCP address also looks, at most every
`CHECK_EVERY_S` and by one caller at a time, whether the port that refused (or did not answer)
accepts connections again: then the next call is the probe, before the cool-down ends. A peer whose
port stays open but which does not answer (hung) never takes that shortcut.
"""

from __future__ import annotations

import math
import socket
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Literal, Protocol, TypeVar, runtime_checkable
from urllib.parse import urlsplit

from pydantic import BaseModel, Field

from .config import BreakerConfig
from .errors import CircuitOpen

T = TypeVar("T")
State = Literal["closed", "open", "half_open"]
#: which exceptions are connection failures: exception types, or a test of the exception
Counts = tuple[type[BaseException], ...] | Callable[[BaseException], bool]
#: seconds between two looks at an open peer's port, and how long one look may take
CHECK_EVERY_S = 0.25
CHECK_TIMEOUT_S = 0.2


class BreakerStatus(BaseModel):
    """One peer's breaker as `slicer://status` shows it."""

    peer: str = Field(
        description="who is called: the WebServer, a DICOM node, a FHIR server, the RIS database"
    )
    state: State = Field(description="closed: calls go through; open: they fail fast; half_open: one probe")
    failures: int = Field(description="connection failures in a row")
    retry_at: str | None = Field(default=None, description="when open: the time (UTC) the next probe may go")


@runtime_checkable
class GuardsPeers(Protocol):
    """Something that calls peers through breakers (a backend or a domain service)."""

    def breakers(self) -> list[CircuitBreaker]: ...


def _iso(timestamp: float) -> str:
    """Whole seconds rounded up: a client that waits until this time finds the breaker ready."""
    return datetime.fromtimestamp(math.ceil(timestamp), UTC).isoformat(timespec="seconds")


class CircuitBreaker:
    """closed -> open after `failure_threshold` connection failures; one half-open probe after the cool-down.

    `address` (host, port), when the peer has one, lets an open breaker notice the peer is back."""

    def __init__(
        self,
        peer: str,
        settings: BreakerConfig | None = None,
        clock: Callable[[], float] = time.time,
        address: tuple[str, int] | None = None,
    ):
        self.peer = peer
        self.settings = settings or BreakerConfig()
        self._clock = clock
        self._address = address
        self._lock = threading.Lock()
        self._state: State = "closed"
        self._failures = 0
        self._opened_at = 0.0
        self._cooldown = 0.0
        self._openings = 0  # in a row, since the last success: each doubles the cool-down
        self._probing = False
        self._checking = False
        self._checked_at = 0.0
        self._seen_down = False  # the port refused (or timed out) since the breaker opened

    def _retry_at(self) -> float:
        return self._opened_at + self._cooldown

    def _open(self) -> None:
        self._openings += 1
        s = self.settings
        self._cooldown = min(s.first_cooldown_s * 2 ** min(self._openings - 1, 30), s.cooldown_s)
        self._state, self._opened_at, self._seen_down = "open", self._clock(), False

    def _look_at_port(self) -> None:
        """Outside the lock, by one caller: is the peer's port accepting again? Half-open if it
        was seen closed since the breaker opened and accepts now (the peer restarted)."""
        assert self._address is not None
        try:
            with socket.create_connection(self._address, timeout=CHECK_TIMEOUT_S):
                up = True
        except OSError:
            up = False
        with self._lock:
            self._checking, self._checked_at = False, self._clock()
            if self._state != "open":
                return
            if not up:
                self._seen_down = True
            elif self._seen_down:
                self._state = "half_open"

    def admit(self) -> None:
        """Raise CIRCUIT_OPEN unless a call may go to the peer now (closed, or the one half-open probe).

        An admitted call must end in `record_success` or `record_failure` (`call` does both)."""
        look = False
        with self._lock:
            if self._state == "closed":
                return
            now = self._clock()
            if self._state == "open" and now >= self._retry_at():
                self._state = "half_open"
            if (
                self._state == "open"
                and self._address is not None
                and not self._checking
                and now - self._checked_at >= CHECK_EVERY_S
            ):
                self._checking = look = True
        if look:
            self._look_at_port()
        with self._lock:
            if self._state == "closed":
                return
            if self._state == "half_open" and not self._probing:
                self._probing = True
                return
            when = _iso(self._retry_at())
            raise CircuitOpen(
                f"{self.peer} failed {self._failures} times in a row and is not being called; "
                f"the next attempt is allowed at {when}. Check that {self.peer} is running, then retry.",
                details={"peer": self.peer, "retry_at": when, "failures": self._failures},
            )

    def record_success(self) -> None:
        with self._lock:
            self._state, self._failures, self._probing, self._openings = "closed", 0, False, 0

    def record_failure(self) -> None:
        with self._lock:
            self._failures += 1
            was_probe, self._probing = self._probing, False
            if was_probe or (self._state == "closed" and self._failures >= self.settings.failure_threshold):
                self._open()

    def call(self, fn: Callable[[], T], connection_errors: Counts) -> T:
        """Run fn through the breaker; only the failures `connection_errors` names count."""
        self.admit()
        try:
            result = fn()
        except BaseException as exc:
            counts = (
                isinstance(exc, connection_errors)
                if isinstance(connection_errors, tuple)
                else connection_errors(exc)
            )
            if counts:
                self.record_failure()
            else:
                self.record_success()  # the peer answered, even if with an error
            raise
        self.record_success()
        return result

    def status(self) -> BreakerStatus:
        with self._lock:
            retry = _iso(self._retry_at()) if self._state != "closed" else None
            return BreakerStatus(peer=self.peer, state=self._state, failures=self._failures, retry_at=retry)


def url_address(url: str) -> tuple[str, int] | None:
    """The (host, port) an http(s) URL connects to, for a breaker's look at its peer."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    try:
        return parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:  # a bad port: the call itself will say so
        return None


def guarded(breaker: CircuitBreaker | None, fn: Callable[[], T], connection_errors: Counts) -> T:
    """`breaker.call(fn, ...)`, or just `fn()` where no breaker guards the peer."""
    return fn() if breaker is None else breaker.call(fn, connection_errors)


class BreakerRegistry:
    """One breaker per peer name, shared by every caller of that peer."""

    def __init__(self, settings: BreakerConfig | None = None):
        self.settings = settings or BreakerConfig()
        self._lock = threading.Lock()
        self._breakers: dict[str, CircuitBreaker] = {}

    def get(self, peer: str, address: tuple[str, int] | None = None) -> CircuitBreaker:
        with self._lock:
            if peer not in self._breakers:
                self._breakers[peer] = CircuitBreaker(peer, self.settings, address=address)
            return self._breakers[peer]

    def breakers(self) -> list[CircuitBreaker]:
        with self._lock:
            return list(self._breakers.values())

    def statuses(self) -> list[BreakerStatus]:
        return [b.status() for b in self.breakers()]
