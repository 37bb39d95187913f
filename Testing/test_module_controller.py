"""The in-Slicer server controller: clean start/stop/restart, endpoint file, token, port in use,
the console API. Runs the module's own code with a PySide6 main loop and a slicer-core scene."""

from __future__ import annotations

import json
import os
import socket
import stat
import threading

import httpx
import pytest

from fixtures.bridge import bridge_client, bridge_env
from fixtures.core import free_port
from fixtures.qt import pump_while, run_client_while_pumping
from fixtures.transport import INITIALIZE, http_client
from SlicerMCPLib.core.errors import ErrorCode, SlicerMCPError
from SlicerMCPLib.core.localhost import user_config_dir
from SlicerMCPLib.hosts.inslicer import SESSION_TOKEN_FILE, STDIO_COMMAND
from SlicerMCPLib.serving.endpoint import endpoint_path, read_endpoint, remove_endpoint, write_endpoint

ACCEPT = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def _port_is_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _server_threads() -> set[str]:
    return {t.name for t in threading.enumerate() if t.name.startswith("slicer-mcp")}


def test_start_stop_restart_leave_no_thread_port_or_file(qt_app, qt_controller) -> None:
    before = _server_threads()
    port = free_port()
    first = qt_controller.start(port=port)
    assert first.running and first.port == port and first.url == f"http://127.0.0.1:{port}/mcp"
    assert "slicer-mcp-http" in _server_threads()
    assert endpoint_path().exists()

    second = qt_controller.restart()
    assert second.running and second.port == port
    assert qt_controller.status().running

    qt_controller.stop()
    assert _server_threads() == before
    assert _port_is_free(port)
    assert not endpoint_path().exists()
    assert not qt_controller.status().running
    qt_controller.stop()  # stopping twice is harmless

    again = qt_controller.start(port=port)  # the same port is usable at once
    assert again.running
    qt_controller.stop()
    assert _server_threads() == before


def test_endpoint_file_lifecycle(qt_app, qt_controller) -> None:
    status = qt_controller.start(port=0)
    path = endpoint_path()
    assert path.parent == user_config_dir()
    assert _mode(path) == 0o600
    data = json.loads(path.read_text())
    assert set(data) == {"url", "port", "pid", "token_file", "version", "started_at"}
    assert data["url"] == status.url and data["port"] == status.port and data["pid"] == os.getpid()
    token = open(status.token_file).read().strip()
    assert token not in path.read_text()  # where the token is, never the token itself
    endpoint = read_endpoint()
    assert endpoint is not None and endpoint.read_token() == token
    qt_controller.stop()
    assert not path.exists()
    assert read_endpoint() is None


def test_stale_or_foreign_endpoint_files() -> None:
    # a pid that cannot exist: the writer is gone, readers must ignore the file
    write_endpoint("http://127.0.0.1:1/mcp", 1, "/nonexistent/token", pid=2**22 + 12345)
    assert endpoint_path().exists()
    assert read_endpoint() is None
    # another live process's file is not ours to remove
    write_endpoint("http://127.0.0.1:1/mcp", 1, "/nonexistent/token", pid=os.getppid())
    assert read_endpoint() is not None
    assert remove_endpoint() is False and endpoint_path().exists()
    assert remove_endpoint(only_own=False) is True
    endpoint_path().write_text("{not json")
    assert read_endpoint() is None
    # a live writer that points somewhere off this machine is not followed (token would leave it)
    write_endpoint("http://192.0.2.10:2026/mcp", 2026, "/nonexistent/token", pid=os.getppid())
    assert read_endpoint() is None


def test_default_token_file_is_private_and_enforced(qt_app, qt_controller) -> None:
    status = qt_controller.start(port=0)
    assert _mode(status.token_file) == 0o600
    assert _mode(user_config_dir()) == 0o700
    token = open(status.token_file).read().strip()
    good = httpx.post(
        status.url, json=INITIALIZE, headers={**ACCEPT, "Authorization": f"Bearer {token}"}, timeout=10
    )
    assert good.status_code == 200
    bad = httpx.post(
        status.url, json=INITIALIZE, headers={**ACCEPT, "Authorization": "Bearer nope"}, timeout=10
    )
    assert bad.status_code == 401
    foreign = httpx.post(
        status.url,
        json=INITIALIZE,
        headers={**ACCEPT, "Authorization": f"Bearer {token}", "Origin": "https://evil.example"},
        timeout=10,
    )
    assert foreign.status_code == 403


