"""execute_python namespaces are keyed by what the server issued, never by the client's declared name
(issue 15 item 11).

Two real SDK clients that both say they are "claude-code" (as every Claude Code does) must not see
each other's variables: over streamable HTTP in both protocol eras and in memory. A sessionless
(2026-07-28) HTTP client gets the key back as `namespace` and keeps its variables by passing it; a
key the server never issued is refused. Before, the key was `client-<declared name>` wherever the
request had no Mcp-Session-Id, so the second client read the first one's secret.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from mcp import Client
from mcp_types import Implementation

from fixtures.transport import RunningHttp, http_client

CLAUDE = Implementation(name="claude-code", version="2.0.0")


@pytest.fixture
def python_allowed(scene_config: Any) -> None:
    scene_config.allow.execute_python = True


def _ok(result: Any) -> dict[str, Any]:
    assert not result.is_error, result.content[0].text
    return result.structured_content


async def _two_clients_one_name(first: Client, second: Client) -> tuple[dict, dict]:
    async with first as a, second as b:
        set_by_a = _ok(await a.call_tool("execute_python", {"code": "secret = 'of client A'"}))
        seen_by_b = _ok(await b.call_tool("execute_python", {"code": "'secret' in globals()"}))
        return set_by_a, seen_by_b


@pytest.mark.parametrize("mode", ["legacy", "auto"])
def test_two_http_clients_named_alike_do_not_share_variables(
    http_server: RunningHttp, python_allowed: None, mode: str
) -> None:
    def client() -> Client:
        return http_client(http_server.url, http_server.token, mode=mode, client_info=CLAUDE)

    set_by_a, seen_by_b = asyncio.run(_two_clients_one_name(client(), client()))
    assert set_by_a["success"] and set_by_a["namespace"]
    assert seen_by_b["result"] == "False", seen_by_b
    assert seen_by_b["namespace"] != set_by_a["namespace"]


@pytest.mark.parametrize("mode", ["legacy", "auto"])
def test_two_in_memory_clients_named_alike_do_not_share_variables(
    mcp_server: Any, python_allowed: None, mode: str
) -> None:
    def client() -> Client:
        return Client(mcp_server, mode=mode, client_info=CLAUDE)

    set_by_a, seen_by_b = asyncio.run(_two_clients_one_name(client(), client()))
    assert seen_by_b["result"] == "False", seen_by_b


@pytest.mark.parametrize("mode", ["legacy", "auto"])
def test_a_connection_keeps_its_namespace_between_calls(
    mcp_server: Any, python_allowed: None, mode: str
) -> None:
    async def main() -> tuple[dict, dict]:
        async with Client(mcp_server, mode=mode, client_info=CLAUDE) as client:
            first = _ok(await client.call_tool("execute_python", {"code": "x = 41"}))
            return first, _ok(await client.call_tool("execute_python", {"code": "x + 1"}))

    first, second = asyncio.run(main())
    if mode == "legacy":  # a duplex connection: found again without passing anything
        assert second["result"] == "42" and second["namespace"] == first["namespace"]
    else:  # the in-memory 2026 path has no connection object that lasts: a new namespace, and a note
        assert not second["success"] and "NameError" in second["error"]
        assert any("namespace=" in note for note in first["notes"])


def test_a_sessionless_http_client_keeps_variables_by_passing_the_namespace_back(
    http_server: RunningHttp, python_allowed: None
) -> None:
    async def main() -> tuple[dict, dict, dict]:
        async with http_client(http_server.url, http_server.token, client_info=CLAUDE) as client:
            first = _ok(await client.call_tool("execute_python", {"code": "x = 41"}))
            forgot = _ok(await client.call_tool("execute_python", {"code": "'x' in globals()"}))
            again = _ok(
                await client.call_tool("execute_python", {"code": "x + 1", "namespace": first["namespace"]})
            )
            return first, forgot, again

    first, forgot, again = asyncio.run(main())
    assert any(first["namespace"] in note for note in first["notes"]), first["notes"]
    assert forgot["result"] == "False"
    assert again["result"] == "42" and again["namespace"] == first["namespace"]


@pytest.mark.parametrize("guess", ["client-claude-code", "console", "default", "ns-" + "A" * 22])
def test_a_namespace_the_server_did_not_issue_is_refused(
    http_server: RunningHttp, python_allowed: None, guess: str
) -> None:
    async def main() -> Any:
        async with http_client(http_server.url, http_server.token, client_info=CLAUDE) as client:
            await client.call_tool("execute_python", {"code": "secret = 1"})
            return await client.call_tool("execute_python", {"code": "secret", "namespace": guess})

    refused = asyncio.run(main())
    assert refused.is_error
    error = json.loads(refused.content[0].text)["error"]
    assert error["code"] == "INVALID_PARAMETER" and "namespace" in error["message"], error
