"""The MCP server conformance suite (@modelcontextprotocol/conformance 0.1.10, pinned in
Testing/node/package.json) against `slicer-mcp serve --headless --transport http`.

Only the generic scenarios, which apply to any server; the others expect the SDKs'
"everything" test server's tools and prompts (see docs/mcp-features.md for the full run).
The suite sends no Authorization header: Testing/node/conformance_auth.cjs, preloaded with
`--require`, adds the bearer token to its fetch calls. SLICER_MCP_CONFORMANCE may name the
`conformance` executable of another install.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from fixtures.core import PROJECT_ROOT, wait_or_kill

GENERIC = [
    "server-initialize",
    "ping",
    "tools-list",
    "resources-list",
    "prompts-list",
    "logging-set-level",
    "completion-complete",
    "resources-subscribe",
    "resources-unsubscribe",
    "server-sse-multiple-streams",
]
AUTH_PRELOAD = PROJECT_ROOT / "Testing" / "node" / "conformance_auth.cjs"


def conformance_bin() -> str:
    path = Path(
        os.environ.get("SLICER_MCP_CONFORMANCE")
        or PROJECT_ROOT / ".test-tools" / "node_modules" / ".bin" / "conformance"
    )
    if not path.exists():
        pytest.fail(f"{path} is missing: run scripts/setup.sh --test (installs Testing/node/package.json)")
    return str(path)


@pytest.fixture
def headless_http(isolated_home: Path) -> Iterator[tuple[str, str]]:
    """`slicer-mcp serve --headless --transport http --port 0` as a user starts it: (url, token)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "slicer_mcp", "serve", "--headless", "--transport", "http", "--port", "0"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "VTK_DEFAULT_OPENGL_WINDOW": "vtkEGLRenderWindow"},
    )
    assert proc.stderr is not None
    url = None
    for line in proc.stderr:
        found = re.search(r"serving MCP at (\S+)", line)
        if found:
            url = found.group(1)
            break
    try:
        assert url, "slicer-mcp did not say where it serves"
        yield url, (isolated_home / "token").read_text().strip()
    finally:
        proc.terminate()
        wait_or_kill(proc, 15)


@pytest.mark.peers
def test_generic_conformance_scenarios_pass(headless_http: tuple[str, str], tmp_path: Path) -> None:
    url, token = headless_http
    exe = conformance_bin()
    env = {**os.environ, "SLICER_MCP_BEARER": token, "NODE_OPTIONS": f"--require {AUTH_PRELOAD}"}
    failed = {}
    for scenario in GENERIC:
        done = subprocess.run(
            [exe, "server", "--url", url, "--scenario", scenario],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            cwd=tmp_path,
        )
        out = re.sub(r"\x1b\[[0-9;]*m", "", done.stdout + done.stderr)
        summary = re.search(r"Passed: (\d+)/(\d+), (\d+) failed", out)
        if done.returncode != 0 or summary is None or summary.group(3) != "0" or summary.group(1) == "0":
            failed[scenario] = out[-1500:]
    assert not failed, failed
