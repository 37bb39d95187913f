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
