"""SIGTERM ends `slicer-mcp serve --headless` within the grace period, whatever runs (issue 15 item 4).

The server runs as a user starts it; an `execute_python` call puts its main thread into one long
C call (`time.sleep(600)`), where the Python-level signal handler cannot run: before the signal
watchdog the process logged "stopping" and went on for the whole sleep.
"""

from __future__ import annotations

import asyncio
import signal
import threading
import time

import pytest

from fixtures.serve_process import ServeProcess
from fixtures.transport import http_client

GRACE_S = 1.0


def _call_in_background(url: str, token: str, code: str) -> threading.Thread:
    async def call() -> None:
        async with http_client(url, token, timeout=900) as client:
            await client.call_tool("execute_python", {"code": code})

    def run() -> None:
        try:
            asyncio.run(call())
        except BaseException:  # the server goes away mid-call: that is the point
            pass

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


@pytest.mark.timeout(180)
def test_sigterm_ends_a_server_stuck_in_a_c_call_within_the_grace(tmp_path) -> None:
    config = {"allow": {"execute_python": True}, "limits": {"python_stop_grace_s": GRACE_S}}
    with ServeProcess(tmp_path, config=config) as server:
        assert server.proc is not None
        _call_in_background(server.url, server.token, "import time\ntime.sleep(600)")
        time.sleep(3.0)  # the call reaches the server and its main thread enters the sleep
        assert server.proc.poll() is None, "still serving before the signal"
        sent = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        code = server.proc.wait(timeout=60)  # generous bound; without the watchdog: 600 s
        waited = time.monotonic() - sent
    assert code == 128 + signal.SIGTERM and waited < 60
    log = "".join(server.stderr_lines)
    assert "stopping" in log and "exiting now" in log
