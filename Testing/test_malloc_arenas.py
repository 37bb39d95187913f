"""`ris serve` caps glibc's malloc arenas (external_server/slicer_mcp/malloc_arenas.py).

Why a test: the soak saw `ris serve` RSS step up at MariaDB restarts with Python's memory flat; the
cause is one glibc arena per new thread (the SCP's association threads). Each child process below
starts 8 threads that allocate at once and prints glibc's own arena count (malloc_stats): more
than 2 without the cap, at most 2 with it.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

CHILD = r"""
import ctypes, sys, threading
from slicer_mcp.malloc_arenas import limit_malloc_arenas
if sys.argv[1] == "cap":
    assert limit_malloc_arenas(2)
gate = threading.Barrier(8)
def work():
    gate.wait()
    keep = [bytearray(4096) for _ in range(2000)]
    gate.wait()
threads = [threading.Thread(target=work) for _ in range(8)]
[t.start() for t in threads]
[t.join() for t in threads]
ctypes.CDLL("libc.so.6").malloc_stats()  # "Arena N:" lines on stderr
"""


def _arenas(mode: str) -> int:
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": ":".join(sys.path)}
    done = subprocess.run(
        [sys.executable, "-c", CHILD, mode], capture_output=True, text=True, timeout=60, env=env
    )
    assert done.returncode == 0, done.stderr
    return sum(1 for line in done.stderr.splitlines() if line.startswith("Arena "))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc arenas")
def test_threads_get_at_most_two_arenas_once_capped() -> None:
    assert _arenas("free") > 2  # the control: glibc's default gives the threads arenas of their own
    assert 1 <= _arenas("cap") <= 2
