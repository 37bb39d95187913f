"""completion/complete on a 1,000-node scene, through `slicer-mcp` as users run it.

    python benchmarks/bench_completions.py [N]

Starts `slicer-mcp serve --headless --demo --transport http --port 0`, adds 998 small volumes
(execute_python, untimed), then times completion/complete for the slicer://node/{node_id}
template (an empty value: the first 100 of 1,000 ids; a name fragment: the matching ones) and
a segment name, each against the bare HTTP round trip of `server/discover` on the same kept-alive
connection in the same run. Goal: under 20 ms at p50 on this machine.
"""

from __future__ import annotations

import asyncio
import sys

from _server import Connection, SlicerMcpProcess, interleaved, p50, row
from bench_scene import POPULATE
from mcp_types import PromptReference, ResourceTemplateReference

NODE = ResourceTemplateReference(uri="slicer://node/{node_id}")
LESION = PromptReference(name="segment_and_measure_lesion")


async def main(n: int) -> None:
    with SlicerMcpProcess("--demo") as server:
        async with Connection(server.url, server.token) as conn:
            await conn.python(POPULATE)
            listing = await conn.call("list_scene_nodes", {"limit": 1})
            assert listing.structured_content["total"] == 1000, listing.structured_content["total"]
            client = conn.client

            async def node_ids(value: str) -> None:
                got = await client.complete(NODE, {"name": "node_id", "value": value})
                assert got.completion.values, value

            async def segments() -> None:
                got = await client.complete(LESION, {"name": "segment", "value": ""})
                assert got.completion.values

            times = await interleaved(
                {
                    "ref": lambda: conn.raw(),
                    "all": lambda: node_ids(""),
                    "fragment": lambda: node_ids("Series 99"),
                    "segment": segments,
                },
                n,
            )
    ref = p50(times["ref"])
    print(f"completion/complete on a 1,000-node scene ({n} calls each, interleaved)")
    print(row("reference: raw POST of server/discover (bare round trip)", times["ref"]))
    print(row("node_id, empty value (100 of 1,000 ids)", times["all"], ref))
    print(row("node_id, 'Series 99' (ids whose name matches)", times["fragment"], ref))
    print(row("segment of the demo segmentation", times["segment"], ref))
    worst = max(p50(times[k]) for k in ("all", "fragment", "segment"))
    print(f"  goal: under 20 ms at p50: {'met' if worst < 20 else 'MISSED'} (worst p50 {worst:.2f} ms)")


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 200))
