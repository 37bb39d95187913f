"""The few places we reach past the MCP SDK's public API, kept in one spot.

Why: `MCPServer` offers no public way to add a request handler (`resources/subscribe`,
`logging/setLevel`) or middleware on its low-level server, no synchronous list of its tools,
its session manager does not say how many sessions are open, and a tool's Context does not
name the connection a call came on. Each need reads one private
attribute here; Testing/test_core_sdk_internals.py fails loudly when an SDK update renames one.
"""

from typing import Any


def lowlevel_server(server: Any) -> Any:
    """The low-level `Server` under an `MCPServer` (request handlers, middleware, init options)."""
    return server._lowlevel_server  # noqa: SLF001 - no public accessor on MCPServer


def registered_tools(server: Any) -> list[Any]:
    """The server's tools, synchronously (the public `list_tools` is async and converts them)."""
    return server._tool_manager.list_tools()  # noqa: SLF001 - no public synchronous listing


def open_session_count(session_manager: Any) -> int:
    """How many streamable-HTTP sessions the SDK's session manager keeps open."""
    return len(session_manager._server_instances)  # noqa: SLF001 - the manager exposes no count


def request_connection(ctx: Any) -> Any:
    """The SDK `Connection` a tool call arrived on (its `session_id`, `outbound` channel). The tool
    Context offers only the declared client info; ValueError outside a request, as the SDK raises."""
    return ctx.request_context.session._connection  # noqa: SLF001 - ServerSession keeps it private
