"""Circuit breaker per peer: after N consecutive connection failures, calls fail fast.

Why: a stopped PACS, FHIR server, database or WebServer otherwise costs every call a full connect
timeout, so one dead peer stalls every client. Only connection failures count (the caller says
which failures those are); application errors (404, no match, a DIMSE failure status) prove the
peer is alive and reset it. Every peer's breaker lives in the object that talks to it (the
WebServer client, the DICOM service's nodes, each FHIR client, the RIS database); each of them
lists its breakers (`GuardsPeers`) so `slicer://status` can show their states.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Literal, Protocol, TypeVar, runtime_checkable

from pydantic import BaseModel, Field

from .config import BreakerConfig
from .errors import CircuitOpen

T = TypeVar("T")
State = Literal["closed", "open", "half_open"]
#: which exceptions are connection failures: exception types, or a test of the exception
Counts = tuple[type[BaseException], ...] | Callable[[BaseException], bool]


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
    """closed -> open after `failure_threshold` connection failures; one half-open probe after the cool-down."""

    def __init__(
        self, peer: str, settings: BreakerConfig | None = None, clock: Callable[[], float] = time.time
    ):
        self.peer = peer
        self.settings = settings or BreakerConfig()
        self._clock = clock
        self._lock = threading.Lock()
        self._state: State = "closed"
        self._failures = 0
        self._opened_at = 0.0
        self._probing = False

    def _retry_at(self) -> float:
        return self._opened_at + self.settings.cooldown_s

    def admit(self) -> None:
        """Raise CIRCUIT_OPEN unless a call may go to the peer now (closed, or the one half-open probe).

        An admitted call must end in `record_success` or `record_failure` (`call` does both)."""
        with self._lock:
            if self._state == "closed":
                return
            now = self._clock()
            if self._state == "open" and now >= self._retry_at():
                self._state = "half_open"
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
            self._state, self._failures, self._probing = "closed", 0, False

    def record_failure(self) -> None:
        with self._lock:
            self._failures += 1
            was_probe, self._probing = self._probing, False
            if was_probe or self._failures >= self.settings.failure_threshold:
                self._state, self._opened_at = "open", self._clock()

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


def guarded(breaker: CircuitBreaker | None, fn: Callable[[], T], connection_errors: Counts) -> T:
    """`breaker.call(fn, ...)`, or just `fn()` where no breaker guards the peer."""
    return fn() if breaker is None else breaker.call(fn, connection_errors)


class BreakerRegistry:
    """One breaker per peer name, shared by every caller of that peer."""

    def __init__(self, settings: BreakerConfig | None = None):
        self.settings = settings or BreakerConfig()
        self._lock = threading.Lock()
        self._breakers: dict[str, CircuitBreaker] = {}

    def get(self, peer: str) -> CircuitBreaker:
        with self._lock:
            if peer not in self._breakers:
                self._breakers[peer] = CircuitBreaker(peer, self.settings)
            return self._breakers[peer]

    def breakers(self) -> list[CircuitBreaker]:
        with self._lock:
            return list(self._breakers.values())

    def statuses(self) -> list[BreakerStatus]:
        return [b.status() for b in self.breakers()]
