"""Scene benchmarks through `slicer-mcp` as users run it, each against a reference in the same run.

    python benchmarks/bench_scene.py [N]

Starts `slicer-mcp serve --headless --demo --transport http --port 0` (its own process, token
file under its own SLICER_MCP_HOME) and talks to it with the MCP Python SDK's streamable HTTP
client over one kept-alive connection. References are measured inside that server process, on
its scene thread (through execute_python, untimed setup), in the same run:

  list_scene_nodes limit 100 of 1,000 listed nodes (demo phantom + 998 small volumes)
      vs the in-process listing of the same page (scene/nodes.list_nodes)      target <= 2x
  capture_screenshot axial 512² with the demo's segmentation overlay (PNG)
      vs the bare slice-logic reslice + PNG of the same view                 target <= 1.5x
      (reference, in-process capture, SDK call and raw POST alternate call by call)
  measure_volume on 512³ uint8 labelmaps (3 labels; apart, sharing chunks, interleaved rows)
      vs the streaming read a.view(np.uint64).sum() of the node's voxels (one thread)
      one label target <= 1.5x, all labels <= 2x; a repeated call on an unchanged node ~ free
      (the count uses a helper thread per idle core: the benchmark prints how many it had)

Each figure is also shown through the SDK client without its output-schema check and as a raw
POST of the same tools/call, to tell server time from client time.
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any

from _server import Connection, SlicerMcpProcess, in_server_timer, interleaved, p50, row, timed

POPULATE = """
import numpy as np
from SlicerMCPLib.core.scene_backend import VolumeArray
from SlicerMCPLib.scene import data_io
voxels = np.zeros((2, 2, 2), np.int16)
for n in range(998):
    data_io.add_volume(app, VolumeArray(voxels, np.eye(4), f"Series {n}"))
"""
BACKEND = """
import gc
from SlicerMCPLib.backends.mrml import MrmlBackend
backend = next(o for o in gc.get_objects() if isinstance(o, MrmlBackend))
"""
LISTING_SETUP = """
from SlicerMCPLib.scene import nodes as _nodes
_cache, _index = _nodes.VolumeInfoCache(scene), _nodes.SceneIndex(scene)
"""
LISTING = "_nodes.list_nodes(scene, None, None, 0, {limit}, _cache, _index)"
SCREENSHOT_SETUP = (  # run once: execute_python keeps the names for the calls that follow
    BACKEND
    + """
from SlicerMCPLib.scene.rendering import _vtk_rgb, encode_png
_view = backend._headless_renderer().slice_view("axial")
_view.render(0.5, 512)
_k = [0]
"""
)
BARE_SLICE = """
_k[0] += 1
_view.logic.SetSliceOffset(_view.logic.GetSliceOffset() + (1.0 if _k[0] % 2 else -1.0))
_p = _view.logic.GetImageDataConnection().GetProducer()
_p.Update()
encode_png(_vtk_rgb(_p.GetOutputDataObject(0)))
"""
# 512³ uint8 labelmaps with labels 1, 2 and 7
LABELMAPS = {
    "apart (each label in its own slabs)": """
labels[0:150, 100:400, 100:400] = 1
labels[200:260, 200:260, 200:260] = 2
labels[400:500, 10:20, 10:500] = 7
""",
    "sharing chunks (nested boxes)": """
labels[100:400, 100:400, 50:450] = 1
labels[200:300, 200:260, 200:260] = 2
labels[150:350, 300:350, 100:200] = 7
""",
    "interleaved rows (every chunk holds all 3)": """
labels[:, 0::3, :] = 1
labels[:, 1::3, 100:300] = 2
labels[:, 2::3, 400:] = 7
""",
}
MAKE_LABELMAP = """
import numpy as np
from vtk.util import numpy_support
from SlicerMCPLib.core.scene_backend import VolumeArray
from SlicerMCPLib.scene import data_io
labels = np.zeros((512, 512, 512), np.uint8)
{fill}
node = data_io.add_volume(app, VolumeArray(labels, np.eye(4), "{name}", is_labelmap=True))
del labels
_stored = numpy_support.vtk_to_numpy(node.GetImageData().GetPointData().GetScalars())
import json
json.dumps(node.GetID())
"""

# how many threads a count takes now: the calling thread plus a helper per idle core
COUNTING_THREADS = """
import os, json
from SlicerMCPLib.scene import measure as _measure
json.dumps([_measure._workers(), os.getloadavg()[0]])
"""


def call_args(name: str, args: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "arguments": args}


async def bench_listing(conn: Connection, n: int) -> None:
    await conn.python(POPULATE)
    listing = await conn.call("list_scene_nodes", {"limit": 100})
    assert listing.structured_content["total"] == 1000, listing.structured_content["total"]
    ref = await conn.python(in_server_timer(LISTING.format(limit=100), n, LISTING_SETUP))
    no_check = Connection(conn.url, conn.token, validate=False)
    async with no_check:
        times = await interleaved(
            {
                "sdk": lambda: conn.call("list_scene_nodes", {"limit": 100}),
                "nocheck": lambda: no_check.call("list_scene_nodes", {"limit": 100}),
                "raw": lambda: conn.raw("tools/call", call_args("list_scene_nodes", {"limit": 100})),
            },
            n,
        )
    r = p50(ref)
    print("list_scene_nodes limit 100 of 1,000 nodes")
    print(row("reference: in-process listing on the scene thread", ref))
    print(row("SDK client (validates the output schema)", times["sdk"], r, 2))
    print(row("SDK client without the output-schema check", times["nocheck"], r))
    print(row("raw POST of the same tools/call (no client parsing)", times["raw"], r))
    published, pydantic_default = await schema_check_times(conn, listing.structured_content, n)
    print(row("client: jsonschema check of the result, published schema", published))
    print(row("client: the same check against pydantic's own schema", pydantic_default))


async def schema_check_times(
    conn: Connection, result: dict[str, Any], n: int
) -> tuple[list[float], list[float]]:
    """What the SDK client spends checking one 100-node result: the flat schema we publish vs pydantic's."""
    from jsonschema import exceptions
    from jsonschema.validators import validator_for
    from referencing import Registry

    from SlicerMCPLib.core.models import NodeList

    tools = {t.name: t for t in (await conn.client.list_tools()).tools}
    out = []
    for schema in (tools["list_scene_nodes"].output_schema, NodeList.model_json_schema()):
        validator = validator_for(schema)(schema, registry=Registry())

        async def check(v: Any = validator) -> None:
            assert exceptions.best_match(v.iter_errors(result)) is None

        out.append(await timed(check, n))
    return out[0], out[1]


