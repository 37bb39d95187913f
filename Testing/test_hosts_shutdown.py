"""SIGTERM (issue 15 item 4) or a closed stdin (issue 16 item 3) ends `slicer-mcp serve --headless`
within the grace period, whatever runs.

The server runs as a user starts it; an `execute_python` call puts its main thread into one long
C call (`time.sleep(600)`), where the Python-level signal handler cannot run: before the signal
watchdog the process logged "stopping" and went on for the whole sleep.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from fixtures.serve_process import ServeProcess
from fixtures.transport import hang_up_during_call, http_client

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


@pytest.mark.timeout(180)
def test_closing_stdin_ends_a_stdio_server_stuck_in_a_call(tmp_path) -> None:
    """The client of `slicer-mcp serve --headless` (stdio) dies mid-call (issue 16 item 3): stdin
    closes, and the process stops within the grace, though its main thread sleeps in C for 600 s.
    Before, nothing stopped the main thread's work at the end of input: the process went on for the sleep."""
    config = tmp_path / "config.yaml"
    config.write_text(
        yaml.safe_dump({"allow": {"execute_python": True}, "limits": {"python_stop_grace_s": GRACE_S}}),
        encoding="utf-8",
    )
    env = {**os.environ, "SLICER_MCP_HOME": str(tmp_path), "SLICER_MCP_CONFIG": str(config)}
    env.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")
    command = [str(Path(sys.executable).with_name("slicer-mcp")), "serve", "--headless"]
    code, text = hang_up_during_call(command, env, "execute_python", {"code": "import time\ntime.sleep(600)"})
    assert code is not None, "still running 60 s after stdin closed"
    assert code != 0 and "stdin closed" in text and "exiting now" in text
