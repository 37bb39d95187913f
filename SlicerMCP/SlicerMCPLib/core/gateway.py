"""The main-thread gateway: the one way any thread gets MRML, VTK or Qt work done.

MRML, VTK and Qt are not thread-safe. Every scene operation is queued here with
`call(fn, timeout)` (or `await acall(...)` from asyncio); a driver running on the
main thread executes queued work with `drain(budget_s)`. Headless the driver is a
plain loop (`LoopDriver`); inside Slicer it is a QTimer plus a posted wake-up event
(`SlicerMCPLib.qt_driver`). A call whose work has not started when its timeout
expires (or whose awaiting task is cancelled) is withdrawn, so the scene never sees
it: it fails with SLICER_TIMEOUT and the scene stays as it was. Work that has started
always runs to completion.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from .errors import SlicerConnectionError, SlicerTimeout

log = logging.getLogger(__name__)
T = TypeVar("T")

_PENDING, _RUNNING, _DONE, _WITHDRAWN = range(4)


class Driver(Protocol):
    """Runs `gateway.drain` on the main thread; `wake` is called (from any thread) when work arrives."""

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def wake(self) -> None: ...


class _Job:
    __slots__ = ("fn", "state", "result", "error", "done", "on_done", "enqueued_at")

    def __init__(self, fn: Callable[[], Any]):
        self.fn = fn
        self.state = _PENDING
        self.result: Any = None
        self.error: BaseException | None = None
        self.done = threading.Event()
        self.on_done: Callable[[], None] | None = None
        self.enqueued_at = time.perf_counter()


def _signal_done(job: _Job) -> None:
    """Wake whoever waits for `job` (a thread, or an event loop through `on_done`)."""
    job.done.set()
    if job.on_done is not None:
        try:
            job.on_done()
        except RuntimeError:  # the caller's event loop has closed meanwhile
            pass


class MainThreadGateway:
    """Queue of scene work, executed by whichever thread calls `drain` (the main thread)."""

    def __init__(self) -> None:
        self._queue: collections.deque[_Job] = collections.deque()
        self._lock = threading.Lock()
        self._main_ident: int | None = None
        self._wake: Callable[[], None] = lambda: None
        self._closed = False
        self.calls_run = 0
        self.longest_block_s = 0.0

    # -- driver side -------------------------------------------------------------------------------
    def bind(self, wake: Callable[[], None] | None = None) -> None:
        """Declare the calling thread as the main thread; `wake` is how to nudge its driver."""
        self._main_ident = threading.get_ident()
        if wake is not None:
            self._wake = wake

    @property
    def main_thread_ident(self) -> int | None:
        return self._main_ident

    def pending(self) -> int:
        with self._lock:
            return len(self._queue)

    def drain(self, budget_s: float = 0.005) -> int:
        """Run queued work until the queue is empty or `budget_s` has passed; returns jobs run.

        At least one job runs per call, so a single long job still makes progress.
        """
        if self._main_ident is None:
            self._main_ident = threading.get_ident()
        start = time.perf_counter()
        ran = 0
        while True:
            with self._lock:
                if not self._queue:
                    break
                job = self._queue.popleft()
                if job.state != _PENDING:
                    continue
                job.state = _RUNNING
            t0 = time.perf_counter()
            try:
                job.result = job.fn()
            except BaseException as exc:  # handed to the caller, never lost on the main thread
                job.error = exc
            finally:
                elapsed = time.perf_counter() - t0
                self.longest_block_s = max(self.longest_block_s, elapsed)
                with self._lock:
                    job.state = _DONE
                _signal_done(job)
            ran += 1
            self.calls_run += 1
            if time.perf_counter() - start >= budget_s:
                break
        return ran

    # -- caller side -------------------------------------------------------------------------------
    def _submit(self, fn: Callable[[], Any], on_done: Callable[[], None] | None = None) -> _Job:
        job = _Job(fn)
        job.on_done = on_done
        with self._lock:
            if self._closed:
                raise _closed_error()
            self._queue.append(job)
        self._wake()
        return job

    def close(self) -> None:
        """No driver will drain any more: fail queued and future calls at once, not at their timeout."""
        with self._lock:
            self._closed = True
            stranded = [job for job in self._queue if job.state == _PENDING]
            self._queue.clear()
            for job in stranded:
                job.state = _DONE
                job.error = _closed_error()
        for job in stranded:
            _signal_done(job)

    def _withdraw(self, job: _Job) -> bool:
        """Withdraw a job that has not started; True when it will never run."""
        with self._lock:
            if job.state == _PENDING:
                job.state = _WITHDRAWN
                return True
            return False

    def on_main_thread(self) -> bool:
        return self._main_ident is not None and threading.get_ident() == self._main_ident

    def call(self, fn: Callable[[], T], timeout: float = 30.0) -> T:
        """Run `fn` on the main thread and return its result (re-raising its exception)."""
        if self.on_main_thread():
            return fn()
        job = self._submit(fn)
        if not job.done.wait(timeout):
            self._raise_timeout(job, timeout)
        return self._outcome(job)

    async def acall(self, fn: Callable[[], T], timeout: float = 30.0) -> T:
        """`call` for coroutines: waits without blocking the event loop's thread."""
        if self.on_main_thread():
            return fn()
        loop = asyncio.get_running_loop()
        finished = asyncio.Event()
        job = self._submit(fn, on_done=lambda: loop.call_soon_threadsafe(finished.set))
        try:
            await asyncio.wait_for(finished.wait(), timeout)
        except TimeoutError:
            if not job.done.is_set():
                self._raise_timeout(job, timeout)
        except asyncio.CancelledError:  # the client gave up: work not yet started must never run
            self._withdraw(job)
            raise
        return self._outcome(job)

    def _raise_timeout(self, job: _Job, timeout: float) -> None:
        if self._withdraw(job):
            raise SlicerTimeout(
                f"the scene did not answer within {timeout:g} s (Slicer's main thread is busy); "
                "nothing was changed. Try again, or raise the timeout in the config (timeouts).",
                details={"timeout_s": timeout, "started": False},
            )
        if job.done.wait(0):
            return
        raise SlicerTimeout(
            f"the scene operation is still running after {timeout:g} s; it will finish on its own. "
            "Check the scene before repeating it.",
            details={"timeout_s": timeout, "started": True},
        )

    @staticmethod
    def _outcome(job: _Job) -> Any:
        if job.error is not None:
            raise job.error
        return job.result


