"""The in-Slicer gateway driver with a real Qt event loop (PySide6, offscreen) on a real scene.

The same `QtDriver` code runs inside Slicer with PythonQt; here PySide6's QTimer and posted
events drive a slicer-core scene while MCP clients call tools over HTTP from other threads.
"""

from __future__ import annotations

import asyncio
import threading
import time

import anyio
import numpy as np

from fixtures.qt import pump_while, run_client_while_pumping
from fixtures.transport import http_client
from SlicerMCPLib.core.gateway import MainThreadGateway
from SlicerMCPLib.core.scene_backend import VolumeArray
from SlicerMCPLib.hosts.qt_driver import DEFAULT_BUDGET_S, QtApi, QtDriver, pyside6_api
from SlicerMCPLib.serving.endpoint import read_endpoint

CONCURRENT_CALLS = 50


def _add_volume(controller, name: str) -> str:
    volume = VolumeArray(
        np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6), np.diag([0.5, 0.5, 2.0, 1.0]), name
    )
    summary = anyio.run(controller.services.backend.add_volume, volume)  # on the main thread: runs directly
    return summary.id


def _busy(seconds: float) -> None:
    """Hold the CPU (not sleep), so the job really occupies the main thread."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def test_fifty_concurrent_http_calls_complete_and_ticks_stay_within_budget(qt_app, qt_controller) -> None:
    status = qt_controller.start(port=0)
    node_id = _add_volume(qt_controller, "QtDriverVolume")
    token = read_endpoint().read_token()
    driver = qt_controller._core.driver
    main_ident = threading.get_ident()
    seen_threads: set[int] = set()
    # every scene job records the thread it ran on
    gateway = qt_controller.gateway
    original_drain = gateway.drain

    def drain(budget_s: float = DEFAULT_BUDGET_S) -> int:
        seen_threads.add(threading.get_ident())
        return original_drain(budget_s)

    gateway.drain = drain

    async def clients():
        async def one_session(k: int):
            async with http_client(status.url, token) as client:
                return await asyncio.gather(
                    *(
                        client.call_tool("list_scene_nodes", {"name": "QtDriverVolume"})
                        if i % 2
                        else client.call_tool("get_node", {"node_id": node_id})
                        for i in range(CONCURRENT_CALLS // 5)
                    )
                )

        sessions = await asyncio.gather(*(one_session(k) for k in range(5)))
        return [r for results in sessions for r in results]

    results = run_client_while_pumping(qt_app, clients)

    assert len(results) == CONCURRENT_CALLS
    assert all(not r.is_error for r in results), [r.content for r in results if r.is_error][:3]
    listed = [r for r in results if "nodes" in r.structured_content]
    assert listed and all(r.structured_content["nodes"][0]["id"] == node_id for r in listed)
    assert all(
        r.structured_content["name"] == "QtDriverVolume"
        for r in results
        if "nodes" not in r.structured_content
    )
    assert seen_threads == {main_ident}, "scene work ran off the Qt main thread"
    stats = driver.stats
    assert stats.jobs >= CONCURRENT_CALLS
    assert stats.wakeups > 0, "the wake-up socket never woke the main thread"
    # A tick stops taking work once the budget is spent, so it can exceed the budget by one job
    # at most; ignoring the budget would put ~50 jobs of about 1 ms in one tick. The slack is wide
    # (thread CPU time still grows on an overloaded 2-core machine: 10 ms seen with 3 busy loops):
    # this checks the budget logic, the figure itself is in benchmarks/bench_module.py.
    assert stats.longest_tick_cpu_s <= driver.budget_s + gateway.longest_block_s + 0.015, (
        stats.longest_tick_cpu_s,
        gateway.longest_block_s,
    )
    assert qt_controller.status().calls_served >= CONCURRENT_CALLS


def test_budget_splits_a_backlog_across_ticks(qt_app) -> None:
    gateway = MainThreadGateway()
    driver = QtDriver(gateway, pyside6_api(), budget_s=0.005, keep_durations=True)
    driver.start()
    try:
        done: list[int] = []

        def submit_all() -> None:
            for i in range(20):
                gateway.call(lambda i=i: (_busy(0.002), done.append(i)), timeout=60)

        callers = [threading.Thread(target=submit_all) for _ in range(2)]
        for t in callers:
            t.start()
        pump_while(qt_app, lambda: any(t.is_alive() for t in callers), 60)
    finally:
        driver.stop()
    assert len(done) == 40
    # each job holds the thread >= 2 ms, so a 5 ms budget admits at most 3 jobs per tick
    assert driver.stats.ticks >= 40 // 3
    assert max(driver.stats.durations_s) < 0.005 + gateway.longest_block_s + 0.05


def test_wake_event_serves_calls_without_waiting_for_the_timer(qt_app) -> None:
    gateway = MainThreadGateway()
    driver = QtDriver(gateway, pyside6_api(), period_ms=60_000)  # the timer would not fire in this test
    driver.start()
    try:
        result: list[int] = []
        caller = threading.Thread(
            target=lambda: result.extend(gateway.call(lambda: 42, timeout=30) for _ in range(20))
        )
        caller.start()
        pump_while(qt_app, caller.is_alive, 30)
    finally:
        driver.stop()
    assert result == [42] * 20
    assert driver.stats.wakeups >= 1


def test_timer_alone_still_drains_when_no_wake_arrives(qt_app) -> None:
    gateway = MainThreadGateway()
    driver = QtDriver(gateway, pyside6_api(), period_ms=5)
    driver.start()
    gateway.bind(lambda: None)  # lose every wake-up: only the safety-net timer is left
    try:
        result: list[str] = []
        caller = threading.Thread(target=lambda: result.append(gateway.call(lambda: "timer", timeout=30)))
        caller.start()
        pump_while(qt_app, caller.is_alive, 30)
    finally:
        driver.stop()
    assert result == ["timer"]
    assert driver.stats.wakeups == 0 and driver.stats.ticks >= 1


def test_stop_runs_queued_work_and_further_calls_time_out_cleanly(qt_app) -> None:
    gateway = MainThreadGateway()
    driver = QtDriver(gateway, pyside6_api(), period_ms=60_000)
    driver.start()
    outcome: list[object] = []
    caller = threading.Thread(target=lambda: outcome.append(gateway.call(lambda: "ran", timeout=30)))
    caller.start()
    deadline = time.monotonic() + 10
    while not gateway.pending() and time.monotonic() < deadline:
        time.sleep(0.001)
    driver.stop()  # no event processed yet: stop itself must run the queued job
    caller.join(10)
    assert outcome == ["ran"]
    assert not driver.running
    from SlicerMCPLib.core.errors import SlicerTimeout

    late: list[BaseException] = []

    def late_call() -> None:
        try:
            gateway.call(lambda: "never", timeout=0.2)
        except SlicerTimeout as exc:
            late.append(exc)

    t = threading.Thread(target=late_call)
    t.start()
    t.join(10)
    assert late and late[0].details["started"] is False


def test_a_restarted_driver_wakes_again_after_a_wake_lost_at_stop(qt_app) -> None:
    gateway = MainThreadGateway()
    driver = QtDriver(gateway, pyside6_api(), period_ms=60_000)  # only wake-ups can serve calls
    driver.start()
    first = threading.Thread(target=lambda: gateway.call(lambda: "before stop", timeout=30))
    first.start()
    deadline = time.monotonic() + 10
    while not gateway.pending() and time.monotonic() < deadline:
        time.sleep(0.001)
    driver.stop()  # its wake-up event was posted but never delivered
    first.join(10)
    driver.start()
    try:
        result: list[str] = []
        caller = threading.Thread(target=lambda: result.append(gateway.call(lambda: "woken", timeout=5)))
        caller.start()
        pump_while(qt_app, caller.is_alive, 30)
    finally:
        driver.stop()
    assert result == ["woken"]


class _MainThreadOnly:
    """Wraps a Qt object or class: any use from another thread than the creating one is recorded."""

    def __init__(self, target, violations: list[str], main: int):
        self._target, self._violations, self._main = target, violations, main

    def __getattr__(self, name: str):
        if threading.get_ident() != self._main:
            self._violations.append(f"{name} from {threading.current_thread().name}")
        return getattr(self._target, name)

    def __call__(self, *args, **kwargs):
        if threading.get_ident() != self._main:
            self._violations.append(f"call from {threading.current_thread().name}")
        return _MainThreadOnly(self._target(*args, **kwargs), self._violations, self._main)


def test_worker_threads_never_touch_qt_objects(gil_loop) -> None:
    """Calls arriving from worker threads reach the main thread through the driver only: no Qt
    object is touched from a worker thread."""
    real = pyside6_api()
    violations: list[str] = []
    main = threading.get_ident()
    api = QtApi(
        name="checked",
        QTimer=_MainThreadOnly(real.QTimer, violations, main),
        new_read_notifier=lambda fd: _MainThreadOnly(real.new_read_notifier(fd), violations, main),
        connect_timeout=lambda timer, slot: real.connect_timeout(timer._target, slot),
        connect_activated=lambda notifier, slot: real.connect_activated(notifier._target, slot),
    )
    gateway = MainThreadGateway()
    driver = QtDriver(gateway, api)
    driver.start()
    try:

        def callers() -> list[int]:
            results: list[int] = []
            threads = [
                threading.Thread(target=lambda k=k: results.append(gateway.call(lambda: k, timeout=30)))
                for k in range(20)
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            return sorted(results)

        assert gil_loop.run(callers, timeout_s=60) == list(range(20))
    finally:
        driver.stop()
    assert violations == []
    # all 20 ran in the driver's drain on the main thread; whether the wake-up socket or a tick got
    # there first depends on load (a CI run saw one tick drain them all), and the wake-up path has
    # its own tests above
    assert driver.stats.jobs == 20
