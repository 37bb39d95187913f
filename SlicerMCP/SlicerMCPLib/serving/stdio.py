"""MCP over stdio for our servers: every line that is not a message answered, and the end of stdin
heard, so the calls in progress stop.

Two gaps of the SDK's `stdio_server` loop. A line it cannot read becomes an exception on the read
stream, which its dispatcher drops after a debug log: a client that sent broken JSON waits for an
answer that never comes. JSON-RPC 2.0 says to reply with an error whose id is null: -32700 (Parse
error) for text that is not JSON, -32600 (Invalid Request) for JSON that is not a message.
And at end of input it cancels its async handlers, but work they started in a worker thread (a
blocking tool, `anyio.to_thread`) or on the main thread (the scene gateway) runs on, and so does
the host's own thread: a client that died (or closed stdin to stop us, as the MCP spec's stdio
shutdown asks) left the process running such a call to its end, for minutes, with nothing said.
Here the messages pass through one relay that answers the unreadable lines and, at end of input,
logs it, calls `on_eof` (the host's "stop soon": stop the scene loop, arm the exit watchdog, which
ends the process after its grace if that work does not return) and cancels the serving task group.
The headless host, `slicer-mcp`'s proxy and the WebServer bridge all serve through `serve_stdio`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import anyio
from mcp.server.stdio import stdio_server
from mcp.shared.message import SessionMessage
from mcp_types import INVALID_REQUEST, PARSE_ERROR, ErrorData, JSONRPCError
from pydantic import ValidationError

log = logging.getLogger(__name__)


def error_for(exc: Exception) -> JSONRPCError:
    """The JSON-RPC error reply for a line the transport could not read as a message."""
    not_json = isinstance(exc, ValidationError) and any(e.get("type") == "json_invalid" for e in exc.errors())
    if not_json or not isinstance(exc, ValidationError):
        error = ErrorData(code=PARSE_ERROR, message="Parse error: the line is not valid JSON")
    else:
        error = ErrorData(code=INVALID_REQUEST, message="Invalid Request: the line is not a JSON-RPC message")
    return JSONRPCError(jsonrpc="2.0", id=None, error=error)


async def serve_stdio(lowlevel: Any, init_options: Any, on_eof: Callable[[], None] | None = None) -> None:
    """Serve one stdio connection with the low-level server `lowlevel` until stdin ends."""
    async with stdio_server() as (read, write):
        relay_send, relay_receive = anyio.create_memory_object_stream[Any](0)
        async with anyio.create_task_group() as group:

            async def relay() -> None:
                try:
                    async with relay_send:
                        async for item in read:
                            if isinstance(item, Exception):
                                log.warning(
                                    "stdio: answered a line that is not a JSON-RPC message (%s)",
                                    type(item).__name__,
                                )
                                await write.send(SessionMessage(error_for(item)))
                                continue
                            await relay_send.send(item)
                except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                    return  # the server loop ended first
                log.info(
                    "stdin closed (the client is gone or asked us to stop): ending the calls in progress"
                )
                if on_eof is not None:
                    on_eof()
                group.cancel_scope.cancel()

            group.start_soon(relay)
            await lowlevel.run(relay_receive, write, init_options)
            group.cancel_scope.cancel()
