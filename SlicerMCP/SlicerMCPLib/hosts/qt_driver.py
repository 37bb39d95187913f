"""The in-Slicer gateway driver: a QTimer plus a posted wake-up event, both on the main thread.

The timer (about 10 ms) drains the gateway for at most about 5 ms per tick, so the GUI
stays responsive. A timer alone adds up to one period of latency per call, so `wake()`
(called by the gateway from any thread when work arrives) posts a Qt event to a QObject
living on the main thread; Qt delivers it there and the work runs at once. A posted event
is thread-safe in Qt; a Signal emitted from a worker thread is not safe with PySide6
(see DESIGN.md), so none is used.

`QtApi` is a tiny shim so the same driver runs with Slicer's PythonQt `qt` module and with
PySide6 (tests, benchmarks).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..core.gateway import MainThreadGateway

log = logging.getLogger(__name__)

DEFAULT_PERIOD_MS = 10
DEFAULT_BUDGET_S = 0.005


@dataclass(frozen=True)
class QtApi:
    """The few Qt names the driver needs, and the two calls that differ between bindings."""

    name: str
    QObject: Any
    QTimer: Any
    QEvent: Any
    QCoreApplication: Any
    connect_timeout: Callable[[Any, Callable[[], None]], None]
    event_type: Callable[[int], Any]


def pythonqt_api() -> QtApi:
    import qt  # Slicer's PythonQt bindings

    return QtApi(
        name="PythonQt",
        QObject=qt.QObject,
        QTimer=qt.QTimer,
        QEvent=qt.QEvent,
        QCoreApplication=qt.QCoreApplication,
        connect_timeout=lambda timer, slot: timer.connect("timeout()", slot),
        event_type=int,
    )


def pyside6_api() -> QtApi:
    from PySide6 import QtCore

    return QtApi(
        name="PySide6",
        QObject=QtCore.QObject,
        QTimer=QtCore.QTimer,
        QEvent=QtCore.QEvent,
        QCoreApplication=QtCore.QCoreApplication,
        connect_timeout=lambda timer, slot: timer.timeout.connect(slot),
        event_type=QtCore.QEvent.Type,
    )


def default_qt_api() -> QtApi:
    """PythonQt inside Slicer, PySide6 elsewhere."""
    try:
        return pythonqt_api()
    except ImportError:
        return pyside6_api()


def _receiver_class(api: QtApi) -> type:
    """A QObject subclass (of this binding) that runs `handler` when our event type arrives."""
    base = api.QObject

    class WakeReceiver(base):  # type: ignore[misc, valid-type]
        def __init__(self, event_type: Any, handler: Callable[[], None]):
            base.__init__(self)
            self._event_type = event_type
            self._handler = handler

        def event(self, event: Any) -> bool:
            if event.type() == self._event_type:
                self._handler()
                return True
            return base.event(self, event)

    return WakeReceiver


@dataclass
class TickStats:
    """What the driver measured on the main thread: how long each drain held it."""

    ticks: int = 0
    wakeups: int = 0
    jobs: int = 0
    longest_tick_s: float = 0.0
    longest_tick_cpu_s: float = 0.0
    keep_durations: bool = False
    durations_s: list[float] = field(default_factory=list)

    def record(self, wall_s: float, cpu_s: float, jobs: int) -> None:
        self.ticks += 1
        self.jobs += jobs
        self.longest_tick_s = max(self.longest_tick_s, wall_s)
        self.longest_tick_cpu_s = max(self.longest_tick_cpu_s, cpu_s)
        if self.keep_durations:
            self.durations_s.append(wall_s)


class QtDriver:
    """Drains `gateway` on the Qt main thread from a timer and from posted wake-up events.

    `start()` and `stop()` must be called on the main thread (the thread running the Qt
    event loop); `wake()` may be called from any thread.
    """

    def __init__(
        self,
        gateway: MainThreadGateway,
        api: QtApi | None = None,
        *,
        period_ms: int = DEFAULT_PERIOD_MS,
        budget_s: float = DEFAULT_BUDGET_S,
        keep_durations: bool = False,
    ):
        self.gateway = gateway
        self.api = api or default_qt_api()
        self.period_ms = period_ms
        self.budget_s = budget_s
        self.stats = TickStats(keep_durations=keep_durations)
        self._timer: Any = None
        self._receiver: Any = None
        self._event_type: Any = None
        self._posted = False
        self._running = False
        self._lock = threading.Lock()

    @property
    def running(self) -> bool:
        return self._running

    def start(self) -> None:
        if self._running:
            return
        api = self.api
        self._event_type = api.event_type(api.QEvent.registerEventType())
        self._receiver = _receiver_class(api)(self._event_type, self._on_wake)
        self._timer = api.QTimer()
        self._timer.setInterval(self.period_ms)
        api.connect_timeout(self._timer, self._tick)
        with self._lock:
            self._posted = False  # a wake-up posted before the last stop died with its receiver
            self._running = True
        self.gateway.bind(self.wake)
        self._timer.start()
        log.debug(
            "Qt driver started (%s, %d ms period, %.1f ms budget)",
            api.name,
            self.period_ms,
            self.budget_s * 1e3,
        )

    def stop(self) -> None:
        """Stop waking and ticking, then run what is still queued so no caller waits for nothing."""
        if not self._running:
            return
        with self._lock:
            self._running = False
        self.gateway.bind(_no_wake)
        self._timer.stop()
        while self.gateway.drain(self.budget_s):
            pass
        # Qt objects are dropped on this (main) thread; a wake event still queued for the
        # receiver is discarded by Qt together with it.
        self._timer = None
        self._receiver = None

    def wake(self) -> None:
        """Post one wake-up event unless one is already on its way (coalesced).

        Posted under the lock, so `stop()` cannot drop the receiver in between (and this
        thread never holds the last reference to a QObject that lives on the main thread).
        """
        with self._lock:
            if self._posted or not self._running:
                return
            self._posted = True
            self.api.QCoreApplication.postEvent(self._receiver, self.api.QEvent(self._event_type))

    def _on_wake(self) -> None:
        with self._lock:
            self._posted = False
        self.stats.wakeups += 1
        self._tick()
        if self._running and self.gateway.pending():
            self.wake()  # more than one budget's worth: let the GUI breathe, then continue

    def _tick(self) -> None:
        if not self._running:
            return
        t0, c0 = time.perf_counter(), time.thread_time()
        ran = self.gateway.drain(self.budget_s)
        if ran:
            self.stats.record(time.perf_counter() - t0, time.thread_time() - c0, ran)


def _no_wake() -> None:
    """The gateway's wake hook once the driver has stopped: the timer is gone, nothing to nudge."""