def test_explicit_token_lives_in_a_private_session_file_removed_on_stop(qt_app, qt_controller) -> None:
    token = "console-given-token-0123456789"
    status = qt_controller.start(port=0, token=token)
    session_file = user_config_dir() / SESSION_TOKEN_FILE
    assert status.token_file == str(session_file)
    assert _mode(session_file) == 0o600 and session_file.read_text().strip() == token
    assert read_endpoint().token_file == str(session_file)

    async def call():
        async with http_client(status.url, token) as client:
            return await client.call_tool("list_scene_nodes", {"limit": 1})

    assert not run_client_while_pumping(qt_app, call).is_error
    assert qt_controller.http_command() == (
        f'claude mcp add --transport http slicer {status.url} --header "Authorization: Bearer {token}"'
    )
    qt_controller.stop()
    assert not session_file.exists()
    with pytest.raises(SlicerMCPError):
        qt_controller.http_command()
    with pytest.raises(SlicerMCPError) as short:
        qt_controller.start(port=0, token="short")
    assert short.value.code == ErrorCode.CONFIG_ERROR


def test_port_in_use_says_so_and_leaves_nothing_behind(qt_app, qt_controller) -> None:
    before = _server_threads()
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen(1)
        port = blocker.getsockname()[1]
        with pytest.raises(SlicerMCPError) as info:
            qt_controller.start(port=port)
    err = info.value
    assert err.code == ErrorCode.CONFIG_ERROR
    assert f"port {port}" in err.message and "already in use" in err.message
    assert f"e.g. {port + 1}" in err.message and "SlicerMCP panel" in err.message  # a suggestion
    assert not qt_controller.status().running
    assert not endpoint_path().exists()
    assert _server_threads() == before
    assert qt_controller.start(port=0).running  # the next attempt works


def test_a_port_out_of_range_is_a_config_error_before_and_after_a_console_call(qt_app, qt_controller) -> None:
    for _ in range(2):  # first with no scene side yet, then with the one the console call built
        with pytest.raises(SlicerMCPError) as info:
            qt_controller.start(port=70000)
        assert info.value.code == ErrorCode.CONFIG_ERROR and "server.port" in info.value.message
        assert not qt_controller.status().running
        qt_controller.call_tool("list_scene_nodes", {"limit": 1})
    assert qt_controller.start(port=0).running


def test_console_call_tool_without_http_and_after_scene_close(qt_app, qt_controller) -> None:
    listed = qt_controller.call_tool("list_scene_nodes", {"limit": 3})
    assert listed["limit"] == 3 and not qt_controller.status().running
    with pytest.raises(SlicerMCPError) as info:
        qt_controller.call_tool("get_node", {"node_id": "vtkMRMLScalarVolumeNode999"})
    assert info.value.code == ErrorCode.INVALID_NODE_ID
    with pytest.raises(SlicerMCPError) as unknown:
        qt_controller.call_tool("no_such_tool", {})
    assert unknown.value.code == ErrorCode.UNKNOWN_TOOL

    qt_controller.start(port=0)
    scene = qt_controller.services.backend.scene
    scene.Clear(0)  # what File > Close Scene does
    after = qt_controller.call_tool("list_scene_nodes", {})
    assert all(n["class_name"] != "vtkMRMLScalarVolumeNode" for n in after["nodes"])
    assert qt_controller.status().calls_served >= 4


