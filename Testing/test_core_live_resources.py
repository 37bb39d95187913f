"""Live resources on the real headless scene: subscriptions, coalesced updates, list_changed.

A change made by a tool, or straight on the scene (as the Slicer user or Python does), reaches
a handshake-era client that used `resources/subscribe` and a 2026 client on
`subscriptions/listen`. Both use the SDK's own clients (in-memory here; real HTTP in
test_transport_live.py).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import mcp_types as types
from mcp import Client
from mcp.client.subscriptions import ResourcesListChanged, ResourceUpdated

from fixtures.scene import make_phantom_volume


class Inbox:
    """What the server sent: updated URIs and list_changed counts, with a way to wait for them."""

    def __init__(self) -> None:
        self.updated: list[str] = []
        self.list_changed = 0
        self.logs: list[types.LoggingMessageNotificationParams] = []
        self.changed = asyncio.Event()

    async def on_message(self, message: Any) -> None:
        if isinstance(message, types.ResourceUpdatedNotification):
            self.updated.append(str(message.params.uri))
        elif isinstance(message, types.ResourceListChangedNotification):
            self.list_changed += 1
        else:
            return
        self.changed.set()

    async def wait_for(self, uri: str, timeout: float = 10.0) -> None:
        async def until() -> None:
            while uri not in self.updated:
                self.changed.clear()
                await self.changed.wait()

        await asyncio.wait_for(until(), timeout)

    async def wait_for_list_changed(self, timeout: float = 10.0) -> None:
        """list_changed and the updates are separate notifications: either may arrive first."""

        async def until() -> None:
            while not self.list_changed:
                self.changed.clear()
                await self.changed.wait()

        await asyncio.wait_for(until(), timeout)


def add_node_on_scene(run_on_scene, name: str) -> str:
    """What a Slicer user or a Python console does: a node added straight to the scene."""

    def add() -> str:
        import slicer

        scene = slicer.mrmlScene
        node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", name)
        return node.GetID()

    return run_on_scene(add)


def test_capabilities_say_subscribe_and_list_changed(mcp_server) -> None:
    async def main() -> Any:
        async with Client(mcp_server, mode="legacy") as client:
            return client.session.server_capabilities

    caps = asyncio.run(main())
    assert caps.resources.subscribe and caps.resources.list_changed
    assert caps.logging is not None and caps.completions is not None and caps.prompts is not None


def test_subscribed_client_hears_tool_and_scene_changes(mcp_server, run_on_scene, tmp_path: Path) -> None:
    inbox = Inbox()
    path = make_phantom_volume(tmp_path)

    async def main() -> tuple[str, str]:
        async with Client(mcp_server, mode="legacy", message_handler=inbox.on_message) as client:
            await client.subscribe_resource("slicer://scene")
            await client.subscribe_resource("slicer://volumes")
            loaded = await client.call_tool("load_volume", {"path": str(path)})
            node_id = loaded.structured_content["nodes"][0]["id"]
            await inbox.wait_for("slicer://volumes")
            await inbox.wait_for("slicer://scene")
            await inbox.wait_for_list_changed()
            listed = {str(r.uri) for r in (await client.list_resources()).resources}
            assert f"slicer://node/{node_id}" in listed  # each data node is a resource

            await client.subscribe_resource(f"slicer://node/{node_id}")
            inbox.updated.clear()

            def rename() -> None:
                run_on_scene(lambda: _scene_node(node_id).SetName("renamed by the user"))

            await asyncio.to_thread(rename)
            await inbox.wait_for(f"slicer://node/{node_id}")
            body = (await client.read_resource(f"slicer://node/{node_id}")).contents[0].text
            assert "renamed by the user" in body

            inbox.updated.clear()
            other = await asyncio.to_thread(add_node_on_scene, run_on_scene, "added in Python")
            await inbox.wait_for("slicer://scene")
            return node_id, other

    node_id, other = asyncio.run(main())
    assert f"slicer://node/{other}" not in inbox.updated  # not subscribed: not sent to this client


def _scene_node(node_id: str) -> Any:
    import slicer

    return slicer.mrmlScene.GetNodeByID(node_id)


def test_a_burst_of_changes_is_coalesced(mcp_server, run_on_scene) -> None:
    inbox = Inbox()

    def burst() -> None:
        def add_many() -> None:
            import slicer

            for i in range(300):
                slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", f"burst {i}")

        run_on_scene(add_many)

    async def main() -> int:
        async with Client(mcp_server, mode="legacy", message_handler=inbox.on_message) as client:
            await client.subscribe_resource("slicer://scene")
            before = mcp_server.live.rounds
            await asyncio.to_thread(burst)
            await inbox.wait_for("slicer://scene")
            await asyncio.sleep(1.0)  # anything still coming from the burst arrives by now
            return mcp_server.live.rounds - before

    rounds = asyncio.run(main())
    assert 1 <= rounds <= 3, rounds  # 600 scene events (add + modify), a few rounds
    assert inbox.updated.count("slicer://scene") == rounds


def test_unsubscribed_uri_is_no_longer_sent(mcp_server, run_on_scene) -> None:
    inbox = Inbox()

    async def main() -> None:
        async with Client(mcp_server, mode="legacy", message_handler=inbox.on_message) as client:
            await client.subscribe_resource("slicer://scene")
            await client.subscribe_resource("slicer://volumes")
            await client.unsubscribe_resource("slicer://scene")
            await asyncio.to_thread(add_node_on_scene, run_on_scene, "after unsubscribe")
            await inbox.wait_for("slicer://volumes")

    asyncio.run(main())
    assert "slicer://scene" not in inbox.updated


def test_2026_client_listens_for_updates_and_list_changes(mcp_server, run_on_scene) -> None:
    async def main() -> list[Any]:
        async with Client(mcp_server) as client:
            assert client.protocol_version == "2026-07-28"
            events: list[Any] = []
            async with client.listen(
                resources_list_changed=True, resource_subscriptions=["slicer://scene", "slicer://volumes"]
            ) as sub:
                await asyncio.to_thread(add_node_on_scene, run_on_scene, "seen on the listen stream")

                async def collect() -> None:
                    async for event in sub:
                        events.append(event)
                        if ResourcesListChanged() in events and ResourceUpdated("slicer://volumes") in events:
                            return

                await asyncio.wait_for(collect(), 10)
            return events

    events = asyncio.run(main())
    assert ResourceUpdated("slicer://scene") in events
    assert all(not (isinstance(e, ResourceUpdated) and e.uri.startswith("slicer://node/")) for e in events)
