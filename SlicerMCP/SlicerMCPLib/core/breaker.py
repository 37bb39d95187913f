"""Circuit breaker per peer: after N consecutive connection failures, calls fail fast.

Why: a stopped PACS, FHIR server or database otherwise costs every call a full connect timeout,
so one dead peer stalls every client. Only connection failures count (the caller says which
exceptions those are); application errors (404, no match) prove the peer is alive and reset it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal, TypeVar

from .config import BreakerConfig
from .errors import CircuitOpen

T = TypeVar("T")
State = Literal["closed", "open", "half_open"]


@dataclass(frozen=True)
class BreakerStatus:
    peer: str
    state: State
    failures: int
    retry_at: str | None


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
        """Raise CIRCUIT_OPEN unless a call may go to the peer now (closed, or the one half-open probe)."""
        with self._lock:
            if self._state == "closed":
                return
            now = self._clock()
            if self._state == "open" and now >= self._retry_at():
                self._state = "half_open"
            if self._state == "half_open" and not self._probing:
                self._probing = True
                return
            when = datetime.fromtimestamp(self._retry_at(), UTC).isoformat(timespec="seconds")
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

    def call(self, fn: Callable[[], T], connection_errors: tuple[type[BaseException], ...]) -> T:
        """Run fn through the breaker; only `connection_errors` count as failures."""
        self.admit()
        try:
            result = fn()
        except connection_errors:
            self.record_failure()
            raise
        except BaseException:
            self.record_success()  # the peer answered, even if with an error
            raise
        self.record_success()
        return result

    def status(self) -> BreakerStatus:
        with self._lock:
            retry = None
            if self._state != "closed":
                retry = datetime.fromtimestamp(self._retry_at(), UTC).isoformat(timespec="seconds")
            return BreakerStatus(self.peer, self._state, self._failures, retry)


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

    def statuses(self) -> list[BreakerStatus]:
        with self._lock:
            return [b.status() for b in self._breakers.values()]
