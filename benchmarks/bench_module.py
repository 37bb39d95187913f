"""Gateway overhead per scene call through the in-Slicer Qt driver, and how long it holds the main thread.

The same QtDriver code as inside Slicer (here on PySide6, offscreen) drains the gateway for a
slicer-core scene. A worker thread (where the MCP server's event loop lives in Slicer) makes
N scene calls; the reference is the same scene operation called directly on the main thread
in the same run. A 1 ms heartbeat timer on the main thread measures the longest gap the GUI
would see (how long the main thread was unavailable).

    QT_QPA_PLATFORM=offscreen .venv/bin/python benchmarks/bench_module.py [N]

Targets: gateway overhead p99 <= 15 ms; longest main-thread block <= 10 ms.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import threading
import time
from collections.abc import Callable

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")

import numpy as np  # noqa: E402
from PySide6.QtCore import QEventLoop, QTimer  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from SlicerMCPLib.core.config import Config  # noqa: E402
from SlicerMCPLib.core.gateway import MainThreadGateway  # noqa: E402
from SlicerMCPLib.core.scene_backend import VolumeArray  # noqa: E402
from SlicerMCPLib.hosts.headless import create_headless_backend  # noqa: E402
from SlicerMCPLib.hosts.qt_driver import QtDriver, pyside6_api  # noqa: E402
from SlicerMCPLib.scene import nodes as mrml_nodes  # noqa: E402


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


class Heartbeat:
    """A 1 ms timer on the main thread; the longest gap between beats is the longest block."""

    def __init__(self) -> None:
        self.timer = QTimer()
        self.timer.setInterval(1)
        self.timer.timeout.connect(self._beat)
        self.last = time.perf_counter()
        self.longest = 0.0

    def _beat(self) -> None:
        now = time.perf_counter()
        self.longest = max(self.longest, now - self.last)
        self.last = now

    def start(self) -> None:
        self.last = time.perf_counter()
        self.longest = 0.0
        self.timer.start()

    def stop(self) -> float:
        self.timer.stop()
        return self.longest


def run_workers(app: QApplication, work: Callable[[], None], threads: int) -> None:
    workers = [threading.Thread(target=work) for _ in range(threads)]
    for w in workers:
        w.start()
    while any(w.is_alive() for w in workers):
        app.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 5)
    for w in workers:
        w.join()


def measure_driver(app, gateway, driver, op, n: int, threads: int) -> dict[str, float]:
    """Latency of `gateway.call(op)` from worker threads while the Qt loop runs on this thread."""
    latencies: list[tuple[float, float]] = []  # (call latency, latency minus the operation itself)
    lock = threading.Lock()
    per_thread = n // threads

    def work() -> None:
        mine = []
        for _ in range(per_thread):
            ran: list[float] = []

            def timed(ran: list[float] = ran) -> object:
                t = time.perf_counter()
                result = op()
                ran.append(time.perf_counter() - t)
                return result

            t0 = time.perf_counter()
            gateway.call(timed, timeout=30)
            total = time.perf_counter() - t0
            mine.append((total, total - ran[0]))
        with lock:
            latencies.extend(mine)

    heartbeat = Heartbeat()
    driver.stats.longest_tick_s = driver.stats.longest_tick_cpu_s = 0.0
    heartbeat.start()
    t0 = time.perf_counter()
    run_workers(app, work, threads)
    block = heartbeat.stop()
    return {
        "seconds": time.perf_counter() - t0,
        "longest_tick_cpu": driver.stats.longest_tick_cpu_s,
        "p50": pct([t for t, _ in latencies], 0.5),
        "p99": pct([t for t, _ in latencies], 0.99),
        "ovh50": pct([o for _, o in latencies], 0.5),
        "ovh99": pct([o for _, o in latencies], 0.99),
        "longest_tick": driver.stats.longest_tick_s,
        "heartbeat_gap": block,
    }


def idle_gap(app, seconds: float) -> float:
    """The heartbeat's longest gap with nothing to do: what this machine's scheduler costs anyway."""
    heartbeat = Heartbeat()
    heartbeat.start()
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        app.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 5)
    return heartbeat.stop()


def measure_backend_async(app, backend, n: int) -> list[float]:
    """`await backend.list_nodes(...)` from an asyncio loop on a worker thread (the server's path)."""
    latencies: list[float] = []

    async def main() -> None:
        for _ in range(n):
            t0 = time.perf_counter()
            await backend.list_nodes(None, "BenchVolume", 0, 10)
            latencies.append(time.perf_counter() - t0)

    run_workers(app, lambda: asyncio.run(main()), 1)
    return latencies


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    app = QApplication.instance() or QApplication([])
    gateway = MainThreadGateway()
    driver = QtDriver(gateway, pyside6_api())
    driver.start()
    backend = create_headless_backend(gateway, Config())
    volume = VolumeArray(np.zeros((20, 64, 64), np.int16), np.eye(4), "BenchVolume")
    asyncio.run(backend.add_volume(volume))  # on the main thread: runs directly

    def op():
        return mrml_nodes.list_nodes(backend.scene, None, "BenchVolume", 0, 10)

    for _ in range(50):  # warm up
        op()
    direct = []
    for _ in range(n):
        t0 = time.perf_counter()
        op()
        direct.append(time.perf_counter() - t0)
    ref50, ref99 = pct(direct, 0.5), pct(direct, 0.99)

    one = measure_driver(app, gateway, driver, op, n, threads=1)
    four = measure_driver(app, gateway, driver, op, n, threads=4)
    via_backend = measure_backend_async(app, backend, n)

    timer_only = QtDriver(gateway, pyside6_api())  # same driver, wake-up event disabled
    driver.stop()
    timer_only.start()
    gateway.bind(lambda: None)
    slow = measure_driver(app, gateway, timer_only, op, min(n, 300), threads=1)
    timer_only.stop()

    idle = idle_gap(app, one["seconds"])
    ms = 1e3
    print(
        f"SlicerMCP module benchmark: {n} scene calls (list_nodes on a slicer-core scene), PySide6 QtDriver"
    )
    print(
        f"reference: the same call made directly on the main thread: p50 {ref50 * ms:.3f} ms, p99 {ref99 * ms:.3f} ms"
    )
    print(f"reference: longest main-thread heartbeat gap with no calls (same duration): {idle * ms:.3f} ms")
    print(
        "path | call p50 | call p99 | overhead p50 | overhead p99 | p50 / direct | longest tick (wall / cpu) | heartbeat gap"
    )
    rows = [
        ("gateway.call, 1 caller thread", one),
        ("gateway.call, 4 caller threads", four),
        ("timer only (wake-up disabled), 1 caller", slow),
    ]
    for label, r in rows:
        print(
            f"{label} | {r['p50'] * ms:.3f} ms | {r['p99'] * ms:.3f} ms | {r['ovh50'] * ms:.3f} ms | "
            f"{r['ovh99'] * ms:.3f} ms | {r['p50'] / ref50:.1f}x | {r['longest_tick'] * ms:.3f} / "
            f"{r['longest_tick_cpu'] * ms:.3f} ms | {r['heartbeat_gap'] * ms:.3f} ms"
        )
    b50, b99 = pct(via_backend, 0.5), pct(via_backend, 0.99)
    print(
        f"await backend.list_nodes (asyncio worker) | {b50 * ms:.3f} ms | {b99 * ms:.3f} ms | | | {b50 / ref50:.1f}x"
    )
    print(
        f"mean direct call {statistics.mean(direct) * ms:.3f} ms; targets: overhead p99 <= 15 ms, block <= 10 ms"
    )
    asyncio.run(backend.close())  # on the main thread: runs directly


if __name__ == "__main__":
    main()
