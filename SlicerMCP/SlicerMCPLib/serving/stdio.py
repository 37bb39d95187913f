"""MCP over stdio until stdin ends; then the host hears of it and the calls in progress are cancelled.

At end of input the SDK's stdio loop cancels its async handlers, but work they started in a worker
thread (a blocking tool, `anyio.to_thread`) or on the main thread (the scene gateway) runs on, and
so does the host's own thread: a client that died (or closed stdin to stop us, as the MCP spec's
stdio shutdown asks) left the process running such a call to its end, for minutes, with nothing
said. Here the messages pass through a relay that sees the end of input: it logs it, calls
`on_eof` (the host's "stop soon": stop the scene loop, arm the exit watchdog, which ends the
process after its grace if that work does not return) and cancels the serving task group.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import anyio
from mcp.server.stdio import stdio_server

log = logging.getLogger(__name__)


async def serve_stdio(lowlevel: Any, init_options: Any, on_eof: Callable[[], None] | None = None) -> None:
    """Serve one stdio connection with the low-level server `lowlevel` until stdin ends."""
    async with stdio_server() as (read, write):
        relay_send, relay_receive = anyio.create_memory_object_stream[Any](0)
        async with anyio.create_task_group() as group:

            async def relay() -> None:
                try:
                    async with relay_send:
                        async for message in read:
                            await relay_send.send(message)
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
