"""HTTP overhead: a tool call with trivial work against the bare HTTP round trip of the same server.

    python benchmarks/bench_http.py [N]

Starts `slicer-mcp serve --headless --transport http --port 0` as a user does, connects the MCP
Python SDK's streamable HTTP client (one kept-alive connection) and alternates, call by call:
  reference  a raw POST of `server/discover` (the 2026 protocol's ping) on the same connection
  tool       `list_dicom_nodes` (touches nothing: no scene, no network) through the SDK client
  fresh      the same tool call on a new connection each time (no keep-alive: shows Nagle stalls)
Target: tool p50 <= reference p50 + 3 ms.
"""

from __future__ import annotations

import asyncio
import sys

import httpx2
from _server import Connection, SlicerMcpProcess, p50, row
from mcp import Client
from mcp.client.streamable_http import streamable_http_client


async def fresh_call(url: str, token: str) -> None:
    async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}) as http:
        async with Client(streamable_http_client(url, http_client=http)) as client:
            await client.call_tool("list_dicom_nodes", {})


async def run(n: int) -> None:
    with SlicerMcpProcess() as server:
        async with Connection(server.url, server.token) as conn:
            from _server import interleaved

            times = await interleaved(
                {
                    "raw": lambda: conn.raw(),
                    "tool": lambda: conn.call("list_dicom_nodes"),
                    "tool, no output check": lambda: conn.client.session.send_request(
                        *_tool_request(conn, "list_dicom_nodes")
                    ),
                },
                n,
            )
        fresh = []
        for _ in range(max(5, n // 10)):
            t0 = asyncio.get_running_loop().time()
            await fresh_call(server.url, server.token)
            fresh.append((asyncio.get_running_loop().time() - t0) * 1000)
    ref = p50(times["raw"])
    print(f"HTTP overhead, slicer-mcp headless over streamable HTTP, n={n} (kept-alive connection)")
    print(row("reference: raw POST server/discover, same connection", times["raw"]))
    tool = times["tool"]
    line = row("list_dicom_nodes through the SDK client", tool, ref)
    extra = p50(tool) - ref
    print(f"{line}  +{extra:.2f} ms (target <= +3 ms: {'met' if extra <= 3 else 'MISSED'})")
    print(
        row(
            "list_dicom_nodes, SDK send_request (no output-schema check)", times["tool, no output check"], ref
        )
    )
    print(row("list_dicom_nodes on a fresh connection (connect + discover + call)", fresh, ref))


def _tool_request(conn: Connection, name: str) -> tuple:
    import mcp_types as types

    return (
        types.CallToolRequest(params=types.CallToolRequestParams(name=name, arguments={})),
        types.CallToolResult,
    )


if __name__ == "__main__":
    asyncio.run(run(int(sys.argv[1]) if len(sys.argv) > 1 else 200))
