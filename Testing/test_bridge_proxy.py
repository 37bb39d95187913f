"""Backend selection and the proxy's transparency: what the in-Slicer server sends arrives unchanged.

The "in-Slicer server" is the real catalog on the headless scene served over HTTP in this
process and announced through the endpoint file, as the SlicerMCP module does.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest
from mcp.server.mcpserver import Context

from fixtures.bridge import PeerProcess, ProxyTarget, bridge_client, run_bridge
from fixtures.core import free_port
from fixtures.transport import http_client
from SlicerMCPLib.core.errors import SlicerMCPError


def add_probe_tools(server) -> None:
    async def progress_probe(ctx: Context, steps: int = 3) -> str:
        """Reports `steps` progress notifications, then answers."""
        for i in range(steps):
            await ctx.report_progress(i + 1, steps, f"step {i + 1}")
        return "done"

    async def failing_probe(ctx: Context) -> str:
        """Always fails with a coded error."""
        raise SlicerMCPError("probe failure: do nothing", details={"probe": True})

    async def meta_probe(ctx: Context) -> str:
        """The request's `_meta` as the in-Slicer server received it (JSON)."""
        return json.dumps(dict(ctx.request_context.meta or {}), default=str)

    server.add_tool(progress_probe)
    server.add_tool(failing_probe)
    server.add_tool(meta_probe)


def test_progress_errors_and_images_pass_through_unchanged(
    proxy_endpoint: ProxyTarget, tmp_path: Path
) -> None:
    add_probe_tools(proxy_endpoint.server)
    from SlicerMCPLib.core.config import ServerSettings
    from SlicerMCPLib.serving.auth import load_or_create_token, token_path

    token = load_or_create_token(token_path(ServerSettings()))

    async def main() -> None:
        seen: list[tuple[float, float | None, str | None]] = []

        async def on_progress(progress: float, total: float | None, message: str | None) -> None:
            seen.append((progress, total, message))

        async with (
            bridge_client(["--backend", "proxy"]) as proxied,
            http_client(proxy_endpoint.url, token) as direct,
        ):
            result = await proxied.call_tool("progress_probe", {"steps": 4}, progress_callback=on_progress)
            assert not result.is_error and result.content[0].text == "done"
            assert seen == [(i, 4, f"step {i}") for i in range(1, 5)]

            via_proxy = await proxied.call_tool("failing_probe", {})
            straight = await direct.call_tool("failing_probe", {})
            assert via_proxy.is_error and straight.is_error
            assert via_proxy.content[0].text == straight.content[0].text
            assert json.loads(via_proxy.content[0].text)["error"]["details"] == {"probe": True}

            trace = {"org.example/trace": "abc-123"}
            got = json.loads((await proxied.call_tool("meta_probe", {}, meta=trace)).content[0].text)
            assert got["org.example/trace"] == "abc-123"  # the client's own _meta keys arrive

            shot_p = await proxied.call_tool("capture_screenshot", {"view_type": "3d", "size": 96})
            shot_d = await direct.call_tool("capture_screenshot", {"view_type": "3d", "size": 96})
            assert [c.type for c in shot_p.content] == [c.type for c in shot_d.content] == ["image", "text"]
            assert shot_p.structured_content == shot_d.structured_content
            assert shot_p.content[0].mime_type == "image/png" and len(shot_p.content[0].data) > 100

            tools_p = {t.name: t.model_dump() for t in (await proxied.list_tools()).tools}
            tools_d = {t.name: t.model_dump() for t in (await direct.list_tools()).tools}
            assert tools_p == tools_d
            templates = await proxied.list_resource_templates()
            assert [t.uri_template for t in templates.resource_templates] == ["slicer://node/{node_id}"]
            status = json.loads((await proxied.read_resource("slicer://status")).contents[0].text)
            assert status["backend"] == "headless"

    asyncio.run(main())


def tool_names(args: list[str]) -> set[str]:
    async def main() -> set[str]:
        async with bridge_client(args) as client:
            return {t.name for t in (await client.list_tools()).tools}

    return asyncio.run(main())


def backend_of(args: list[str]) -> str:
    async def main() -> str:
        async with bridge_client(args) as client:
            return json.loads((await client.read_resource("slicer://status")).contents[0].text)["backend"]

    return asyncio.run(main())


