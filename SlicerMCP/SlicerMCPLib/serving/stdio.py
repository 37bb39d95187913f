"""MCP over stdio until stdin ends; then the calls in progress are cancelled, not awaited.

The SDK's stdio loop, at end of input, waits for every request handler still running: a client
that died (or closed stdin to stop us, as the MCP spec's stdio shutdown asks) left the process
running a long call to its end, for minutes. Here the messages pass through a relay that sees the
end of input; it calls `on_eof` (the host's "stop soon": stop the scene loop, arm the exit
watchdog) and cancels the serving task group, so awaiting handlers end at once. Work already in a
worker thread or on the main thread cannot be cancelled from asyncio: the host's exit watchdog
ends the process after its grace if that work does not return (hosts/headless.py).
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
