"""Live resources on the WebServer backend: scene changes made in Slicer (not by our tools) reach
subscribed clients of `slicer-mcp --backend webserver`, because the backend polls Slicer's
WebServer while someone subscribes (backends/webserver_watch.py).

The changes are made on the test WebServer's scene by other WebServer clients, as the Slicer
user or Python would: /slicer/exec running MRML calls on the scene thread (with "Slicer API
exec" on), or plain WebServer requests (POST /slicer/mrml, POST /slicer/volume, DELETE
/slicer/mrml) with exec off, Slicer's default. Both take different polling paths.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import anyio
import numpy as np
import pytest
from mcp import Client
from mcp.client.subscriptions import ResourcesListChanged, ResourceUpdated
from test_core_live_resources import Inbox

from fixtures.bridge import PeerProcess, bridge_client, bridge_env
from fixtures.scene import make_phantom_volume
from SlicerMCPLib.backends.webserver import WebServerBackend
from SlicerMCPLib.backends.webserver_http import WebServerHttp
from SlicerMCPLib.backends.webserver_nrrd import encode
from SlicerMCPLib.core.config import Config
from SlicerMCPLib.core.services import Services
from SlicerMCPLib.serving.server import build_server

WAIT_S = 60.0  # generous: the poll interval is 0.2 s here, the machine is shared


class SlicerUser:
    """Changes the test WebServer's scene without slicer-mcp: Python in Slicer, or other WebServer clients."""

    def __init__(self, peer: PeerProcess, python: bool):
        self.http = WebServerHttp(peer.url, backoff_s=())
        self.python = python

    def _exec(self, code: str) -> Any:
        response = self.http.request(
            "POST", "/slicer/exec", None, code.encode(), timeout=60, changes_state=True
        )
        return json.loads(response.body)

    def clear(self) -> None:
        self.http.request("DELETE", "/slicer/mrml", None, None, timeout=60, changes_state=True)

    def add_volume(self, name: str, tmp: Path) -> str:
        if self.python:
            return self._exec(
                f"__execResult = slicer.mrmlScene.AddNewNodeByClass('vtkMRMLScalarVolumeNode', {name!r}).GetID()"
            )
        path = make_phantom_volume(tmp, name=name)
        params = {"localfile": str(path), "filetype": "VolumeFile", "name": name}
        response = self.http.request("POST", "/slicer/mrml", params, b"", timeout=120, changes_state=True)
        return str(json.loads(response.body)["loadedNodeIDs"][0])

    def modify(self, node_id: str, name: str) -> None:
        """A change to the node that keeps its id and name."""
        if self.python:
            self._exec(f"slicer.mrmlScene.GetNodeByID({node_id!r}).SetSpacing(2.0, 2.0, 3.0)")
            return
        voxels = np.zeros((4, 5, 6), dtype=np.int16)  # POST /slicer/volume?id=<name> overwrites in place
        self.http.request(
            "POST", "/slicer/volume", {"id": name}, encode(voxels, np.eye(4)), timeout=60, changes_state=True
        )

    def remove(self, node_id: str) -> None:
        self.http.request("DELETE", "/slicer/mrml", {"id": node_id}, None, timeout=60, changes_state=True)

    def close(self) -> None:
        self.http.close()


@pytest.fixture(params=["python", "webserver-requests"])
def slicer_user(request: pytest.FixtureRequest) -> Any:
    python = request.param == "python"
    peer = request.getfixturevalue("webserver_peer" if python else "webserver_peer_no_exec")
    user = SlicerUser(peer, python)
    user.clear()
    yield peer, user
    user.clear()
    user.close()


def _bridge_args(peer: PeerProcess) -> list[str]:
    return ["--backend", "webserver", "--webserver-url", peer.url]


