"""The main-thread gateway: all work on one thread, timeouts that leave the scene untouched."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from fixtures.scene import scene_busy
from SlicerMCPLib.core.errors import ErrorCode, SlicerTimeout
from SlicerMCPLib.core.gateway import MainThreadGateway, SceneThread


@pytest.fixture
def scene_thread():
    t = SceneThread().start()
    yield t
    t.stop()


def test_calls_from_many_threads_run_on_the_scene_thread(scene_thread: SceneThread) -> None:
    seen: list[int] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            for _ in range(20):
                seen.append(scene_thread.gateway.call(threading.get_ident, timeout=5))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(seen) == 160
    assert set(seen) == {scene_thread.ident}
    assert scene_thread.ident != threading.get_ident()


def test_acall_from_an_event_loop(scene_thread: SceneThread) -> None:
    async def main() -> list[int]:
        return await asyncio.gather(*(scene_thread.gateway.acall(threading.get_ident, 5) for _ in range(50)))

    assert set(asyncio.run(main())) == {scene_thread.ident}


def test_exceptions_reach_the_caller(scene_thread: SceneThread) -> None:
    def boom() -> None:
        raise KeyError("missing")

    with pytest.raises(KeyError):
        scene_thread.gateway.call(boom, timeout=5)
    # the driver survives and keeps serving
    assert scene_thread.gateway.call(lambda: 42, timeout=5) == 42


def test_timeout_before_start_withdraws_the_work(scene_thread: SceneThread) -> None:
    """A call that times out while queued never runs: the scene stays as it was."""
    gw = scene_thread.gateway
    changed: list[str] = []
    with scene_busy(gw), pytest.raises(SlicerTimeout) as info:
        gw.call(lambda: changed.append("ran"), timeout=0.2)
    assert info.value.code == ErrorCode.SLICER_TIMEOUT
    assert info.value.details["started"] is False
    gw.call(lambda: None, timeout=5)  # drain whatever is left
    assert changed == []


def test_timeout_while_running_lets_the_work_finish(scene_thread: SceneThread) -> None:
    gw = scene_thread.gateway
    finished = threading.Event()

    def slow() -> None:
        time.sleep(0.4)
        finished.set()

    with pytest.raises(SlicerTimeout) as info:
        gw.call(slow, timeout=0.1)
    assert info.value.details["started"] is True
    assert finished.wait(5)


def test_async_timeout_withdraws_too(scene_thread: SceneThread) -> None:
    gw = scene_thread.gateway
    changed: list[str] = []

    async def main() -> None:
        await gw.acall(lambda: changed.append("ran"), timeout=0.2)

    with scene_busy(gw), pytest.raises(SlicerTimeout):
        asyncio.run(main())
    gw.call(lambda: None, timeout=5)
    assert changed == []


def test_cancelled_acall_withdraws_the_work(scene_thread: SceneThread) -> None:
    """A client that cancels a queued call (MCP notifications/cancelled) must not change the scene later."""
    gw = scene_thread.gateway
    changed: list[str] = []

    async def main() -> None:
        task = asyncio.create_task(gw.acall(lambda: changed.append("ran"), timeout=30))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    with scene_busy(gw):
        asyncio.run(main())
    gw.call(lambda: None, timeout=5)
    assert changed == []


def test_drain_respects_its_budget() -> None:
    gw = MainThreadGateway()
    gw.bind()
    jobs = [gw._submit(lambda: time.sleep(0.002)) for _ in range(50)]
    ran = gw.drain(budget_s=0.005)
    assert 1 <= ran < 50  # 50 jobs of 2 ms: without the 5 ms budget one drain would run them all
    while gw.drain(0.005):
        pass
    assert all(j.done.is_set() for j in jobs)


def test_call_on_the_main_thread_runs_inline() -> None:
    gw = MainThreadGateway()
    gw.bind()
    assert gw.call(threading.get_ident, timeout=1) == threading.get_ident()
    assert gw.pending() == 0


def test_calls_after_the_driver_stopped_fail_at_once() -> None:
    """Not at their timeout: a stopped host says so immediately, and the work never runs."""
    from SlicerMCPLib.core.errors import SlicerConnectionError

    thread = SceneThread().start()
    assert thread.gateway.call(lambda: 1, timeout=5) == 1
    thread.stop()
    ran: list[int] = []
    t0 = time.perf_counter()
    with pytest.raises(SlicerConnectionError) as info:
        thread.gateway.call(lambda: ran.append(1), timeout=30)
    assert time.perf_counter() - t0 < 1.0
    assert info.value.code == ErrorCode.SLICER_CONNECTION_ERROR
    assert ran == []


def test_close_fails_queued_work_without_running_it() -> None:
    gw = MainThreadGateway()
    gw.bind()  # this thread is "main": nothing drains while another thread waits
    ran: list[int] = []
    errors: list[BaseException] = []

    def caller() -> None:
        try:
            gw.call(lambda: ran.append(1), timeout=30)
        except BaseException as exc:  # checked below
            errors.append(exc)

    t = threading.Thread(target=caller)
    t.start()
    while gw.pending() == 0:
        time.sleep(0.001)
    gw.close()
    t.join(5)
    assert not t.is_alive() and ran == []
    assert errors and errors[0].code == ErrorCode.SLICER_CONNECTION_ERROR
