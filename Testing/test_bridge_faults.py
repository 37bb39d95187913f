"""The bridge's connection policy, seen by a real MCP client over stdio.

The WebServer being down, exec being off and handler errors (500) come from the real test
WebServer or a closed port. Dropped connections, answers slower than the timeout and
bodies that aren't JSON can't be produced on demand by a real WebServer, so those tests
use `FaultyWebServer` (a fake) - and say so. Retries are counted as connections it accepted.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

from fixtures.bridge import FaultyWebServer, PeerProcess, bridge_client, bridge_env, run_bridge
from fixtures.core import free_port
from fixtures.scene import make_labelmap

# what Slicer's /slicer/mrml/properties sends for one volume (shape as parsed from PrintSelf)
CANNED_PROPERTIES = json.dumps(
    {
        "vtkMRMLScalarVolumeNode1": {
            "ID": "vtkMRMLScalarVolumeNode1",
            "ClassName": "vtkMRMLScalarVolumeNode",
            "Name": "MRHead",
            "HideFromEditors": False,
            "Spacing": [1.0, 1.0, 1.3],
            "Origin": [86.6, -133.9, 116.8],
            "ImageData": {"Dimensions": [256, 256, 130]},
        }
    }
).encode()


def error_of(result: Any) -> dict[str, Any]:
    assert result.is_error, result.structured_content
    return json.loads(result.content[0].text)["error"]


# the other answers a listing asks for: exact names, application classes (none here), exec off,
# and the NRRD header of /slicer/volume (geometry at full precision; the voxels are never read)
CANNED_ROUTES = {
    "/slicer/mrml/ids?class=vtkMRMLNode": (b"200 OK", b'["vtkMRMLScalarVolumeNode1"]'),
    "/slicer/mrml/names?class=vtkMRMLNode": (b"200 OK", b'["MRHead"]'),
    "/slicer/mrml/ids": (b"200 OK", b"[]"),
    "/slicer/exec": (
        b"500 Internal Server Error",
        b'{"success": false, "message": "Server error: unknown command"}',
    ),
    "/slicer/volume": (
        b"200 OK",
        b"NRRD0004\ntype: short\ndimension: 3\nspace: left-posterior-superior\nsizes: 256 256 130\n"
        b"space directions: (-1.0,-0.0,0.0) (-0.0,-1.0,0.0) (0.0,0.0,1.2999954223632812)\n"
        b"kinds: domain domain domain\nendian: little\nencoding: raw\n"
        b"space origin: (-86.64489746093749,133.92860412597656,116.78569793701172)\n\n" + b"\0" * 64,
    ),
}


def call_once(args: list[str], tool: str, arguments: dict[str, Any], **env: str) -> Any:
    async def main() -> Any:
        async with bridge_client(args, bridge_env(**env)) as client:
            return await client.call_tool(tool, arguments)

    return asyncio.run(main())


def test_no_slicer_found_exits_2_with_instructions() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    done = run_bridge(["--webserver-url", url])
    assert done.returncode == 2
    assert done.stdout == "", "stdout belongs to MCP"
    for hint in (
        "SlicerMCP module",
        "Web Server module",
        "Start server",
        "Slicer API exec",
        "--headless",
        url,
    ):
        assert hint in done.stderr, done.stderr


def test_webserver_down_read_only_call_retried_then_reported() -> None:
    """A closed port: the read-only call is tried 4 times (after 1, 2, 4 s), then explained."""
    url = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    result = call_once(["--backend", "webserver", "--webserver-url", url], "list_scene_nodes", {})
    elapsed = time.monotonic() - started
    error = error_of(result)
    assert error["code"] == "SLICER_CONNECTION_ERROR"
    assert "Start server" in error["message"] and url in error["message"]
    assert elapsed >= 7.0, "three retries after 1, 2 and 4 s"


def test_dropped_mid_call_read_only_is_retried_and_counted() -> None:
    """Fake (drops every connection after reading the request): 1 try + 3 retries."""
    with FaultyWebServer("drop") as fake:
        result = call_once(
            ["--backend", "webserver", "--webserver-url", fake.url], "get_node", {"node_id": "x"}
        )
    assert error_of(result)["code"] == "SLICER_CONNECTION_ERROR"
    assert fake.connections == 4
    assert all(p.startswith("/slicer/mrml/properties") for p in fake.paths)


def test_dropped_mid_call_state_change_is_not_retried() -> None:
    """Fake (drops): set_layout changes the scene, so it is sent once and the error says to check."""
    with FaultyWebServer("drop") as fake:
        result = call_once(
            ["--backend", "webserver", "--webserver-url", fake.url], "set_layout", {"layout": "FourUp"}
        )
    error = error_of(result)
    assert error["code"] == "SLICER_CONNECTION_ERROR"
    assert "may or may not" in error["message"]
    assert fake.connections == 1 and fake.paths[0].startswith("/slicer/gui?viewersLayout=FourUp")


def test_dropped_twice_then_answered_succeeds_after_two_retries() -> None:
    """Fake (drops the first two connections, then answers like Slicer)."""
    with FaultyWebServer("drop_then_ok", drops=2, ok_body=CANNED_PROPERTIES, routes=CANNED_ROUTES) as fake:
        result = call_once(["--backend", "webserver", "--webserver-url", fake.url], "list_scene_nodes", {})
    assert not result.is_error, result.content[0].text
    volume = result.structured_content["nodes"][0]["volume"]
    assert volume["dimensions"] == [256, 256, 130]
    assert volume["spacing"] == [1.0, 1.0, 1.2999954223632812], "exact, from the NRRD header"
    assert fake.paths[:3] == ["/slicer/mrml/properties?class=vtkMRMLNode"] * 3, "two retries, then the answer"


def test_slow_beyond_timeout_is_a_timeout_without_retry(tmp_path: Path) -> None:
    """Fake (answers after 60 s) against a 1 s scene timeout from the config file."""
    config = tmp_path / "config.yaml"
    config.write_text("timeouts:\n  scene_s: 1\n")
    with FaultyWebServer("slow", delay_s=60.0, ok_body=CANNED_PROPERTIES) as fake:
        started = time.monotonic()
        result = call_once(
            ["--config", str(config), "--backend", "webserver", "--webserver-url", fake.url],
            "list_scene_nodes",
            {},
        )
        elapsed = time.monotonic() - started
    error = error_of(result)
    assert error["code"] == "SLICER_TIMEOUT"
    assert error["details"]["timeout_s"] == 1
    assert fake.connections == 1, "timeouts are not retried"
    # not a speed limit: a call that waited for the answer would have taken the fake's 60 s
    assert elapsed < 60.0


def test_bad_json_is_reported_as_a_webserver_error() -> None:
    """Fake (200 with an HTML body): another program on the port."""
    with FaultyWebServer("badjson") as fake:
        result = call_once(["--backend", "webserver", "--webserver-url", fake.url], "list_scene_nodes", {})
    error = error_of(result)
    assert error["code"] == "SLICER_WEBSERVER_ERROR"
    assert "not JSON" in error["message"] and "--webserver-url" in error["message"]
    assert fake.connections == 1


def test_exec_disabled_says_which_setting_to_turn_on(
    webserver_peer_no_exec: PeerProcess, tmp_path: Path
) -> None:
    labels = make_labelmap(tmp_path)
    args = ["--backend", "webserver", "--webserver-url", webserver_peer_no_exec.url]

    async def main() -> None:
        async with bridge_client(args, bridge_env(SLICER_MCP_ALLOW_EXECUTE_PYTHON="true")) as client:
            loaded = await client.call_tool("load_volume", {"path": str(labels), "labelmap": True})
            assert not loaded.is_error, loaded.content[0].text
            node_id = loaded.structured_content["nodes"][0]["id"]
            for tool, arguments in (
                ("measure_volume", {"node_id": node_id}),
                ("execute_python", {"code": "1"}),
            ):
                error = error_of(await client.call_tool(tool, arguments))
                assert error["code"] == "OPERATION_DISABLED"
                assert "'Slicer API exec'" in error["message"] and "Web Server module" in error["message"]
                assert error["details"]["setting"] == "Slicer API exec"
            await client.call_tool("clear_scene", {})

    asyncio.run(main())


def test_handler_error_500_becomes_a_coded_error(webserver_peer: PeerProcess, tmp_path: Path) -> None:
    broken = tmp_path / "broken.nrrd"
    broken.write_bytes(b"NRRD0004\ntype: short\nsizes: 9 9\n\n")
    result = call_once(
        ["--backend", "webserver", "--webserver-url", webserver_peer.url],
        "load_volume",
        {"path": str(broken)},
    )
    error = error_of(result)
    assert error["code"] == "LOAD_FAILED"
    assert "Failed to load node from file" in error["message"]


def test_a_dead_in_slicer_server_is_named_in_the_bridge_error(tmp_path: Path) -> None:
    """The endpoint file names a live process (this one) whose server port is closed."""
    from SlicerMCPLib.core.config import ServerSettings
    from SlicerMCPLib.serving.auth import load_or_create_token, token_path
    from SlicerMCPLib.serving.endpoint import write_endpoint

    path = token_path(ServerSettings())
    load_or_create_token(path)
    url = f"http://127.0.0.1:{free_port()}/mcp"
    write_endpoint(url, 1, path)
    done = run_bridge([])
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(f"slicer-mcp: the SlicerMCP server in Slicer at {url}") and "TaskGroup" not in last
