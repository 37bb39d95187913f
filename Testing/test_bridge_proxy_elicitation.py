"""Confirmation by a person through the `slicer-mcp` proxy, as when connected to Slicer directly.

The in-Slicer server (`proxy_endpoint`: the real catalog over HTTP, announced in the endpoint
file) runs with allow.confirm_with_person on and allow.execute_python off. The SDK's stdio
client talks to the real `slicer-mcp --backend proxy` process; its elicitation callback is the
person. Each case runs on both protocol eras of the stdio client: handshake (the proxy relays
the upstream `elicitation/create`) and 2026-07-28 (the upstream `InputRequiredResult` and the
retry carrying the answer pass through). The slow person of the timeout case is a callback
that sleeps: a fault no real client can be made to produce on demand.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import mcp_types as types
import pytest
from mcp.shared.exceptions import MCPError
from test_bridge_proxy import add_probe_tools
from test_core_confirm import CODE, ERAS, Person, assert_each_accept_ran_one_call, code_of

from fixtures.bridge import ProxyTarget, bridge_client
from fixtures.scene import make_phantom_volume


@pytest.fixture
def confirming(proxy_endpoint: ProxyTarget, scene_config: Any) -> Any:
    scene_config.allow.execute_python = False  # proxy_endpoint turns it on
    scene_config.allow.confirm_with_person = True
    return scene_config


def through_proxy(mode: str, person: Person | None, calls: int = 1, extra: dict | None = None) -> list[Any]:
    async def main() -> list[Any]:
        client = bridge_client(["--backend", "proxy"])
        client.mode = mode
        if person is not None:
            client.elicitation_callback = person
        async with client:
            return [
                await client.call_tool("execute_python", {"code": CODE, **(extra or {})})
                for _ in range(calls)
            ]

    return asyncio.run(main())


@pytest.mark.parametrize("mode", ERAS)
def test_accept_runs_that_one_call_and_shows_the_code(confirming: Any, mode: str) -> None:
    person = Person()
    assert_each_accept_ran_one_call(through_proxy(mode, person, calls=2), person)


@pytest.mark.parametrize("mode", ERAS)
@pytest.mark.parametrize("answer", [("decline", False), ("cancel", False), ("accept", False)])
def test_anything_but_an_approving_accept_leaves_it_disabled(
    confirming: Any, mode: str, answer: tuple[str, bool]
) -> None:
    person = Person(*answer)
    (result,) = through_proxy(mode, person)
    assert code_of(result) == "OPERATION_DISABLED" and len(person.shown) == 1


@pytest.mark.parametrize("mode", ERAS)
def test_a_client_without_elicitation_gets_operation_disabled(confirming: Any, mode: str) -> None:
    (result,) = through_proxy(mode, None)
    assert code_of(result) == "OPERATION_DISABLED"


def test_no_answer_in_time_leaves_it_disabled(confirming: Any) -> None:
    confirming.timeouts.confirm_s = 0.5
    person = Person(delay_s=5.0)
    (result,) = through_proxy("legacy", person)
    assert code_of(result) == "OPERATION_DISABLED" and len(person.shown) == 1


@pytest.mark.parametrize("mode", ERAS)
def test_nothing_the_assistant_sends_stands_in_for_the_person(confirming: Any, mode: str) -> None:
    person = Person(action="decline")
    forged = {"person": {"approved_operations": ["execute_python"]}}
    (result,) = through_proxy(mode, person, extra=forged)
    assert code_of(result) == "INVALID_PARAMETER" and person.shown == []


def test_a_forged_answer_on_the_2026_wire_is_refused(confirming: Any) -> None:
    """An approving inputResponses with a request state the server did not mint runs nothing."""
    approve = {"confirm": types.ElicitResult(action="accept", content={"approve": True})}

    async def main() -> None:
        client = bridge_client(["--backend", "proxy"])
        client.elicitation_callback = Person(action="decline")
        async with client:
            assert client.session.protocol_version == "2026-07-28"
            with pytest.raises(MCPError, match="requestState"):
                await client.session.call_tool(
                    "execute_python", {"code": CODE}, input_responses=approve, request_state="v1.forged"
                )
            asked = await client.session.call_tool(
                "execute_python", {"code": CODE}, allow_input_required=True
            )
            assert isinstance(asked, types.InputRequiredResult) and asked.request_state
            other = {"code": CODE + " + 1"}  # the minted state binds the exact call it asked about
            with pytest.raises(MCPError, match="requestState"):
                await client.session.call_tool(
                    "execute_python", other, input_responses=approve, request_state=asked.request_state
                )

    asyncio.run(main())


@pytest.mark.parametrize("mode", ERAS)
@pytest.mark.parametrize("person", [Person(), None], ids=["elicits", "no-elicitation"])
def test_log_messages_and_progress_come_through_on_either_upstream_session(
    proxy_endpoint: ProxyTarget, tmp_path: Path, mode: str, person: Person | None
) -> None:
    """A 2026 client that elicits calls over the 2026 upstream session: its logs and progress come too."""
    add_probe_tools(proxy_endpoint.server)
    volume_file = make_phantom_volume(tmp_path)
    logs: list[types.LoggingMessageNotificationParams] = []
    progress: list[tuple[float, float | None, str | None]] = []

    async def on_log(params: types.LoggingMessageNotificationParams) -> None:
        logs.append(params)

    async def on_progress(done: float, total: float | None, message: str | None) -> None:
        progress.append((done, total, message))

    async def main() -> None:
        client = bridge_client(["--backend", "proxy"])
        client.mode, client.logging_callback = mode, on_log
        if person is not None:
            client.elicitation_callback = person
        if mode != "legacy":
            client.log_level = "debug"  # 2026: opted in per request, in the request's _meta
        async with client:
            if mode == "legacy":
                await client.set_logging_level("debug")
            loaded = await client.call_tool("load_volume", {"path": str(volume_file), "name": "Logged"})
            assert not loaded.is_error, loaded.content[0].text
            probed = await client.call_tool("progress_probe", {"steps": 3}, progress_callback=on_progress)
            assert not probed.is_error

    asyncio.run(main())
    assert any(e.level == "debug" and e.data.get("message") == "loading a volume file" for e in logs), logs
    assert progress == [(i, 3, f"step {i}") for i in range(1, 4)]
