"""The GIL-holding loop (fixtures/pythonqt_gil.py) behaves like Slicer's main thread, and PySide6's own loop does not.

These tests prove the emulation the in-Slicer tests rely on, with the same two probes as in
the issue: how much a counting thread gets done while the main thread idles in the loop, and
how soon a thread blocked in recv() answers a ping. The margins are wide (a loaded 2-core
machine); the effect is orders of magnitude.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time

from PySide6.QtCore import QCoreApplication, QTimer

PING_CHILD = """
import socket, sys, time
s = socket.socket(fileno=int(sys.argv[2]))
time.sleep(float(sys.argv[1]))
t = time.perf_counter()
s.send(b"p")
s.recv(1)
print(time.perf_counter() - t)
"""


def _count_share(enter_loop, seconds: float) -> float:
    """The share of its free-running count a Python thread achieves while this thread sits in a loop.

    `enter_loop()` runs a Qt event loop until quit; the counts are read from two Python timer
    slots inside the loop, so only the time in the loop itself is measured.
    """
    stop = threading.Event()
    count = [0]

    def counter() -> None:
        while not stop.is_set():
            count[0] += 1

    thread = threading.Thread(target=counter)
    thread.start()
    try:
        time.sleep(0.05)
        before = count[0]
        time.sleep(seconds)
        free = count[0] - before
        marks: list[tuple[float, int]] = []
        QTimer.singleShot(0, lambda: marks.append((time.perf_counter(), count[0])))
        QTimer.singleShot(
            int(seconds * 1000) + 1,
            lambda: (marks.append((time.perf_counter(), count[0])), QCoreApplication.quit()),
        )
        enter_loop()
    finally:
        stop.set()
        thread.join()
    (t0, c0), (t1, c1) = marks
    return (c1 - c0) / (t1 - t0) / (free / seconds)


def _pyside_loop(app, seconds: float) -> None:
    QTimer.singleShot(int(seconds * 1000), app.quit)
    app.exec()


def _ping_latency(block, ping_after_s: float) -> float:
    """Seconds for a thread blocked in recv() to echo a ping sent by another process while `block()` runs."""
    ours, theirs = socket.socketpair()

    def echo() -> None:
        data = ours.recv(1)
        ours.send(data)

    echoer = threading.Thread(target=echo)
    echoer.start()
    child = subprocess.Popen(
        [sys.executable, "-I", "-S", "-c", PING_CHILD, str(ping_after_s), str(theirs.fileno())],
        pass_fds=[theirs.fileno()],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        block()
        out, _ = child.communicate(timeout=30)
    finally:
        child.kill()
        echoer.join(10)
        ours.close()
        theirs.close()
    return float(out.strip())


def test_a_counting_thread_starves_in_the_gil_loop_but_not_in_pysides(qt_app, gil_loop) -> None:
    seconds = 0.5
    pyside = _count_share(qt_app.exec, seconds)
    held = _count_share(gil_loop.enter, seconds)
    print(f"counting thread share: PySide6 loop {pyside:.1%}, GIL-holding loop {held:.2%}")
    assert held < 0.05, held
    assert pyside > 0.25, pyside


def test_a_thread_blocked_in_recv_answers_only_when_the_gil_loop_runs_python(qt_app, gil_loop) -> None:
    loop_s, ping_after_s = 2.0, 0.4  # the child needs well under 1.6 s to start, even on a busy machine
    pyside = _ping_latency(lambda: _pyside_loop(qt_app, loop_s), ping_after_s)
    held = _ping_latency(lambda: gil_loop.idle(loop_s), ping_after_s)
    print(f"ping latency: PySide6 loop {pyside * 1e3:.2f} ms, GIL-holding loop {held * 1e3:.0f} ms")
    assert pyside < 0.1, pyside
    assert held > 0.3, held  # answered only when the loop's quit timer ran Python


def test_run_returns_the_work_result_and_reraises_its_error(gil_loop) -> None:
    assert gil_loop.run(lambda: 6 * 7, timeout_s=30) == 42

    def fails() -> None:
        raise ValueError("from the worker")

    try:
        gil_loop.run(fails, timeout_s=30)
    except ValueError as exc:
        assert "from the worker" in str(exc)
    else:
        raise AssertionError("the worker's error was not re-raised")