def test_changes_made_in_slicer_reach_subscribed_clients(slicer_user: Any, tmp_path: Path) -> None:
    """Added, modified, removed in Slicer: slicer://scene, slicer://volumes, slicer://node/{id}
    updated, list_changed, on both protocol eras, through `slicer-mcp --backend webserver`."""
    peer, user = slicer_user
    env = bridge_env(SLICER_MCP__WEBSERVER_POLL_S="0.2")
    inbox = Inbox()

    async def main() -> None:
        client = bridge_client(_bridge_args(peer), env)
        client.mode = "legacy"
        client.message_handler = inbox.on_message
        async with client:
            await client.subscribe_resource("slicer://scene")
            await client.subscribe_resource("slicer://volumes")
            node_id = await asyncio.to_thread(user.add_volume, "AddedInSlicer", tmp_path)
            await inbox.wait_for("slicer://scene", WAIT_S)
            await inbox.wait_for("slicer://volumes", WAIT_S)
            await inbox.wait_for_list_changed(WAIT_S)
            listed = {str(r.uri) for r in (await client.list_resources()).resources}
            assert f"slicer://node/{node_id}" in listed

            await client.subscribe_resource(f"slicer://node/{node_id}")
            inbox.updated.clear()
            await asyncio.to_thread(user.modify, node_id, "AddedInSlicer")
            await inbox.wait_for(f"slicer://node/{node_id}", WAIT_S)
            await inbox.wait_for("slicer://scene", WAIT_S)

            inbox.updated.clear()
            inbox.list_changed = 0
            await asyncio.to_thread(user.remove, node_id)
            await inbox.wait_for_list_changed(WAIT_S)
            await inbox.wait_for("slicer://scene", WAIT_S)
            listed = {str(r.uri) for r in (await client.list_resources()).resources}
            assert f"slicer://node/{node_id}" not in listed

        async with bridge_client(_bridge_args(peer), env) as modern:
            assert modern.protocol_version == "2026-07-28"
            async with modern.listen(
                resources_list_changed=True, resource_subscriptions=["slicer://scene"]
            ) as sub:
                await asyncio.to_thread(user.add_volume, "SeenOnTheStream", tmp_path)
                events: list[Any] = []

                async def collect() -> None:
                    async for event in sub:
                        events.append(event)
                        if ResourcesListChanged() in events and ResourceUpdated("slicer://scene") in events:
                            return

                await asyncio.wait_for(collect(), WAIT_S)

    asyncio.run(main())


def _in_process(peer: PeerProcess) -> tuple[Any, WebServerBackend]:
    """The catalog over the WebServer backend in this process, so the test can see the watcher."""
    config = Config(webserver_poll_s=0.2)
    backend = WebServerBackend(config, peer.url)
    return build_server(Services(config=config, backend=backend)), backend


def test_polling_runs_only_while_someone_subscribes(
    webserver_peer_no_exec: PeerProcess, tmp_path: Path
) -> None:
    server, backend = _in_process(webserver_peer_no_exec)
    user = SlicerUser(webserver_peer_no_exec, python=False)
    inbox = Inbox()

    async def settled_looks(watcher: Any) -> int:
        """Looks made, after any look already under way has finished."""
        await asyncio.sleep(1.0)
        return watcher.looks

    async def main() -> None:
        async with Client(server, mode="legacy", message_handler=inbox.on_message) as client:
            await client.list_resources()  # lists, subscribes to nothing: no polling
            watcher = await backend.scene_changes()
            assert not watcher.live() and watcher.looks == 0
            await client.subscribe_resource("slicer://scene")
            assert watcher.live() and watcher.looks >= 1  # the baseline was taken before the answer
            await asyncio.to_thread(user.add_volume, "WhileSubscribed", tmp_path)
            await inbox.wait_for("slicer://scene", WAIT_S)

            await client.unsubscribe_resource("slicer://scene")
            assert not watcher.live()
            stopped = await settled_looks(watcher)
            assert await settled_looks(watcher) == stopped, "no looks once no one subscribes"

            await client.subscribe_resource("slicer://volumes")
            assert watcher.live()
        # the client went away without unsubscribing: its connection's subscriptions end with it
        assert not watcher.live()
        stopped = await settled_looks(watcher)
        assert await settled_looks(watcher) == stopped
        await backend.close()

    asyncio.run(main())
    user.clear()
    user.close()


