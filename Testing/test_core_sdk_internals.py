"""The SDK-private attributes tools/sdk_internals.py reads still exist (fails loudly on an SDK update)."""

from mcp.server.lowlevel.server import Server
from mcp.server.mcpserver import MCPServer

from SlicerMCPLib.tools.sdk_internals import lowlevel_server, open_session_count, registered_tools


def test_lowlevel_server_is_the_sdk_server():
    server = MCPServer("t")
    assert isinstance(lowlevel_server(server), Server)


def test_registered_tools_lists_added_tools():
    server = MCPServer("t")

    @server.tool()
    def ping() -> str:
        """Ping."""
        return "pong"

    assert [t.name for t in registered_tools(server)] == ["ping"]


def test_open_session_count_starts_at_zero():
    server = MCPServer("t")
    server.streamable_http_app()
    assert open_session_count(server.session_manager) == 0


def test_request_connection_is_the_calls_connection():
    import asyncio

    from mcp import Client
    from mcp.server.connection import Connection
    from mcp.server.mcpserver import Context

    from SlicerMCPLib.tools.sdk_internals import request_connection

    server = MCPServer("t")
    seen: list[object] = []

    @server.tool()
    def where(ctx: Context) -> str:
        """Where."""
        seen.append(request_connection(ctx))
        return "here"

    async def main() -> None:
        async with Client(server, mode="legacy") as client:
            await client.call_tool("where", {})
            await client.call_tool("where", {})

    asyncio.run(main())
    assert isinstance(seen[0], Connection) and seen[0] is seen[1]
    assert seen[0].has_standalone_channel and seen[0].session_id is None
