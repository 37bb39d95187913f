"""`slicer-mcp serve --headless` over stdio with the SDK's stdio client: a real subprocess."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import sys
from pathlib import Path

from mcp import Client, StdioServerParameters

from fixtures.transport import INITIALIZE


def stdio_params(*args: str, env: dict[str, str] | None = None) -> StdioServerParameters:
    full_env = {**os.environ, **(env or {})}
    return StdioServerParameters(command=sys.executable, args=["-m", "slicer_mcp", *args], env=full_env)


def test_headless_stdio_demo_scene_end_to_end(tmp_path: Path) -> None:
    async def main() -> None:
        async with Client(stdio_params("serve", "--headless", "--demo"), read_timeout_seconds=120) as client:
            tools = {t.name: t for t in (await client.list_tools()).tools}
            assert tools["clear_scene"].annotations.destructive_hint is True
            assert tools["list_scene_nodes"].annotations.read_only_hint is True
            listing = await client.call_tool("list_scene_nodes", {"class_name": "vtkMRMLScalarVolumeNode"})
            assert not listing.is_error, listing.content
            volumes = listing.structured_content["nodes"]
            assert volumes, "the demo scene has a volume"
            shot = await client.call_tool("capture_screenshot", {"view_type": "axial", "size": 128})
            assert not shot.is_error, shot.content
            image = next(c for c in shot.content if c.type == "image")
            png = base64.b64decode(image.data)
            assert png[:8] == b"\x89PNG\r\n\x1a\n"
            assert shot.structured_content["width"] == 128
            status = await client.read_resource("slicer://status")
            assert json.loads(status.contents[0].text)["backend"] == "headless"
            disabled = await client.call_tool("execute_python", {"code": "1+1"})
            assert json.loads(disabled.content[0].text)["error"]["code"] == "OPERATION_DISABLED"

    asyncio.run(main())


def test_execute_python_enabled_from_the_environment() -> None:
    async def main() -> None:
        env = {"SLICER_MCP_ALLOW_EXECUTE_PYTHON": "true"}
        async with Client(stdio_params("serve", "--headless", env=env), read_timeout_seconds=120) as client:
            r = await client.call_tool("execute_python", {"code": "x = 20\nprint('hi')\nx * 2 + 2"})
            assert not r.is_error, r.content
            assert r.structured_content["stdout"] == "hi\n"
            assert r.structured_content["result"] == "42"
            again = await client.call_tool("execute_python", {"code": "x"})
            assert again.structured_content["result"] == "20"  # namespace kept for this session

    asyncio.run(main())


def test_stdout_carries_only_protocol(tmp_path: Path) -> None:
    """Logs go to stderr: every line the server writes on stdout is a JSON-RPC message."""
    import subprocess

    messages = [
        INITIALIZE,
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {
            "jsonrpc": "2.0",
            "id": 2,
            "method": "tools/call",
            "params": {"name": "list_scene_nodes", "arguments": {}},
        },
        {
            "jsonrpc": "2.0",
            "id": 3,
            "method": "tools/call",
            "params": {"name": "get_node", "arguments": {"node_id": "nope"}},
        },
    ]
    # stderr to a file: a full stderr pipe would block the server
    with open(tmp_path / "stderr.txt", "w") as err_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", "slicer_mcp", "-v", "serve", "--headless"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=err_file,
            text=True,
        )
    try:
        assert proc.stdin and proc.stdout
        for m in messages:
            proc.stdin.write(json.dumps(m) + "\n")
        proc.stdin.flush()
        out_lines = []
        answered: set = set()
        while not {1, 2, 3} <= answered:  # read until every request is answered, then close stdin
            line = proc.stdout.readline()
            if not line:
                break
            out_lines.append(line)
            if line.strip():
                answered.add(json.loads(line).get("id"))
        proc.stdin.close()  # EOF ends the server
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:  # a failed assertion above must not leave the server running
            proc.kill()
            proc.wait()
    rest, stderr = proc.stdout.read(), (tmp_path / "stderr.txt").read_text()
    stdout = "".join(out_lines) + rest
    lines = [line for line in stdout.splitlines() if line.strip()]
    replies = [json.loads(line) for line in lines]  # fails on any stray print
    assert all(r.get("jsonrpc") == "2.0" for r in replies)
    assert {r.get("id") for r in replies} >= {1, 2, 3}
    assert "DEBUG" in stderr or "INFO" in stderr  # the logs went to stderr
    assert proc.returncode == 0, stderr[-2000:]


def test_status_says_where_each_setting_came_from_without_values(tmp_path: Path) -> None:
    """slicer://status lists each non-default setting with its origin (file, environment variable),
    never its value: a FHIR token from the file must not appear."""
    config = tmp_path / "slicer-mcp.yaml"
    config.write_text(
        "fhir_servers:\n  main:\n    url: https://fhir.example.org/r4\n    bearer_token: tok-6c1d2e\n"
        "timeouts:\n  python_s: 7\n"
    )
    env = {"SLICER_MCP__MINI_RIS__MWL_PORT": "11999"}

    async def main() -> dict:
        params = stdio_params("serve", "--headless", "--config", str(config), env=env)
        async with Client(params, read_timeout_seconds=120) as client:
            return json.loads((await client.read_resource("slicer://status")).contents[0].text)

    status = asyncio.run(main())
    settings = status["settings"]
    assert settings["fhir_servers.main.bearer_token"] == f"file {config}"
    assert settings["timeouts.python_s"] == f"file {config}"
    assert settings["mini_ris.mwl_port"] == "environment SLICER_MCP__MINI_RIS__MWL_PORT"
    assert "server.port" not in settings  # left at its default
    assert "tok-6c1d2e" not in json.dumps(status)


def test_unreadable_lines_get_a_json_rpc_error_and_the_server_goes_on(tmp_path: Path) -> None:
    """A line that is not JSON gets -32700 Parse error, JSON that is not a message -32600, both with id
    null (JSON-RPC 2.0 section 5); the SDK's transport dropped both silently (issue 15 item 12)."""
    import subprocess

    lines = [
        json.dumps(INITIALIZE),
        json.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"}),
        '{"jsonrpc": "2.0", "id": 5, "method": "tools/list"',  # cut short
        "\x00\x01 not json at all",
        json.dumps({"hello": "world"}),  # JSON, not JSON-RPC
        json.dumps({"jsonrpc": "2.0", "id": 9, "method": "ping"}),
    ]
    with open(tmp_path / "stderr.txt", "w") as err_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", "slicer_mcp", "serve", "--headless"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=err_file,
            text=True,
        )
    replies: list[dict] = []
    try:
        assert proc.stdin and proc.stdout
        proc.stdin.write("\n".join(lines) + "\n")
        proc.stdin.flush()
        while not any(r.get("id") == 9 for r in replies):
            line = proc.stdout.readline()
            if not line:
                break
            replies.append(json.loads(line))
        proc.stdin.close()
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    errors = [r["error"]["code"] for r in replies if "error" in r and r.get("id") is None]
    assert errors == [-32700, -32700, -32600], replies
    assert any(r.get("id") == 9 and "result" in r for r in replies), replies  # still serving