def test_a_burst_made_in_slicer_is_coalesced(webserver_peer: PeerProcess) -> None:
    """300 nodes added by one piece of Python in Slicer: a few notification rounds, not hundreds."""
    server, backend = _in_process(webserver_peer)
    user = SlicerUser(webserver_peer, python=True)
    user.clear()
    inbox = Inbox()

    async def main() -> int:
        async with Client(server, mode="legacy", message_handler=inbox.on_message) as client:
            await client.subscribe_resource("slicer://scene")
            assert server.live is not None
            before = server.live.rounds
            await asyncio.to_thread(
                user._exec,
                "for i in range(300): slicer.mrmlScene.AddNewNodeByClass('vtkMRMLScalarVolumeNode', 'burst %d' % i)",
            )
            await inbox.wait_for("slicer://scene", WAIT_S)
            await asyncio.sleep(1.0)  # anything still coming from the burst arrives by now
            rounds = server.live.rounds - before
        await backend.close()
        return rounds

    rounds = asyncio.run(main())
    user.clear()
    user.close()
    assert 1 <= rounds <= 3, rounds
    assert inbox.updated.count("slicer://scene") == rounds


def test_post_volume_overwrites_an_existing_node_in_place(webserver_peer_no_exec: PeerProcess) -> None:
    """As Slicer's postNRRD does (getNode, then SetAndObserveImageData on that node): same id, new voxels."""
    backend = WebServerBackend(Config(), webserver_peer_no_exec.url)
    user = SlicerUser(webserver_peer_no_exec, python=False)

    async def main() -> None:
        await backend.clear_scene()
        body = encode(np.zeros((2, 3, 4), dtype=np.int16), np.eye(4))
        await anyio.to_thread.run_sync(
            lambda: backend.http.request(
                "POST", "/slicer/volume", {"id": "Kept"}, body, timeout=60, changes_state=True
            )
        )
        (first,) = await backend._ids(name="Kept")
        before = (await backend._properties(id=first))[first]["MTime"]
        bigger = encode(np.ones((3, 4, 5), dtype=np.int16), np.diag([2.0, 2.0, 2.0, 1.0]))
        await anyio.to_thread.run_sync(
            lambda: backend.http.request(
                "POST", "/slicer/volume", {"id": "Kept"}, bigger, timeout=60, changes_state=True
            )
        )
        assert await backend._ids(name="Kept") == [first]
        props = (await backend._properties(id=first))[first]
        assert props["MTime"] > before and props["ImageData"]["Dimensions"] == [5, 4, 3]
        exported = await backend.export_volume(first)
        assert exported.array.shape == (3, 4, 5) and int(exported.array.sum()) == 60
        await backend.clear_scene()
        await backend.close()

    anyio.run(main)
    user.close()


@pytest.mark.parametrize("python", [True, False], ids=["exec-on", "exec-off"])
def test_what_one_look_costs_slicer(python: bool, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    """Requests per look (Slicer closes every connection, so connections opened = requests): one
    /slicer/exec with exec on; with exec off /mrml/ids + /mrml/names, the subscribed data nodes'
    MTime and POLL_CHECKS more."""
    from SlicerMCPLib.backends.webserver_watch import POLL_CHECKS

    peer = request.getfixturevalue("webserver_peer" if python else "webserver_peer_no_exec")
    user = SlicerUser(peer, python)
    user.clear()
    ids = [user.add_volume(f"Cost{i}", tmp_path) for i in range(POLL_CHECKS + 2)]
    _, backend = _in_process(peer)

    async def main() -> tuple[int, int, int]:
        watcher = await backend.scene_changes()
        http = watcher.reader.http
        watcher._wanted = frozenset(ids[:1])
        await watcher._look()  # the first look: every node's class and kind, learnt once
        before = http.connections_opened
        await watcher._look()
        plain = http.connections_opened - before
        await asyncio.to_thread(user.add_volume, "CostNew", tmp_path)
        before, known = http.connections_opened, len(watcher.names())
        await watcher._look()
        with_new = http.connections_opened - before
        new_nodes = (
            len(watcher.names()) - known
        )  # the volume, with exec off its display and storage nodes too
        modified, set_changed = watcher.take()
        assert set_changed and any(kind == "vtkMRMLScalarVolumeNode" for kind in modified.values())
        await backend.close()
        return plain, with_new, new_nodes

    plain, with_new, new_nodes = asyncio.run(main())
    user.clear()
    user.close()
    if python:
        assert (plain, with_new) == (1, 1)
    else:
        assert plain == 2 + 1 + POLL_CHECKS, plain
        # new nodes: the properties of each and the nine application-class queries, once
        assert with_new == plain + new_nodes + 9, (with_new, new_nodes)
