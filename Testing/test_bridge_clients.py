"""Real MCP clients launching `slicer-mcp` over stdio: Claude Code's CLI and the MCP Inspector CLI.

Both come pinned from Testing/node/package.json into .test-tools/ (scripts/setup.sh --test).
`claude mcp list` exits 0 even when a server fails, so the tests read its text. Claude Code
runs offline without an account; HOME and CLAUDE_CONFIG_DIR point into the test's temp dir.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from fixtures.bridge import PeerProcess, bridge_env
from fixtures.core import PROJECT_ROOT, free_port

TOOLS_BIN = PROJECT_ROOT / ".test-tools" / "node_modules" / ".bin"
SLICER_MCP = str(Path(sys.executable).parent / "slicer-mcp")
CONNECTED = "✓ Connected"


def node_tool(name: str) -> str:
    path = TOOLS_BIN / name
    if not path.exists():
        pytest.fail(f"{path} is missing: run scripts/setup.sh --test (installs Testing/node/package.json)")
    return str(path)


def claude(home: Path, *args: str, cwd: Path) -> str:
    env = bridge_env(HOME=str(home), CLAUDE_CONFIG_DIR=str(home / "claude-config"), DISABLE_AUTOUPDATER="1")
    env.pop("ANTHROPIC_API_KEY", None)
    done = subprocess.run(
        [node_tool("claude"), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=180
    )
    assert done.returncode == 0, done.stderr  # 0 even when a server fails: the text decides
    return done.stdout


def server_line(listing: str, name: str) -> str:
    lines = [line for line in listing.splitlines() if line.startswith(f"{name}:")]
    assert len(lines) == 1, listing
    return lines[0]


@pytest.mark.peers
@pytest.mark.parametrize("backend", ["headless", "webserver"])
def test_claude_code_reports_slicer_connected(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    args = ["--headless"]
    if backend == "webserver":
        peer: PeerProcess = request.getfixturevalue("webserver_peer")
        args = ["--webserver-url", peer.url]
    claude(tmp_path, "mcp", "add", "slicer", "--", SLICER_MCP, *args, cwd=project)
    assert CONNECTED in server_line(claude(tmp_path, "mcp", "list", cwd=project), "slicer")
    details = claude(tmp_path, "mcp", "get", "slicer", cwd=project)
    assert f"Status: {CONNECTED}" in details and f"Command: {SLICER_MCP}" in details


@pytest.mark.peers
def test_claude_code_sees_a_failing_bridge_as_failed(tmp_path: Path) -> None:
    """No Slicer, no --headless: slicer-mcp exits 2, and Claude Code must not call that Connected."""
    project = tmp_path / "project"
    project.mkdir()
    closed = f"http://127.0.0.1:{free_port()}"
    claude(tmp_path, "mcp", "add", "slicer", "--", SLICER_MCP, "--webserver-url", closed, cwd=project)
    line = server_line(claude(tmp_path, "mcp", "list", cwd=project), "slicer")
    assert CONNECTED not in line and "Failed" in line, line


@pytest.mark.peers
def test_claude_code_project_mcp_json(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / ".mcp.json").write_text(
        json.dumps({"mcpServers": {"slicer": {"command": SLICER_MCP, "args": ["--headless"]}}})
    )
    config_dir = tmp_path / "claude-config"
    config_dir.mkdir()
    (config_dir / "settings.json").write_text(json.dumps({"enableAllProjectMcpServers": True}))
    assert CONNECTED in server_line(claude(tmp_path, "mcp", "list", cwd=project), "slicer")
    details = claude(tmp_path, "mcp", "get", "slicer", cwd=project)
    assert "Project config" in details and f"Status: {CONNECTED}" in details


def inspector(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The MCP Inspector CLI (2.x, on the Node 22 the test tools bring: it needs >= 22.19)."""
    env = dict(env or bridge_env())
    env["PATH"] = f"{TOOLS_BIN}:{env.get('PATH', '')}"  # its `node` first
    return subprocess.run(
        [node_tool("mcp-inspector"), "--cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )


def inspected(done: subprocess.CompletedProcess[str]) -> dict:
    assert done.returncode == 0, (done.stdout + done.stderr)[-2000:]
    return json.loads(done.stdout)


@pytest.mark.peers
def test_mcp_inspector_cli_over_stdio(tmp_path: Path) -> None:
    """The MCP Inspector CLI launching `slicer-mcp serve --headless`, as its users configure it."""
    server = [SLICER_MCP, "serve", "--headless"]
    env = bridge_env(HOME=str(tmp_path), SLICER_MCP_HOME=str(tmp_path / "slicer-mcp"))
    tools = {
        t["name"]: t
        for t in inspected(inspector(*server, "--method", "tools/list", cwd=tmp_path, env=env))["tools"]
    }
    assert tools["list_scene_nodes"]["annotations"]["readOnlyHint"] is True
    assert tools["clear_scene"]["annotations"]["destructiveHint"] is True
    result = inspected(
        inspector(
            *server,
            "--method",
            "tools/call",
            "--tool-name",
            "list_scene_nodes",
            "--tool-arg",
            "limit=5",
            cwd=tmp_path,
            env=env,
        )
    )
    assert result["isError"] is False
    assert result["structuredContent"]["limit"] == 5 and result["structuredContent"]["total"] == 0


@pytest.mark.peers
def test_mcp_inspector_cli_over_http_with_the_token(tmp_path: Path) -> None:
    """`slicer-mcp serve --transport http` started as a user does; the Inspector sends the bearer token."""
    import re

    home = tmp_path / "slicer-mcp"
    env = bridge_env(HOME=str(tmp_path), SLICER_MCP_HOME=str(home))
    log = tmp_path / "serve.log"
    with open(log, "w") as err:
        server = subprocess.Popen(
            [SLICER_MCP, "serve", "--headless", "--demo", "--transport", "http", "--port", "0"],
            stdout=subprocess.DEVNULL,
            stderr=err,
            env=env,
        )
    try:
        import time

        deadline = time.monotonic() + 120
        url = None
        while url is None and time.monotonic() < deadline and server.poll() is None:
            found = re.search(r"serving MCP at (\S+)", log.read_text())
            url = found.group(1) if found else None
            time.sleep(0.1)
        assert url, log.read_text()[-2000:]
        token = (home / "token").read_text().strip()
        header = f"Authorization: Bearer {token}"
        listed = inspected(
            inspector(url, "--transport", "http", "--header", header, "--method", "tools/list", cwd=tmp_path)
        )
        assert "capture_screenshot" in {t["name"] for t in listed["tools"]}
        called = inspected(
            inspector(
                url,
                "--transport",
                "http",
                "--header",
                header,
                "--method",
                "tools/call",
                "--tool-name",
                "list_scene_nodes",
                "--tool-arg",
                "class_name=vtkMRMLScalarVolumeNode",
                cwd=tmp_path,
            )
        )
        assert [n["name"] for n in called["structuredContent"]["nodes"]] == ["DemoHead"]
        refused = inspector(url, "--transport", "http", "--method", "tools/list", cwd=tmp_path)
        # without the token the server answers 401 with WWW-Authenticate: Bearer; the Inspector then
        # wants an interactive OAuth login it cannot do here, and says so
        assert refused.returncode != 0 and "auth_required" in refused.stdout + refused.stderr
    finally:
        server.terminate()
        server.wait(30)
