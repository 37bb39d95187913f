"""stdio for our servers: the SDK's transport, with every line that is not a message answered.

The SDK's `stdio_server` turns a line it cannot read into an exception on the read stream, and
its dispatcher drops those after a debug log: a client that sent broken JSON waits for an answer
that never comes. JSON-RPC 2.0 says to reply with an error whose id is null: -32700 (Parse error)
for text that is not JSON, -32600 (Invalid Request) for JSON that is not a message. The headless
host and `slicer-mcp`'s proxy both serve through `stdio_streams`.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
from mcp.server.mcpserver import MCPServer
from mcp.server.stdio import stdio_server
from mcp.shared.message import SessionMessage
from mcp_types import INVALID_REQUEST, PARSE_ERROR, ErrorData, JSONRPCError
from pydantic import ValidationError

from ..tools.sdk_internals import lowlevel_server

log = logging.getLogger(__name__)


def error_for(exc: Exception) -> JSONRPCError:
    """The JSON-RPC error reply for a line the transport could not read as a message."""
    not_json = isinstance(exc, ValidationError) and any(e.get("type") == "json_invalid" for e in exc.errors())
    if not_json or not isinstance(exc, ValidationError):
        error = ErrorData(code=PARSE_ERROR, message="Parse error: the line is not valid JSON")
    else:
        error = ErrorData(code=INVALID_REQUEST, message="Invalid Request: the line is not a JSON-RPC message")
    return JSONRPCError(jsonrpc="2.0", id=None, error=error)


@asynccontextmanager
async def stdio_streams() -> AsyncIterator[tuple[Any, Any]]:
    """(read, write) streams for `Server.run`, as `stdio_server()` gives them, minus unreadable lines,
    each of which is answered on stdout instead."""
    async with stdio_server() as (read, write):
        messages_in, messages_out = anyio.create_memory_object_stream[SessionMessage | Exception](0)

        async def answer_bad_lines() -> None:
            async with messages_in:
                async for item in read:
                    if isinstance(item, Exception):
                        log.warning(
                            "stdio: answered a line that is not a JSON-RPC message (%s)", type(item).__name__
                        )
                        await write.send(SessionMessage(error_for(item)))
                        continue
                    await messages_in.send(item)

        async with anyio.create_task_group() as tg:
            tg.start_soon(answer_bad_lines)
            try:
                yield messages_out, write
            finally:
                tg.cancel_scope.cancel()


async def run_stdio(server: MCPServer) -> None:
    """`server.run_stdio_async()`, through `stdio_streams`."""
    lowlevel = lowlevel_server(server)
    async with stdio_streams() as (read, write):
        await lowlevel.run(read, write, lowlevel.create_initialization_options())
