"""The in-Slicer gateway driver: a QTimer and a wake-up socket, both served on the main thread.

Slicer's PythonQt keeps the GIL on the main thread while Qt idles (thread support is off; see
docs/architecture.md, "In Slicer: PythonQt and the GIL"), so the server's worker threads run
only while the main thread runs Python or blocks in a call that releases the GIL. This driver
gives them that time without ever freezing Slicer:

- `wake()` (any thread, when the gateway gets work) writes one byte to a `socket.socketpair()`;
  a `QSocketNotifier` created on the main thread sees it, as Slicer's WebServer watches its
  sockets, and the slot drains the gateway at once. No Qt call is made from a worker thread.
- The timer (10 ms; 2 ms for a second after the server had work) drains the gateway too (a
  safety net), and asks the watched servers (`watch(probe)`) whether a worker thread needs the
  GIL: bytes waiting on a socket, a request being handled. Then, and only then (or when the
  tick ran work whose callers must go on), the main thread lends the GIL: it waits on the
  wake-up socket (which releases the GIL) in short slices, running gateway work as it arrives,
  until the servers are done (the server's last request ending also wakes it) or 8 ms from the
  tick's start. A tick holds the main thread for at most that, one scene operation more, and
  the time to take the GIL back from the server thread.

`QtApi` is a tiny shim so the same driver runs with Slicer's PythonQt `qt` module (Qt5) and
with PySide6 (Qt6: tests, benchmarks).
"""

from __future__ import annotations

import logging
import select
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..core.gateway import MainThreadGateway

log = logging.getLogger(__name__)

DEFAULT_PERIOD_MS = 10
HOT_PERIOD_MS = 2
HOT_FOR_S = 1.0
DEFAULT_BUDGET_S = 0.005
DEFAULT_LEND_S = 0.008
LEND_SLICE_S = 0.0005
LEND_SWITCH_S = 0.0005

Probe = Callable[[], bool]


@dataclass(frozen=True)
class QtApi:
    """The few Qt names the driver needs, and the calls that differ between bindings."""

    name: str
    QTimer: Any
    new_read_notifier: Callable[[int], Any]
    connect_timeout: Callable[[Any, Callable[[], None]], None]
    connect_activated: Callable[[Any, Callable[..., None]], None]


def pythonqt_api() -> QtApi:
    import qt  # Slicer's PythonQt bindings (Qt5)

    return QtApi(
        name="PythonQt",
        QTimer=qt.QTimer,
        new_read_notifier=lambda fd: qt.QSocketNotifier(fd, qt.QSocketNotifier.Read),
        connect_timeout=lambda timer, slot: timer.connect("timeout()", slot),
        connect_activated=lambda notifier, slot: notifier.connect("activated(int)", slot),
    )


def pyside6_api() -> QtApi:
    from PySide6 import QtCore

    return QtApi(
        name="PySide6",
        QTimer=QtCore.QTimer,
        new_read_notifier=lambda fd: QtCore.QSocketNotifier(fd, QtCore.QSocketNotifier.Type.Read),
        connect_timeout=lambda timer, slot: timer.timeout.connect(slot),
        connect_activated=lambda notifier, slot: notifier.activated.connect(slot),
    )


def default_qt_api() -> QtApi:
    """PythonQt inside Slicer, PySide6 elsewhere."""
    try:
        return pythonqt_api()
    except ImportError:
        return pyside6_api()


@dataclass
class TickStats:
    """What the driver measured on the main thread: how long each tick held it, and why."""

    ticks: int = 0
    wakeups: int = 0
    jobs: int = 0
    lends: int = 0
    longest_tick_s: float = 0.0
    longest_tick_cpu_s: float = 0.0
    keep_durations: bool = False
    durations_s: list[float] = field(default_factory=list)

    def record(self, wall_s: float, cpu_s: float, jobs: int, lent: bool) -> None:
        self.ticks += 1
        self.jobs += jobs
        self.lends += int(lent)
        self.longest_tick_s = max(self.longest_tick_s, wall_s)
        self.longest_tick_cpu_s = max(self.longest_tick_cpu_s, cpu_s)
        if self.keep_durations:
            self.durations_s.append(wall_s)

    def reset(self) -> None:
        self.ticks = self.wakeups = self.jobs = self.lends = 0
        self.longest_tick_s = self.longest_tick_cpu_s = 0.0
        self.durations_s.clear()