def test_selection_prefers_the_in_slicer_server(
    proxy_endpoint: ProxyTarget, webserver_peer: PeerProcess
) -> None:
    add_probe_tools(proxy_endpoint.server)
    names = tool_names(["--webserver-url", webserver_peer.url])
    assert "progress_probe" in names, "without a flag, a live endpoint file wins over the WebServer"
    # --headless means headless: neither the in-Slicer server nor the WebServer is used
    assert backend_of(["--headless", "--webserver-url", webserver_peer.url]) == "headless"


def test_selection_then_the_webserver(webserver_peer: PeerProcess) -> None:
    assert backend_of(["--webserver-url", webserver_peer.url]) == "webserver"


def test_stale_endpoint_file_is_ignored(proxy_endpoint: ProxyTarget) -> None:
    from SlicerMCPLib.core.config import ServerSettings
    from SlicerMCPLib.serving.auth import token_path
    from SlicerMCPLib.serving.endpoint import write_endpoint

    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    dead_pid = int(gone.stdout)
    write_endpoint(proxy_endpoint.url, 1, token_path(ServerSettings()), pid=dead_pid)
    closed = f"http://127.0.0.1:{free_port()}"
    done = run_bridge(["--webserver-url", closed])
    assert done.returncode == 2, "a dead process's endpoint file is not a Slicer to proxy to"
    assert "found no Slicer" in done.stderr


def test_forced_proxy_without_slicer_explains(tmp_path: Path) -> None:
    done = run_bridge(["--backend", "proxy"])
    assert done.returncode == 2
    assert "SlicerMCP module" in done.stderr


def test_the_proxy_ends_its_calls_when_the_client_hangs_up(proxy_endpoint: ProxyTarget) -> None:
    """stdin closes during a forwarded call that would run 600 s (issue 16 item 3): the proxy cancels
    it and exits at once (the SDK's stdio loop already cancelled async handlers at end of input; this
    keeps it so through serving/stdio.py, which also logs why)."""
    import threading

    from fixtures.bridge import bridge_env
    from fixtures.core import PROJECT_ROOT
    from fixtures.transport import hang_up_during_call

    released = threading.Event()

    async def slow_probe(ctx: Context) -> str:
        """Answers after 600 s (or when the test is over)."""
        for _ in range(600):
            if released.is_set():
                break
            await asyncio.sleep(1)
        return "late"

    proxy_endpoint.server.add_tool(slow_probe)
    try:
        command = [sys.executable, "-m", "slicer_mcp", "--backend", "proxy"]
        code, log = hang_up_during_call(command, bridge_env(), "slow_probe", {}, cwd=PROJECT_ROOT)
    finally:
        released.set()
    assert code == 0, f"exit code {code} (None: still running 60 s after stdin closed)\n{log[-2000:]}"
    assert "stdin closed" in log, log


@pytest.mark.timeout(240)
def test_the_webserver_bridge_stops_soon_after_the_client_hangs_up(tmp_path: Path) -> None:
    """The WebServer backend's calls block a worker thread (HTTP to Slicer), which asyncio cannot
    cancel: before, a client hanging up during `execute_python` (a 600 s sleep in the WebServer) left
    the bridge running until that request's timeout (timeouts.python_s, 120 s); now it exits within
    limits.python_stop_grace_s of the end of stdin. The WebServer is the stand-in in webserver_peer/,
    with its own process here (the sleep keeps it busy)."""
    import yaml

    from fixtures.bridge import bridge_env, start_peer, stop_peer
    from fixtures.core import PROJECT_ROOT
    from fixtures.transport import hang_up_during_call

    config = tmp_path / "config.yaml"
    config.write_text(
        yaml.safe_dump({"allow": {"execute_python": True}, "limits": {"python_stop_grace_s": 1.0}}),
        encoding="utf-8",
    )
    peer = start_peer(tmp_path, enable_exec=True)
    try:
        command = [sys.executable, "-m", "slicer_mcp", "--config", str(config)]
        command += ["--backend", "webserver", "--webserver-url", peer.url]
        code, log = hang_up_during_call(
            command,
            bridge_env(),
            "execute_python",
            {"code": "import time\ntime.sleep(600)"},
            cwd=PROJECT_ROOT,
        )
    finally:
        stop_peer(peer)
    assert code is not None, f"still running 60 s after stdin closed\n{log[-2000:]}"
    assert "stdin closed" in log and "exiting now" in log
