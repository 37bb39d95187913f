"""The catalog over real streamable HTTP: token and Origin enforcement, concurrency, clean stop."""

from __future__ import annotations

import asyncio
import http.client
import json
import logging
import socket

import httpx
import pytest

from fixtures.transport import INITIALIZE, RunningHttp, http_client
from SlicerMCPLib.core.config import ServerSettings
from SlicerMCPLib.core.errors import ErrorCode, SlicerMCPError
from SlicerMCPLib.core.http_server import HttpServer
from SlicerMCPLib.serving.auth import load_or_create_token, token_path
from SlicerMCPLib.serving.http_transport import mcp_http_server

ACCEPT = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


def test_sdk_client_lists_and_calls_tools(http_server: RunningHttp) -> None:
    async def main() -> None:
        async with http_client(http_server.url, http_server.token) as client:
            names = {t.name for t in (await client.list_tools()).tools}
            assert {"list_scene_nodes", "capture_screenshot", "measure_volume", "execute_python"} <= names
            result = await client.call_tool("list_scene_nodes", {"limit": 5})
            assert not result.is_error
            assert result.structured_content["limit"] == 5
            bad = await client.call_tool("get_node", {"node_id": "vtkMRMLNoSuchNode42"})
            assert bad.is_error
            assert json.loads(bad.content[0].text)["error"]["code"] == "INVALID_NODE_ID"

    asyncio.run(main())


@pytest.mark.parametrize("token", [None, "wrong-token-wrong-token-wrong-token"])
def test_missing_or_wrong_token_is_refused(http_server: RunningHttp, token: str | None) -> None:
    headers = dict(ACCEPT)
    if token:
        headers["Authorization"] = f"Bearer {token}"
    r = httpx.post(http_server.url, json=INITIALIZE, headers=headers, timeout=10)
    assert r.status_code == 401
    assert r.headers["www-authenticate"].startswith("Bearer")
    assert "token" in r.json()["hint"]


def test_sdk_client_without_token_fails(http_server: RunningHttp, mcp_server) -> None:
    async def main() -> None:
        async with http_client(http_server.url, None) as client:
            await client.call_tool("list_scene_nodes", {})

    before = mcp_server.services.call_log.calls_served
    with pytest.raises(BaseException) as info:  # the SDK surfaces the 401 as an MCPError (in a group)
        asyncio.run(main())
    assert "error response" in repr(info.value)
    assert mcp_server.services.call_log.calls_served == before  # nothing reached the catalog


def test_foreign_origin_is_refused_even_with_token(http_server: RunningHttp) -> None:
    headers = {**ACCEPT, "Authorization": f"Bearer {http_server.token}", "Origin": "https://evil.example"}
    r = httpx.post(http_server.url, json=INITIALIZE, headers=headers, timeout=10)
    assert r.status_code == 403
    ok = {**ACCEPT, "Authorization": f"Bearer {http_server.token}", "Origin": "http://localhost:1234"}
    assert httpx.post(http_server.url, json=INITIALIZE, headers=ok, timeout=10).status_code == 200


def test_foreign_host_header_is_refused(http_server: RunningHttp) -> None:
    """DNS rebinding: a page on attacker.example resolving to 127.0.0.1 sends its own Host."""
    headers = {**ACCEPT, "Authorization": f"Bearer {http_server.token}", "Host": "attacker.example"}
    r = httpx.post(http_server.url, json=INITIALIZE, headers=headers, timeout=10)
    assert r.status_code in (403, 421)


def test_fifty_concurrent_calls_all_complete(http_server: RunningHttp) -> None:
    """Scene calls from 50 concurrent requests all pass the gateway (no deadlock, no loss)."""

    async def main() -> list:
        async with http_client(http_server.url, http_server.token) as client:
            calls = []
            for i in range(50):
                if i % 3 == 0:
                    calls.append(client.call_tool("list_scene_nodes", {"limit": 10}))
                elif i % 3 == 1:
                    calls.append(client.read_resource("slicer://status"))
                else:
                    calls.append(client.call_tool("get_node", {"node_id": f"vtkMRMLMissing{i}"}))
            return await asyncio.wait_for(asyncio.gather(*calls), timeout=120)

    results = asyncio.run(main())
    assert len(results) == 50
    for i, r in enumerate(results):
        if i % 3 == 0:
            assert not r.is_error
        elif i % 3 == 2:
            assert json.loads(r.content[0].text)["error"]["code"] == "INVALID_NODE_ID"


def test_port_in_use_gives_a_clear_error(mcp_server) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        with pytest.raises(SlicerMCPError) as info:
            mcp_http_server(mcp_server, ServerSettings(port=port), "x" * 32).start()
    assert info.value.code == ErrorCode.CONFIG_ERROR
    assert "already in use" in info.value.message and "--port" in info.value.message


