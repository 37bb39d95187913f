"""Beyond tools through `slicer-mcp` on each backend (proxy to the in-Slicer server, Slicer's
WebServer, headless): prompts, completions, logging/setLevel, resources/subscribe and
subscriptions/listen, with the SDK's stdio client on both protocol eras.

The change here is made by a tool, which every backend sees; changes made in Slicer itself
reach WebServer-backend clients by polling (test_bridge_webserver_live.py). Confirmation by a
person through the proxy: test_bridge_proxy_elicitation.py.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import mcp_types as types
from mcp.client.subscriptions import ResourceUpdated
from test_core_live_resources import Inbox

from fixtures.bridge import BridgeTarget, bridge_client
from fixtures.scene import make_phantom_volume


def test_prompts_completions_logging_and_subscriptions(bridge_target: BridgeTarget, tmp_path: Path) -> None:
    volume_file = make_phantom_volume(tmp_path)
    inbox = Inbox()

    async def main() -> None:
        client = bridge_client(bridge_target.args, bridge_target.env)
        client.mode = "legacy"
        client.message_handler = inbox.on_message
        async with client:
            caps = client.session.server_capabilities
            assert caps.prompts and caps.completions is not None and caps.logging is not None
            assert caps.resources.subscribe and caps.resources.list_changed
            prompts = {p.name for p in (await client.list_prompts()).prompts}
            assert {"review_fhir_patient_study", "working_safely"} <= prompts
            await client.set_logging_level("info")
            await client.subscribe_resource("slicer://scene")
            loaded = await client.call_tool("load_volume", {"path": str(volume_file), "name": "Bridged"})
            assert not loaded.is_error, loaded.content[0].text
            node_id = loaded.structured_content["nodes"][0]["id"]
            await inbox.wait_for("slicer://scene", timeout=30)
            got = await client.complete(
                types.ResourceTemplateReference(uri="slicer://node/{node_id}"),
                {"name": "node_id", "value": "bridged"},
            )
            assert got.completion.values == [node_id]

        async with bridge_client(bridge_target.args, bridge_target.env) as modern:
            assert modern.protocol_version == "2026-07-28"
            async with modern.listen(resource_subscriptions=["slicer://scene"]) as sub:
                again = await modern.call_tool("load_volume", {"path": str(volume_file), "name": "Again"})
                assert not again.is_error
                assert await asyncio.wait_for(sub.__anext__(), 30) == ResourceUpdated("slicer://scene")

    asyncio.run(main())
