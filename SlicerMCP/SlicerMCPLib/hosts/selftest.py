"""What the module's self-test (`SlicerMCPTest`) does through a real MCP client, kept here so pytest runs it too.

The client runs on a worker thread with its own event loop, as a client process would;
the calling (main) thread keeps processing Qt events meanwhile, so the gateway driver and
the server's wake-ups go on exactly as when Slicer sits idle.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any


def run_off_main_thread(
    function: Callable[[], Any], process_events: Callable[[], Any], timeout_s: float = 120.0
) -> Any:
    """Run `function` on a worker thread, calling `process_events` on this thread until it returns."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = function()
        except BaseException as exc:  # re-raised on the calling thread
            outcome["error"] = exc

    worker = threading.Thread(target=run, name="slicer-mcp-selftest-client", daemon=True)
    worker.start()
    deadline = time.monotonic() + timeout_s
    while worker.is_alive() and time.monotonic() < deadline:
        process_events()
        worker.join(0.005)
    if worker.is_alive():
        raise TimeoutError(f"the MCP client did not finish within {timeout_s:g} s")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def call_tools_over_http(
    url: str,
    token: str,
    calls: Sequence[tuple[str, dict[str, Any]]],
    *,
    process_events: Callable[[], Any],
    timeout_s: float = 120.0,
) -> list[Any]:
    """Call each (tool, arguments) in one MCP session over streamable HTTP; the CallToolResults."""

    async def session() -> list[Any]:
        import httpx2
        from mcp import Client
        from mcp.client.streamable_http import streamable_http_client

        http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=timeout_s)
        async with Client(streamable_http_client(url, http_client=http)) as client:
            return [await client.call_tool(name, arguments) for name, arguments in calls]

    return run_off_main_thread(lambda: asyncio.run(session()), process_events, timeout_s)
