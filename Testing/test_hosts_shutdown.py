"""SIGTERM (issue 15 item 4) or a closed stdin (issue 16 item 3) ends `slicer-mcp serve --headless`
within the grace period, whatever runs.

The server runs as a user starts it; an `execute_python` call puts its main thread into one long
C call (`time.sleep(600)`), where the Python-level signal handler cannot run: before the signal
watchdog the process logged "stopping" and went on for the whole sleep.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from fixtures.serve_process import ServeProcess
from fixtures.transport import INITIALIZE, http_client

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
    Before, the SDK's stdio loop waited for the running call and the process went on for the sleep."""
    config = tmp_path / "config.yaml"
    config.write_text(
        yaml.safe_dump({"allow": {"execute_python": True}, "limits": {"python_stop_grace_s": GRACE_S}}),
        encoding="utf-8",
    )
    env = {**os.environ, "SLICER_MCP_HOME": str(tmp_path), "SLICER_MCP_CONFIG": str(config)}
    env.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")
    command = Path(sys.executable).with_name("slicer-mcp")
    proc = subprocess.Popen(
        [str(command), "serve", "--headless"],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    log: list[str] = []
    threading.Thread(target=lambda: log.extend(proc.stderr), daemon=True).start()
    try:
        for message in (
            INITIALIZE,
            {"jsonrpc": "2.0", "method": "notifications/initialized"},
            {
                "jsonrpc": "2.0",
                "id": 2,
                "method": "tools/call",
                "params": {"name": "execute_python", "arguments": {"code": "import time\ntime.sleep(600)"}},
            },
        ):
            proc.stdin.write(json.dumps(message) + "\n")
            proc.stdin.flush()
            if message.get("id") == 1:
                assert json.loads(proc.stdout.readline())["id"] == 1  # initialized: the server is up
        time.sleep(3.0)  # the call reaches the main thread, which enters the sleep
        assert proc.poll() is None, "still serving before stdin closes"
        proc.stdin.close()  # what a dying client's end of the pipe does
        code = proc.wait(timeout=60)  # generous bound; before: 600 s
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = "".join(log)
    assert code != 0 and "stdin closed" in text and "exiting now" in text