class QtDriver:
    """Drains `gateway` on the Qt main thread and lends the GIL to server threads that need it.

    `start()`, `stop()` and `watch()` must be called on the main thread (the thread running the
    Qt event loop); `wake()` may be called from any thread.
    """

    def __init__(
        self,
        gateway: MainThreadGateway,
        api: QtApi | None = None,
        *,
        period_ms: int = DEFAULT_PERIOD_MS,
        budget_s: float = DEFAULT_BUDGET_S,
        lend_s: float = DEFAULT_LEND_S,
        keep_durations: bool = False,
    ):
        self.gateway = gateway
        self.api = api or default_qt_api()
        self.period_ms = period_ms
        self.budget_s = budget_s
        self.lend_s = lend_s
        self.lend_slice_s = LEND_SLICE_S
        self.stats = TickStats(keep_durations=keep_durations)
        self._probes: list[Probe] = []
        self._timer: Any = None
        self._notifier: Any = None
        self._wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None
        self._signalled = False
        self._running = False
        self._hot = False
        self._hot_until = 0.0

    @property
    def running(self) -> bool:
        return self._running

    def start(self) -> None:
        if self._running:
            return
        api = self.api
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._notifier = api.new_read_notifier(self._wake_r.fileno())
        api.connect_activated(self._notifier, self._on_wake)
        self._timer = api.QTimer()
        self._timer.setInterval(self.period_ms)
        api.connect_timeout(self._timer, self._tick)
        self._signalled = False
        self._hot = False
        self._running = True
        self.gateway.bind(self.wake)
        self._timer.start()
        log.debug(
            "Qt driver started (%s, %d ms period, %.1f ms drain budget, %.1f ms GIL lend budget)",
            api.name,
            self.period_ms,
            self.budget_s * 1e3,
            self.lend_s * 1e3,
        )

    def stop(self) -> None:
        """Stop waking and ticking, then run what is still queued so no caller waits for nothing."""
        if not self._running:
            return
        self._running = False
        self.gateway.bind(_no_wake)
        self._timer.stop()
        self._notifier.setEnabled(False)
        while self.gateway.drain(self.budget_s):
            pass
        self._timer = None
        self._notifier = None
        for sock in (self._wake_r, self._wake_w):
            if sock is not None:
                sock.close()
        self._wake_r = self._wake_w = None

    def watch(self, probe: Probe) -> None:
        """Lend the GIL on each tick while `probe()` says a server thread needs it (main thread)."""
        if probe not in self._probes:
            self._probes.append(probe)

    def unwatch(self, probe: Probe) -> None:
        if probe in self._probes:
            self._probes.remove(probe)

    def wake(self) -> None:
        """Nudge the main thread: one byte on the wake-up socket unless one is already waiting.

        Only a socket write: no Qt object is touched from the calling thread.
        """
        sock = self._wake_w
        if self._signalled or sock is None:
            return
        self._signalled = True
        try:
            sock.send(b"\0")
        except (BlockingIOError, InterruptedError):
            pass  # the socket is full of wake-ups already: the main thread will run
        except OSError:
            pass  # stopped meanwhile: stop() runs what is queued

    def _clear_wake(self) -> None:
        """Read every waiting byte (else the notifier fires again at once), then accept new wake-ups.

        The flag drops after the read and before the gateway is drained, so a job queued
        meanwhile is either drained now or brings its own byte.
        """
        sock = self._wake_r
        if sock is not None:
            try:
                while sock.recv(4096):
                    pass
            except OSError:  # BlockingIOError: empty now; others: stopped meanwhile
                pass
        self._signalled = False

    def _on_wake(self, *_: Any) -> None:
        if not self._running:
            return
        self.stats.wakeups += 1
        self._clear_wake()
        self._tick()

    def _tick(self) -> None:
        if not self._running:
            return
        t0, c0 = time.perf_counter(), time.thread_time()
        ran = self.gateway.drain(self.budget_s)
        lent = False
        if ran or self._needs_gil():  # the callers of finished work need the GIL to go on, too
            lent = True
            # lend from the start of the tick: a long drain leaves one slice, not a second budget
            ran += self._lend_gil(
                max(t0 + self.lend_s, time.perf_counter() + LEND_SLICE_S), t0 + self.budget_s
            )
        else:
            # Any other thread of ours (DICOM, FHIR, RIS) that waited a switch interval for the
            # GIL has asked for it; releasing it once hands it over (CPython forces the switch).
            time.sleep(0)
        if ran or lent:
            self.stats.record(time.perf_counter() - t0, time.thread_time() - c0, ran, lent)
        self._pace(lent, t0)
        if self._running and self.gateway.pending():
            self.wake()  # more than one budget's worth: let the GUI breathe, then continue

    def _pace(self, lent: bool, now: float) -> None:
        """Tick every HOT_PERIOD_MS while a client is active (its next request is noticed sooner),
        and back at the calm period once the servers were quiet for HOT_FOR_S."""
        if self._timer is None:
            return
        if lent:
            self._hot_until = now + HOT_FOR_S
            if not self._hot:
                self._hot = True
                self._timer.setInterval(min(HOT_PERIOD_MS, self.period_ms))
        elif self._hot and now > self._hot_until:
            self._hot = False
            self._timer.setInterval(self.period_ms)

    def _needs_gil(self) -> bool:
        for probe in self._probes:
            try:
                if probe():
                    return True
            except Exception:  # a probe of a server that is stopping: ask again next tick
                log.debug("GIL probe failed", exc_info=True)
        return False

    def _lend_gil(self, deadline: float, jobs_until: float) -> int:
        """Wait on the wake-up socket (GIL released) while a server thread needs the GIL, running
        gateway work as it arrives until `jobs_until`. Returns the jobs run.

        The switch interval is lowered meanwhile, so that taking the GIL back after a slice waits
        about 0.5 ms for a busy server thread rather than 5 ms; it is restored before returning.
        """
        interval = sys.getswitchinterval()
        sys.setswitchinterval(LEND_SWITCH_S)
        try:
            return self._lend_loop(deadline, jobs_until)
        finally:
            sys.setswitchinterval(interval)

    def _lend_loop(self, deadline: float, jobs_until: float) -> int:
        ran = 0
        while self._running and self._wake_r is not None:
            left = deadline - time.perf_counter()
            if left <= 0:
                break
            try:
                readable, _, _ = select.select([self._wake_r], [], [], min(self.lend_slice_s, left))
            except (OSError, ValueError):
                break
            if readable:
                self._clear_wake()
            if self.gateway.pending():
                now = time.perf_counter()
                if now >= jobs_until:
                    break  # this tick's work budget is spent: Qt's turn; the re-wake brings us back
                ran += self.gateway.drain(jobs_until - now)
            elif not self._needs_gil():
                break
        return ran


def _no_wake() -> None:
    """The gateway's wake hook once the driver has stopped: nothing to nudge."""