async def bench_screenshot(conn: Connection, n: int) -> None:
    args = {"view_type": "axial", "size": 512}
    positions = iter(range(10**9))

    def shot_args() -> dict[str, Any]:  # alternate two positions: no render is a repeat of the one before
        return {**args, "scroll_position": 0.5 + 0.01 * (next(positions) % 2)}

    await conn.call("capture_screenshot", shot_args())
    await conn.python(SCREENSHOT_SETUP)
    inproc_body = "backend._headless_renderer().capture('axial', 0.5 + 0.01 * (_i % 2), None, 512)"
    for _ in range(2):  # warm up each path once more
        await conn.python(in_server_timer(BARE_SLICE, 1, warmup=0))
        await conn.python(in_server_timer(inproc_body, 1, warmup=0))
    # one of each per round, so the machine's load at that moment hits the reference and the calls alike
    times: dict[str, list[float]] = {"ref": [], "inproc": [], "sdk": [], "raw": []}
    for _ in range(n):
        times["ref"] += await conn.python(in_server_timer(BARE_SLICE, 1, warmup=0))
        times["inproc"] += await conn.python(in_server_timer(inproc_body, 1, warmup=0))
        t0 = time.perf_counter()
        await conn.call("capture_screenshot", shot_args())
        times["sdk"].append((time.perf_counter() - t0) * 1000)
        t0 = time.perf_counter()
        await conn.raw("tools/call", call_args("capture_screenshot", shot_args()))
        times["raw"].append((time.perf_counter() - t0) * 1000)
    r = p50(times["ref"])
    print("capture_screenshot axial 512² + 3-segment overlay (PNG)")
    print(row("reference: bare slice-logic reslice + PNG, in-process", times["ref"]))
    print(row("in-process capture (reslice + overlay + PNG)", times["inproc"], r))
    print(row("SDK client", times["sdk"], r, 1.5))
    print(row("raw POST of the same tools/call", times["raw"], r))


async def bench_measure(conn: Connection, n: int) -> None:
    print("measure_volume, 512³ uint8 labelmap, labels 1, 2, 7")
    for k, (layout, fill) in enumerate(LABELMAPS.items()):
        node_id = await conn.python(MAKE_LABELMAP.format(fill=fill, name=f"labels{k}"))
        touch = f"scene.GetNodeByID('{node_id}').GetImageData().Modified()"

        async def stream() -> Any:
            return await conn.python(in_server_timer("_stored.view(np.uint64).sum()", 1))

        reads: list[float] = []
        fresh: dict[str, list[float]] = {"all": [], "one": []}
        for _ in range(n):
            reads.extend(await stream())
            for key, segment in (("all", None), ("one", "2")):
                await conn.python(touch)  # voxels "changed": no cached answer
                t0 = asyncio.get_running_loop().time()
                await conn.call("measure_volume", {"node_id": node_id, "segment": segment})
                fresh[key].append((asyncio.get_running_loop().time() - t0) * 1000)
        repeat = await interleaved(
            {"r": lambda nid=node_id: conn.call("measure_volume", {"node_id": nid})}, n
        )
        result = await conn.call("measure_volume", {"node_id": node_id})
        counts = {s["label_value"]: s["voxel_count"] for s in result.structured_content["segments"]}
        threads, load = await conn.python(COUNTING_THREADS)
        r = p50(reads)
        print(f" layout: {layout}; counts {counts}")
        print(f"  counting threads now: {threads} (the caller + helpers; 1-minute load average {load:.1f})")
        print(row("reference: a.view(np.uint64).sum() of the node's voxels", reads))
        print(row("all labels (voxels changed before each call)", fresh["all"], r, 2))
        print(row("one label (label 2)", fresh["one"], r, 1.5))
        print(row("repeated call, node unchanged", repeat["r"], r))
        await conn.python(f"scene.RemoveNode(scene.GetNodeByID('{node_id}'))")


async def main(n: int) -> None:
    with SlicerMcpProcess("--demo") as server:
        async with Connection(server.url, server.token) as conn:
            print(f"slicer-mcp headless over streamable HTTP, SDK client, kept-alive connection; n={n}")
            await bench_listing(conn, n)
            await bench_screenshot(conn, n)
            await bench_measure(conn, max(5, n // 4))


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 50))
