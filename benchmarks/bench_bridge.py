"""What the stdio bridge costs: tool calls through `slicer-mcp` per backend, against the same server
reached directly over HTTP.

    python benchmarks/bench_bridge.py [--n 30]

Every server runs as users run it, in its own process. "Slicer" is `slicer-mcp serve --headless
--transport http --port 0` (its token file in its own SLICER_MCP_HOME, announced in the endpoint
file there, as the SlicerMCP module inside Slicer does). Reference (same run): the MCP SDK's
streamable HTTP client talking to it directly over one kept-alive connection. Then an SDK client
over stdio to `slicer-mcp --backend proxy` (which forwards to that server), `--backend webserver`
(the test WebServer, Testing/webserver_peer, in its own process) and `--backend headless` (its
own scene). Scene: 999 text nodes + one 256x256x64 volume (1,000 listed nodes). Calls:
list_scene_nodes (limit 100 and 1000) and an axial capture_screenshot. Prints p50/p99 in ms and
as ratios to the direct HTTP call; the in-process time of the same work in the server (through
execute_python, untimed setup) explains the rest.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "Testing"))
sys.path.insert(0, str(ROOT / "benchmarks"))
os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")

POPULATE = """
sc = globals().get("scene") or slicer.mrmlScene
for i in range(999):
    sc.AddNewNodeByClass("vtkMRMLTextNode", "note %d" % i)
"""
CALLS: dict[str, tuple[str, dict[str, Any]]] = {
    "list_scene_nodes (100 of 1,000 nodes)": ("list_scene_nodes", {"limit": 100}),
    "list_scene_nodes (1,000 nodes)": ("list_scene_nodes", {"limit": 1000}),
    "axial screenshot": ("capture_screenshot", {"view_type": "axial", "scroll_position": 0.5}),
}


def write_volume(folder: Path) -> Path:
    import numpy as np
    import SimpleITK as sitk

    k, j, i = np.mgrid[0:64, 0:256, 0:256]
    voxels = (((i - 128) ** 2 + (j - 128) ** 2 + 4 * (k - 32) ** 2) < 90**2).astype(np.int16) * 400
    image = sitk.GetImageFromArray(voxels)
    image.SetSpacing((0.9, 0.9, 2.5))
    path = folder / "bench.nrrd"
    sitk.WriteImage(image, str(path))
    return path


async def populate(client: Any, volume: Path) -> None:
    await client.call_tool("clear_scene", {})
    loaded = await client.call_tool("load_volume", {"path": str(volume)})
    assert not loaded.is_error, loaded.content
    ran = await client.call_tool("execute_python", {"code": POPULATE})
    assert not ran.is_error and ran.structured_content["success"], ran.content
    listing = await client.call_tool("list_scene_nodes", {"limit": 1000})
    assert listing.structured_content["total"] >= 1000, listing.structured_content["total"]


async def measure(client: Any, n: int) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    for label, (tool, args) in CALLS.items():
        await client.call_tool(tool, args)  # warm-up (first render, caches)
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            result = await client.call_tool(tool, args)
            times.append(time.perf_counter() - t0)
            assert not result.is_error, result.content
        out[label] = times
    return out


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def run_case(make_client: Callable[[], Any], volume: Path, n: int) -> dict[str, list[float]]:
    async def main() -> dict[str, list[float]]:
        async with make_client() as client:
            await populate(client, volume)
            return await measure(client, n)

    return asyncio.run(main())


IN_PROCESS = {
    "list_scene_nodes (100 of 1,000 nodes)": "_nodes.list_nodes(scene, None, None, 0, 100, _cache, _index)",
    "list_scene_nodes (1,000 nodes)": "_nodes.list_nodes(scene, None, None, 0, 1000, _cache, _index)",
    "axial screenshot": "backend._headless_renderer().capture('axial', 0.5, None, None)",
}
IN_PROCESS_SETUP = """
import gc
from SlicerMCPLib.backends.mrml import MrmlBackend
from SlicerMCPLib.scene import nodes as _nodes
backend = next(o for o in gc.get_objects() if isinstance(o, MrmlBackend))
_cache, _index = _nodes.VolumeInfoCache(scene), _nodes.SceneIndex(scene)
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=30, help="calls per measurement")
    args = parser.parse_args()

    from _server import Connection, SlicerMcpProcess, in_server_timer

    from fixtures.bridge import bridge_client, bridge_env, start_peer, stop_peer

    tmp = Path(tempfile.mkdtemp(prefix="bench-bridge-"))
    volume = write_volume(tmp)
    peer = start_peer(tmp, enable_exec=True)
    results: dict[str, dict[str, list[float]]] = {}
    in_process: dict[str, list[float]] = {}
    try:
        with SlicerMcpProcess() as slicer:
            # announce it as the SlicerMCP module inside Slicer does: the proxy finds it this way
            os.environ["SLICER_MCP_HOME"] = str(slicer.home)
            from SlicerMCPLib.serving.endpoint import write_endpoint

            port = int(slicer.url.rsplit(":", 1)[1].split("/")[0])
            write_endpoint(
                slicer.url, port, slicer.home / "token", pid=slicer.proc.pid if slicer.proc else None
            )
            env = bridge_env(SLICER_MCP_HOME=str(slicer.home), SLICER_MCP_ALLOW_EXECUTE_PYTHON="true")

            async def direct() -> dict[str, list[float]]:
                async with Connection(slicer.url, slicer.token) as conn:
                    await populate(conn.client, volume)
                    out = await measure(conn.client, args.n)
                    for label, body in IN_PROCESS.items():
                        in_process[label] = await conn.python(in_server_timer(body, args.n, IN_PROCESS_SETUP))
                    return out

            results["direct HTTP"] = asyncio.run(direct())
            results["proxy"] = run_case(lambda: bridge_client(["--backend", "proxy"], env), volume, args.n)
            results["webserver"] = run_case(
                lambda: bridge_client(["--backend", "webserver", "--webserver-url", peer.url], env),
                volume,
                args.n,
            )
            results["headless"] = run_case(
                lambda: bridge_client(["--backend", "headless"], env), volume, args.n
            )
    finally:
        stop_peer(peer)

    print(f"n={args.n} calls each; p50 / p99 in ms; ratio = backend / direct HTTP (same percentile)")
    for label in CALLS:
        ref = results["direct HTTP"][label]
        ref50, ref99 = pct(ref, 0.5), pct(ref, 0.99)
        print(f"\n{label}")
        print(f"  {'backend':<12} {'p50 ms':>9} {'p99 ms':>9} {'p50 x':>8} {'p99 x':>8}")
        for name, per_call in results.items():
            v = per_call[label]
            p50, p99 = pct(v, 0.5), pct(v, 0.99)
            print(f"  {name:<12} {p50 * 1e3:9.1f} {p99 * 1e3:9.1f} {p50 / ref50:8.2f} {p99 / ref99:8.2f}")
        inner = in_process[label]
        print(f"  (in the server's process, no MCP: p50 {statistics.median(inner):.1f} ms)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