def test_allow_toggles_apply_to_the_running_server(qt_app, qt_controller) -> None:
    qt_controller.start(port=0)
    with pytest.raises(SlicerMCPError) as off:
        qt_controller.call_tool("execute_python", {"code": "1 + 1"})
    assert off.value.code == ErrorCode.OPERATION_DISABLED
    qt_controller.set_allowed("execute_python", True)
    assert qt_controller.status().allow["execute_python"] is True
    result = qt_controller.call_tool("execute_python", {"code": "1 + 1"})
    assert "2" in json.dumps(result)
    restarted = qt_controller.restart()  # the toggle survives a restart
    assert restarted.allow["execute_python"] is True
    with pytest.raises(SlicerMCPError):
        qt_controller.set_allowed("format_disk", True)


def test_claude_commands(qt_app, qt_controller) -> None:
    assert qt_controller.stdio_command() == STDIO_COMMAND == "claude mcp add slicer -- slicer-mcp"
    status = qt_controller.start(port=0)
    command = qt_controller.http_command()
    assert command.startswith(f"claude mcp add --transport http slicer {status.url} --header ")
    assert command.endswith(f'"Authorization: Bearer {open(status.token_file).read().strip()}"')


def test_stdio_bridge_finds_the_module_server_through_the_endpoint_file(qt_app, qt_controller) -> None:
    """`claude mcp add slicer -- slicer-mcp`: the bridge reads endpoint.json and proxies to this server."""
    qt_controller.start(port=0)
    total = qt_controller.call_tool("list_scene_nodes", {})["total"]

    async def over_stdio():
        async with bridge_client(
            ["--backend", "proxy"], env=bridge_env(SLICER_MCP_HOME=str(user_config_dir()))
        ) as c:
            return await c.call_tool("list_scene_nodes", {})

    result = run_client_while_pumping(qt_app, over_stdio)
    assert not result.is_error, result.content
    assert result.structured_content["total"] == total
    assert qt_controller.status().calls_served >= 2  # the bridge's call was served here


def test_status_counts_connected_clients(qt_app, qt_controller) -> None:
    status = qt_controller.start(port=0)
    token = open(status.token_file).read().strip()
    assert qt_controller.status().clients == 0

    async def two_clients():
        async with http_client(status.url, token) as a, http_client(status.url, token) as b:
            await a.call_tool("list_scene_nodes", {"limit": 1})
            await b.call_tool("list_scene_nodes", {"limit": 1})
            return qt_controller.status().clients

    assert run_client_while_pumping(qt_app, two_clients) >= 2
    # both clients closed their connections: the count drops back (uvicorn notices within a moment)
    pump_while(qt_app, lambda: qt_controller.status().clients > 0, 15)


def test_the_module_serves_the_mini_ris_worklist_mpps_and_api(qt_app, qt_controller) -> None:
    """The module starts the RIS DICOM services and REST API off the main thread, and stops them."""
    from fixtures.ris import mwl_query, worklist_query
    from SlicerMCPLib.dicom.status import Status

    status = qt_controller.start(port=0)
    ris = qt_controller.start_ris(mwl_port=0, api_port=0)
    assert ris.running and ris.mwl_host == "127.0.0.1" and ris.api_url
    statuses, found = worklist_query(ris.mwl_port, mwl_query(PatientName="*"))
    assert statuses[-1] == Status.SUCCESS and found, "the seeded worklist answers over DICOM"
    token = open(status.token_file).read().strip()
    api = httpx.get(ris.api_url, headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert api.status_code == 200
    assert httpx.get(ris.api_url, timeout=10).status_code == 401
    # the MCP tools see the same RIS
    listed = qt_controller.call_tool("list_worklist", {})
    assert listed
    assert qt_controller.start_ris(mwl_port=0).mwl_port == ris.mwl_port  # idempotent
    qt_controller.stop_ris()
    assert not qt_controller.ris_status().running
    with socket.socket() as probe:  # nothing listens any more (the port may sit in TIME_WAIT)
        assert probe.connect_ex(("127.0.0.1", ris.mwl_port)) != 0
    qt_controller.start_ris(mwl_port=0, api=False)
    qt_controller.stop()  # stopping the server stops the RIS services too
    assert not qt_controller.ris_status().running