def _closed_error() -> SlicerConnectionError:
    return SlicerConnectionError(
        "the scene host has stopped (Slicer is closing or the server was stopped); nothing was changed. "
        "Start the server again, then repeat the call.",
        details={"started": False},
    )


class LoopDriver:
    """Headless driver: the main thread sits in `run()` draining the gateway until stopped."""

    def __init__(self, gateway: MainThreadGateway, budget_s: float = 0.05, idle_wait_s: float = 0.1):
        self.gateway = gateway
        self.budget_s = budget_s
        self.idle_wait_s = idle_wait_s
        self._event = threading.Event()
        self._stop = threading.Event()

    def start(self) -> None:
        self.gateway.bind(self.wake)

    def wake(self) -> None:
        self._event.set()

    def stop(self) -> None:
        self._stop.set()
        self._event.set()

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def run(self, until: Callable[[], bool] | None = None) -> None:
        """Drain work on this thread until `stop()` is called or `until()` is true."""
        self.start()
        while not self._stop.is_set() and not (until and until()):
            self._event.wait(self.idle_wait_s)
            self._event.clear()
            while self.gateway.drain(self.budget_s):
                pass
        while self.gateway.drain(self.budget_s):
            pass
        self.gateway.close()


class SceneThread:
    """A dedicated thread that plays the main thread: for hosts whose real main thread is busy
    elsewhere (tests, benchmarks, an embedding application). All scene work runs on it."""

    def __init__(self, gateway: MainThreadGateway | None = None, name: str = "slicer-mcp-scene"):
        self.gateway = gateway or MainThreadGateway()
        self.driver = LoopDriver(self.gateway)
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def _run(self) -> None:
        self.driver.start()
        self._ready.set()
        self.driver.run()

    def start(self) -> SceneThread:
        self._thread.start()
        self._ready.wait()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self.driver.stop()
        self._thread.join(timeout)

    @property
    def ident(self) -> int | None:
        return self._thread.ident
