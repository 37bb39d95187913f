"""What MCP offers beyond tools, over the real transports: streamable HTTP (token, SSE priming and
resumption) and stdio (`slicer-mcp serve --headless` as a subprocess), with the SDK's clients.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from typing import Any

import httpx
import mcp_types as types
from mcp import Client, StdioServerParameters
from mcp.client.subscriptions import ResourceUpdated
from test_core_live_resources import Inbox, add_node_on_scene

from fixtures.transport import RunningHttp, http_client

SSE = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


def sse_events(text: str) -> list[dict[str, str]]:
    """The events of an SSE body as field dicts (id, retry, event, data)."""
    events = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        fields: dict[str, str] = {}
        for line in block.split("\n"):
            if ":" in line and not line.startswith(":"):
                key, _, value = line.partition(":")
                fields[key] = fields.get(key, "") + value.removeprefix(" ")
        if fields:
            events.append(fields)
    return events


def test_post_streams_open_with_a_priming_event_and_resume(http_server: RunningHttp) -> None:
    headers = {**SSE, "Authorization": f"Bearer {http_server.token}"}
    init = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-11-25",
            "capabilities": {},
            "clientInfo": {"name": "t", "version": "0"},
        },
    }
    with httpx.Client(timeout=30) as http:
        r = http.post(http_server.url, json=init, headers=headers)
        assert r.headers["content-type"].startswith("text/event-stream")
        first = sse_events(r.text)[0]
        assert first["id"] and first["retry"] == "1000" and first.get("data", "") == ""
        session = {
            **headers,
            "mcp-session-id": r.headers["mcp-session-id"],
            "mcp-protocol-version": "2025-11-25",
        }
        http.post(
            http_server.url, json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=session
        )
        call = {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "list_scene_nodes"}}
        r = http.post(http_server.url, json=call, headers=session)
        events = sse_events(r.text)
        priming, answer = events[0], events[-1]
        assert priming["retry"] == "1000" and json.loads(answer["data"])["id"] == 2
        # a client that lost the stream after the priming event gets the answer again
        resumed = {**session, "Accept": "text/event-stream", "Last-Event-ID": priming["id"]}
        with http.stream("GET", http_server.url, headers=resumed) as stream:
            body = ""
            for chunk in stream.iter_text():
                body += chunk
                if '"id":2' in body.replace(" ", ""):
                    break
        replayed = [e for e in sse_events(body) if e.get("data")]
        assert json.loads(replayed[0]["data"]) == json.loads(answer["data"])


def test_subscriptions_logging_and_completion_over_http(http_server: RunningHttp, run_on_scene) -> None:
    inbox = Inbox()

    async def main() -> None:
        async with http_client(http_server.url, http_server.token) as modern:
            async with modern.listen(resource_subscriptions=["slicer://scene"]) as sub:
                await asyncio.to_thread(add_node_on_scene, run_on_scene, "seen over HTTP")
                event = await asyncio.wait_for(sub.__anext__(), 10)
                assert event == ResourceUpdated("slicer://scene")
            got = await modern.complete(
                types.ResourceTemplateReference(uri="slicer://node/{node_id}"),
                {"name": "node_id", "value": "seen"},
            )
            assert len(got.completion.values) == 1
        legacy = http_client(http_server.url, http_server.token)
        legacy.mode = "legacy"
        legacy.message_handler = inbox.on_message
        async with legacy:
            await legacy.set_logging_level("warning")
            await legacy.subscribe_resource("slicer://volumes")
            await asyncio.to_thread(add_node_on_scene, run_on_scene, "seen by the GET stream")
            await inbox.wait_for("slicer://volumes")
            prompts = {p.name for p in (await legacy.list_prompts()).prompts}
            assert "working_safely" in prompts

    asyncio.run(main())


def stdio(*args: str, env: dict[str, str] | None = None) -> StdioServerParameters:
    return StdioServerParameters(
        command=sys.executable, args=["-m", "slicer_mcp", *args], env={**os.environ, **(env or {})}
    )


def test_headless_stdio_serves_prompts_completions_subscriptions_and_confirmation() -> None:
    inbox = Inbox()
    shown: list[str] = []

    async def person(ctx: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
        shown.append(params.message)
        return types.ElicitResult(action="accept", content={"approve": True})

    env = {"SLICER_MCP_ALLOW_CONFIRM_WITH_PERSON": "true"}
    params = stdio("serve", "--headless", "--demo", env=env)

    async def main() -> None:
        async with Client(
            params,
            mode="legacy",
            read_timeout_seconds=120,
            message_handler=inbox.on_message,
            elicitation_callback=person,
        ) as client:
            caps = client.session.server_capabilities
            assert caps.resources.subscribe and caps.logging is not None and caps.completions is not None
            await client.subscribe_resource("slicer://scene")
            ran = await client.call_tool(
                "execute_python",
                {
                    "code": "slicer.mrmlScene.AddNewNodeByClass("
                    "'vtkMRMLScalarVolumeNode', 'from stdio').GetID()"
                },
            )
            assert not ran.is_error, ran.content[0].text
            assert "AddNewNodeByClass" in shown[0]
            await inbox.wait_for("slicer://scene", timeout=30)
            volume = await client.complete(
                types.PromptReference(name="segment_and_measure_lesion"), {"name": "volume", "value": "from"}
            )
            assert "from stdio" in volume.completion.values
            text = (await client.get_prompt("working_safely", {})).messages[0].content.text
            assert "allow.confirm_with_person is on" in text

    asyncio.run(main())
