"""Analysis benchmark through `slicer-mcp` as users run it, against numpy in the same run.

    python benchmarks/bench_analysis.py [N]

Starts `slicer-mcp serve --headless --transport http --port 0` and talks to it with the MCP Python
SDK's streamable HTTP client over one kept-alive connection. The volume is a 512 x 512 x 300 int16
"CT" (air, a body of soft tissue, bone and three lesions, noise) made in the server. Timed, call by
call alternated:

  segment_threshold (lesion range) + segment_statistics (all segments, no surface)
      vs numpy in the server process on the same array: the same mask, its count, and the same
      intensity statistics (mean, std, min, max, median) and centroid               target <= 3x
  the same with the closed-surface area, for scale (Slicer builds the surface mesh each time)

The reference runs on the server's scene thread through execute_python (untimed setup).
"""

from __future__ import annotations

import asyncio
import sys

from _server import Connection, SlicerMcpProcess, in_server_timer, interleaved, p50, row

LOWER, UPPER = 150.0, 400.0
MAKE_CT = """
import numpy as np
from SlicerMCPLib.core.scene_backend import VolumeArray
from SlicerMCPLib.scene import data_io
rng = np.random.default_rng(3)
k, j, i = np.ogrid[:300, :512, :512]
ct = np.full((300, 512, 512), -1000, np.int16)
ct[:, (((i - 256) ** 2 + (j - 256) ** 2) < 200 ** 2)[0]] = 40
ct[:, (((i - 256) ** 2 + (j - 400) ** 2) < 20 ** 2)[0]] = 900
for ci, cj, ck, r in ((200, 220, 150, 25), (320, 300, 90, 12), (260, 180, 220, 8)):
    ct[((i - ci) ** 2 + (j - cj) ** 2 + (k - ck) ** 2) < r ** 2] = 250
ct += rng.integers(-20, 21, ct.shape, dtype=np.int16)
m = np.diag([0.7, 0.7, 1.25, 1.0])
node = data_io.add_volume(app, VolumeArray(ct, m, "bench CT"))
del ct
import json
json.dumps(node.GetID())
"""
REFERENCE_SETUP = """
from SlicerMCPLib.scene import labelmaps
_a = labelmaps.voxels(labelmaps.volume_image(scene.GetNodeByID({volume_id!r})))
"""
REFERENCE = f"""
_m = (_a >= {LOWER}) & (_a <= {UPPER})
_v = _a[_m].astype(np.float64)
_box = [np.flatnonzero(_m.any(axis=ax))[[0, -1]] for ax in ((1, 2), (0, 2), (0, 1))]
(int(_m.sum()), _v.mean(), _v.std(), _v.min(), _v.max(), np.median(_v), _box)
"""


async def main(n: int) -> None:
    with SlicerMcpProcess() as server:
        async with Connection(server.url, server.token) as conn:
            print(f"slicer-mcp headless over streamable HTTP, SDK client, kept-alive connection; n={n}")
            volume_id = await conn.python(MAKE_CT)
            created = await conn.call("create_segmentation", {"volume_id": volume_id, "segments": ["lesion"]})
            seg_id = created.structured_content["segmentation_id"]
            threshold = {"segmentation_id": seg_id, "segment": "lesion", "lower": LOWER, "upper": UPPER}
            stats = {"segmentation_id": seg_id, "surface": False}

            async def tools() -> None:
                await conn.call("segment_threshold", threshold)
                await conn.call("segment_statistics", stats)

            async def reference() -> None:
                reference.ms.extend(  # type: ignore[attr-defined]
                    await conn.python(
                        in_server_timer(REFERENCE, 1, REFERENCE_SETUP.format(volume_id=volume_id))
                    )
                )

            reference.ms = []  # type: ignore[attr-defined]
            times = await interleaved({"tools": tools, "ref": reference}, n, warmup=1)
            ref = p50(reference.ms)  # type: ignore[attr-defined]
            result = (await conn.call("segment_statistics", stats)).structured_content["segments"][0]
            print(
                f" lesion voxels {result['voxel_count']}, mean {result['mean']:.1f} HU, {result['volume_ml']:.2f} mL"
            )
            print(row("reference: numpy mask + count + mean/std/min/max/median + box", reference.ms))  # type: ignore[attr-defined]
            print(row("segment_threshold + segment_statistics (SDK client, HTTP)", times["tools"], ref, 3))

            async def with_surface() -> None:  # a threshold first, so the surface is built anew each time
                await conn.call("segment_threshold", threshold)
                await conn.call("segment_statistics", {"segmentation_id": seg_id, "surface": True})

            surface = await interleaved({"s": with_surface}, max(3, n // 3), warmup=1)
            print(row("the same with the surface area (closed surface built each time)", surface["s"], ref))


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 10))
