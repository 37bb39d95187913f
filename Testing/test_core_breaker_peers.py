"""Circuit breakers against real peers, through the SDK's client: a DICOM node, the RIS MariaDB
server and Slicer's WebServer that are down, then come back.

Each peer starts on a port where nothing listened (the kernel refuses: a real connection failure).
After `breaker.failure_threshold` failures a call fails fast with CIRCUIT_OPEN naming the peer
and `retry_at`; the real peer (Orthanc, mariadbd, the WebServer stand-in) is then started on that
port: the breaker, looking at the port, sees it accept and lets the next call probe long before
`retry_at` (a 30 s cool-down here), and calls work again.
`slicer://status` shows each state. Answers that prove the peer alive (a rejected association,
a refused login) never open a breaker.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from mcp import Client

from fixtures.bridge import start_peer, stop_peer
from fixtures.core import free_port
from fixtures.mariadb import MariaDb, launch_mariadb, start_mariadb, stop_mariadb
from fixtures.orthanc import ORTHANC_AET, OUR_AET, Orthanc, start_orthanc, stop_orthanc
from fixtures.scene import error_of
from SlicerMCPLib.backends.webserver import WebServerBackend
from SlicerMCPLib.backends.webserver_http import WebServerHttp
from SlicerMCPLib.core.config import load_config
from SlicerMCPLib.core.services import Services
from SlicerMCPLib.serving.server import build_server

COOLDOWN_S = 30.0  # far longer than a peer takes to start: the look at its port, not the end of the
# cool-down, is what lets the first call after the peer is back go through


def _breaker(threshold: int = 2) -> dict[str, Any]:
    return {
        "failure_threshold": threshold,
        "first_cooldown_s": COOLDOWN_S,
        "cooldown_s": COOLDOWN_S,
        "ris_database_cooldown_s": COOLDOWN_S,
    }


def run_with_client(server: Any, steps: Callable[[Client], Awaitable[None]]) -> None:
    async def main() -> None:
        async with Client(server) as client:
            await steps(client)

    asyncio.run(main())


async def code_of(client: Client, tool: str, args: dict[str, Any] | None = None) -> str:
    result = await client.call_tool(tool, args or {})
    return "OK" if not result.is_error else error_of(result)["code"]


async def peers(client: Client) -> dict[str, dict[str, Any]]:
    status = json.loads((await client.read_resource("slicer://status")).contents[0].text)
    return {p["peer"]: p for p in status["peers"]}


def _server(backend: Any, threshold: int = 2, **overrides: Any) -> Any:
    config = load_config(env={}, overrides={"breaker": _breaker(threshold), **overrides})
    return build_server(Services(config=config, backend=backend))


async def trip(client: Client, tool: str, failure: str, peer: str, then: str | None = None) -> dict[str, Any]:
    """Two calls fail with `failure`; the next (of `then`, default the same tool) fails fast with
    CIRCUIT_OPEN naming the peer; returns that error."""
    assert [await code_of(client, tool) for _ in range(2)] == [failure] * 2
    err = error_of(await client.call_tool(then or tool, {}))
    assert err["code"] == "CIRCUIT_OPEN" and err["details"]["peer"] == peer
    return err


async def probe_after(client: Client, retry_at: str, tool: str) -> None:
    """The peer runs again: the breaker, which saw its port closed, sees it open and lets the next
    call probe, long before `retry_at` (CIRCUIT_OPEN only until the next look, a fraction of a second)."""
    codes = []
    while (code := await code_of(client, tool)) == "CIRCUIT_OPEN" and len(codes) < 200:
        codes.append(code)
        await asyncio.sleep(0.05)
    assert code == "OK", codes
    assert time.time() < datetime.fromisoformat(retry_at).timestamp() - COOLDOWN_S / 2


def test_dicom_node_opens_fails_fast_then_the_probe_reaches_orthanc(
    tmp_path: Path, clean_backend: Any
) -> None:
    port = free_port()
    node = {"host": "127.0.0.1", "port": port, "ae_title": ORTHANC_AET, "retries": 0, "timeout_s": 5}
    server = _server(clean_backend, nodes={"pacs": node}, calling_aet=OUR_AET)
    peer = f"DICOM node pacs ({ORTHANC_AET}@127.0.0.1:{port})"
    orthanc: list[Orthanc] = []

    async def steps(client: Client) -> None:
        err = await trip(client, "verify_connection", "DICOM_NODE_UNREACHABLE", peer, then="query_patients")
        assert err["details"]["retry_at"] in err["message"] and "is running" in err["message"]
        state = (await peers(client))[peer]
        assert (state["state"], state["failures"], state["retry_at"]) == (
            "open",
            2,
            err["details"]["retry_at"],
        )

        orthanc.append(start_orthanc(tmp_path, dicom_port=port))
        await probe_after(client, err["details"]["retry_at"], "verify_connection")
        assert (await peers(client))[peer] == {
            "peer": peer,
            "state": "closed",
            "failures": 0,
            "retry_at": None,
        }
        assert await code_of(client, "query_patients", {"patient_id": "NOBODY"}) == "OK"

    try:
        run_with_client(server, steps)
    finally:
        for o in orthanc:
            stop_orthanc(o)


def test_a_rejected_association_does_not_open_the_breaker(orthanc: Orthanc, clean_backend: Any) -> None:
    """Orthanc refuses a wrong called AE title: it answered, so the node is alive."""
    node = {"host": "127.0.0.1", "port": orthanc.dicom_port, "ae_title": "NOT-ORTHANC", "retries": 0}
    server = _server(clean_backend, threshold=1, nodes={"pacs": node})

    async def steps(client: Client) -> None:
        codes = [await code_of(client, "verify_connection") for _ in range(3)]
        assert codes == ["DICOM_ASSOCIATION_REJECTED"] * 3
        (state,) = (await peers(client)).values()
        assert (state["state"], state["failures"]) == ("closed", 0)

    run_with_client(server, steps)


def test_ris_database_opens_while_mariadb_is_down_then_recovers(tmp_path: Path, clean_backend: Any) -> None:
    db: MariaDb = start_mariadb(tmp_path)
    block = db.create_database()
    stop_mariadb(db)
    server = _server(clean_backend, mini_ris=block)
    peer = f"the RIS database mysql://127.0.0.1:{db.port}/{block['database']}"
    running: list[MariaDb] = []

    async def steps(client: Client) -> None:
        err = await trip(client, "list_mini_ris_patients", "RIS_DATABASE_ERROR", peer)
        assert str(block["password"]) not in json.dumps(await peers(client))
        assert (await peers(client))[peer]["state"] == "open"

        running.append(launch_mariadb(tmp_path, db.datadir, db.port))
        await probe_after(client, err["details"]["retry_at"], "list_mini_ris_patients")  # opens the store
        assert (await peers(client))[peer]["state"] == "closed"

    try:
        run_with_client(server, steps)
    finally:
        for r in running:
            stop_mariadb(r)


def test_a_refused_login_does_not_open_the_ris_breaker(
    mariadb_settings: dict[str, object], clean_backend: Any
) -> None:
    """MariaDB answers 'access denied' (a server error, 1045): it is up, so the breaker stays closed."""
    server = _server(clean_backend, threshold=1, mini_ris={**mariadb_settings, "password": "wrong"})

    async def steps(client: Client) -> None:
        codes = [await code_of(client, "list_mini_ris_patients") for _ in range(3)]
        assert codes == ["RIS_DATABASE_ERROR"] * 3
        (state,) = (await peers(client)).values()
        assert state["state"] == "closed"

    run_with_client(server, steps)


def test_webserver_opens_then_the_probe_finds_slicer(tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    config = load_config(env={}, overrides={"webserver_url": url, "breaker": _breaker()})
    http = WebServerHttp(url, backoff_s=(), breaker=config.breaker)  # no retries: one failure per call
    server = build_server(Services(config=config, backend=WebServerBackend(config, http=http)))
    peer = f"Slicer's WebServer at {url}"
    started: list[Any] = []

    async def steps(client: Client) -> None:
        err = await trip(client, "list_scene_nodes", "SLICER_CONNECTION_ERROR", peer)
        status = json.loads((await client.read_resource("slicer://status")).contents[0].text)
        assert status["connection"] == "unreachable" and status["error"]["code"] == "CIRCUIT_OPEN"
        open_state = {"peer": peer, "state": "open", "failures": 2, "retry_at": err["details"]["retry_at"]}
        assert status["peers"] == [open_state]

        started.append(start_peer(tmp_path, enable_exec=False, port=port))
        await probe_after(client, err["details"]["retry_at"], "list_scene_nodes")
        status = json.loads((await client.read_resource("slicer://status")).contents[0].text)
        assert status["connection"] == "connected" and status["peers"][0]["state"] == "closed"

    try:
        run_with_client(server, steps)
    finally:
        for p in started:
            stop_peer(p)


def test_dicomweb_requests_share_the_node_breaker() -> None:
    """WADO-RS/STOW-RS to a node's dicomweb_url go through the same breaker as its associations."""
    import pytest

    from SlicerMCPLib.core.breaker import CircuitBreaker
    from SlicerMCPLib.core.config import BreakerConfig
    from SlicerMCPLib.core.domain_config import DicomNode
    from SlicerMCPLib.core.errors import SlicerMCPError
    from SlicerMCPLib.dicom.associations import GuardedNode
    from SlicerMCPLib.dicom.dicomweb_http import dicomweb_request, request_deadline

    port = free_port()  # nothing listens
    plain = DicomNode(
        host="127.0.0.1", port=port, ae_title="X", dicomweb_url=f"http://127.0.0.1:{port}/dicom-web"
    )
    breaker = CircuitBreaker(
        "web node", BreakerConfig(failure_threshold=2, first_cooldown_s=60, cooldown_s=60)
    )
    node = GuardedNode.bind(plain, breaker)
    codes = []
    for _ in range(3):
        with pytest.raises(SlicerMCPError) as exc:
            deadline = request_deadline(node, "web", "the test request", "small")
            with dicomweb_request(node, "web", "GET", f"{node.dicomweb_url}/studies", deadline):
                pass
        codes.append(str(exc.value.code))
    assert codes == ["DICOM_NODE_UNREACHABLE", "DICOM_NODE_UNREACHABLE", "CIRCUIT_OPEN"]
    assert breaker.status().state == "open"
