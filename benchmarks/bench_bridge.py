"""What the stdio bridge costs: tool calls through `slicer-mcp` per backend vs. the in-process call.

    python benchmarks/bench_bridge.py [--n 30]

Scene: 999 text nodes + one 256x256x64 volume (1,000 listed nodes). Calls: list_scene_nodes
(limit 1000) and an axial capture_screenshot. Reference: the same server in this process
through the SDK's in-memory client. Then the same calls by an SDK client over stdio to
`slicer-mcp --backend proxy` (to that same server over HTTP, found by its endpoint file),
`--backend webserver` (the test WebServer, Testing/webserver_peer, in its own process) and
`--backend headless` (its own scene). Prints p50/p99 in ms and as ratios to the reference.
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
os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")

POPULATE = """
sc = globals().get("scene") or slicer.mrmlScene
for i in range(999):
    sc.AddNewNodeByClass("vtkMRMLTextNode", "note %d" % i)
"""
CALLS: dict[str, tuple[str, dict[str, Any]]] = {
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=30, help="calls per measurement")
    args = parser.parse_args()

    from mcp import Client

    from fixtures.bridge import bridge_client, bridge_env, start_peer, stop_peer
    from SlicerMCPLib.core.config import Config, ServerSettings
    from SlicerMCPLib.core.gateway import SceneThread
    from SlicerMCPLib.core.services import Services
    from SlicerMCPLib.hosts.headless import create_headless_backend
    from SlicerMCPLib.serving.auth import load_or_create_token, token_path
    from SlicerMCPLib.serving.endpoint import remove_endpoint, write_endpoint
    from SlicerMCPLib.serving.http_transport import mcp_http_server
    from SlicerMCPLib.serving.server import build_server

    tmp = Path(tempfile.mkdtemp(prefix="bench-bridge-"))
    os.environ["SLICER_MCP_HOME"] = str(tmp / "home")
    os.environ["SLICER_MCP_ALLOW_EXECUTE_PYTHON"] = "true"
    volume = write_volume(tmp)
    config = Config()
    config.allow.execute_python = True
    scene = SceneThread().start()
    backend = scene.gateway.call(lambda: create_headless_backend(scene.gateway, config), 120)
    server = build_server(Services(config=config, backend=backend))
    settings = ServerSettings(port=0)
    http = mcp_http_server(server, settings, load_or_create_token(token_path(settings))).start()
    write_endpoint(http.url, http.port or 0, token_path(settings))
    peer = start_peer(tmp, enable_exec=True)
    env = bridge_env()
    results: dict[str, dict[str, list[float]]] = {}
    try:
        results["in-process"] = run_case(lambda: Client(server), volume, args.n)
        results["proxy"] = run_case(lambda: bridge_client(["--backend", "proxy"], env), volume, args.n)
        results["webserver"] = run_case(
            lambda: bridge_client(["--backend", "webserver", "--webserver-url", peer.url], env),
            volume,
            args.n,
        )
        results["headless"] = run_case(lambda: bridge_client(["--backend", "headless"], env), volume, args.n)
    finally:
        stop_peer(peer)
        remove_endpoint()
        http.stop()
        scene.stop()

    print(f"n={args.n} calls each; p50 / p99 in ms; ratio = backend / in-process (same percentile)")
    for label in CALLS:
        ref = results["in-process"][label]
        ref50, ref99 = pct(ref, 0.5), pct(ref, 0.99)
        print(f"\n{label}")
        print(f"  {'backend':<11} {'p50 ms':>9} {'p99 ms':>9} {'p50 x':>8} {'p99 x':>8}")
        for name, per_call in results.items():
            v = per_call[label]
            p50, p99 = pct(v, 0.5), pct(v, 0.99)
            print(f"  {name:<11} {p50 * 1e3:9.1f} {p99 * 1e3:9.1f} {p50 / ref50:8.2f} {p99 / ref99:8.2f}")
        print(f"  (mean in-process {statistics.mean(ref) * 1e3:.1f} ms)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