def test_stop_releases_the_port(mcp_server) -> None:
    server = mcp_http_server(mcp_server, ServerSettings(port=0), "y" * 32).start()
    port = server.port
    server.stop()
    assert not server.running
    again = mcp_http_server(mcp_server, ServerSettings(port=port), "y" * 32).start()
    again.stop()


def test_child_processes_do_not_inherit_the_listening_socket(mcp_server) -> None:
    """Programs started while serving (Slicer's storescp via QProcess, os.system in execute_python) keep
    every inheritable descriptor; holding the listening socket they would keep the port after stop()."""
    import subprocess
    import sys

    server = mcp_http_server(mcp_server, ServerSettings(port=0), "z" * 32).start()
    port = server.port
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], close_fds=False)
    try:
        server.stop()
        again = mcp_http_server(mcp_server, ServerSettings(port=port), "z" * 32).start()
        again.stop()
    finally:
        child.kill()
        child.wait()


def test_websocket_upgrade_is_refused_before_the_app(http_server: RunningHttp) -> None:
    """Only HTTP requests with the token reach the MCP app; a websocket never does."""
    import base64
    import os

    key = base64.b64encode(os.urandom(16)).decode()
    host, port = "127.0.0.1", http_server.server.port
    with socket.create_connection((host, port), timeout=10) as s:
        s.sendall(
            (
                f"GET /mcp HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                f"Authorization: Bearer {http_server.token}\r\n\r\n"
            ).encode()
        )
        reply = s.recv(4096).decode("latin-1")
    assert " 101 " not in reply.split("\r\n")[0]  # no switch to the websocket protocol


def _kept_alive_sockets(server: HttpServer, path: str, token: str) -> tuple[http.client.HTTPConnection, list]:
    """One request on a connection the client keeps open; returns it and the server's accepted sockets."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    conn.request("GET", path, headers={"Authorization": f"Bearer {token}"})
    conn.getresponse().read()
    return conn, server.connection_sockets()


@pytest.fixture(params=["asyncio", "uvloop"])
def event_loop_kind(request, monkeypatch) -> str:
    """Serve with asyncio's own loop (as inside Slicer) and with uvloop (picked where installed)."""
    if request.param == "uvloop":
        pytest.importorskip("uvloop")
    monkeypatch.setattr(HttpServer, "loop", request.param)
    return request.param


def test_accepted_connections_have_tcp_nodelay(event_loop_kind: str, mcp_server) -> None:
    """Without TCP_NODELAY a response written in two pieces waits for the client's delayed ACK
    (~40 ms on loopback) on every kept-alive call; asyncio sets it only for IPPROTO_TCP listeners."""
    server = mcp_http_server(mcp_server, ServerSettings(port=0), "n" * 32).start()
    try:
        _assert_nodelay(server, "/mcp", "n" * 32)
    finally:
        server.stop()


def _assert_nodelay(server, path: str, token: str) -> None:
    """One kept-alive request, then the server's side of that connection must have TCP_NODELAY."""
    conn = None
    try:
        conn, sockets = _kept_alive_sockets(server, path, token)
        assert len(sockets) == 1
        assert sockets[0].getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    finally:
        if conn is not None:
            conn.close()


def test_ris_api_connections_have_tcp_nodelay(event_loop_kind: str, tmp_path) -> None:
    from SlicerMCPLib.core.config import load_config
    from SlicerMCPLib.ris.api import serve_api
    from SlicerMCPLib.ris.service import RisService

    block = {"sqlite_path": str(tmp_path / "ris.sqlite"), "mwl_port": 0, "api_port": 0}
    config = load_config(env={}, overrides={"mini_ris": block})
    service = RisService(config)
    server = serve_api(service, config, "k" * 32, 0)
    try:
        _assert_nodelay(server, "/ris/api/worklist", "k" * 32)
    finally:
        server.stop()
        service.close()


def test_allow_remote_answers_the_machines_own_name_and_warns_about_clear_text(
    mcp_server, caplog: pytest.LogCaptureFixture
) -> None:
    """With allow_remote a client elsewhere sends this machine's name as Host: answered (421 before),
    while a foreign name is still refused; the log says the token then travels unencrypted."""
    settings = ServerSettings(host="0.0.0.0", allow_remote=True, port=0)
    token = load_or_create_token(token_path(settings))
    with caplog.at_level(logging.WARNING, logger="SlicerMCPLib.core.http_server"):
        server = mcp_http_server(mcp_server, settings, token).start()
    try:
        url = f"http://127.0.0.1:{server.port}/mcp"
        auth = {**ACCEPT, "Authorization": f"Bearer {token}"}
        own = httpx.post(
            url, json=INITIALIZE, headers={**auth, "Host": f"{socket.gethostname()}:{server.port}"}
        )
        assert own.status_code == 200, own.text
        foreign = httpx.post(
            url, json=INITIALIZE, headers={**auth, "Host": f"attacker.example:{server.port}"}
        )
        assert foreign.status_code in (403, 421)
    finally:
        server.stop()
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("clear text" in m and "token" in m for m in warned), warned
