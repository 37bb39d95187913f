"""The analysis tools through `slicer-mcp` over stdio: the same answers from the module's server
(proxy) and the headless scene; a coded NOT_SUPPORTED from Slicer's WebServer, which cannot run them."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import numpy as np

from fixtures.analysis import sphere_volume
from fixtures.bridge import BridgeTarget, bridge_client


def test_threshold_statistics_and_undo_through_the_bridge(
    bridge_target: BridgeTarget, tmp_path: Path
) -> None:
    path, image, _ = sphere_volume(tmp_path)
    expected = int(np.count_nonzero((image >= 50) & (image <= 1000)))

    async def main() -> list[Any]:
        async with bridge_client(bridge_target.args, bridge_target.env) as client:
            await client.call_tool("clear_scene", {})
            loaded = await client.call_tool("load_volume", {"path": str(path)})
            volume_id = loaded.structured_content["nodes"][0]["id"]
            created = await client.call_tool(
                "create_segmentation", {"volume_id": volume_id, "segments": ["lesion"]}
            )
            if bridge_target.backend == "webserver":
                return [created]
            seg_id = created.structured_content["segmentation_id"]
            args = {"segmentation_id": seg_id, "segment": "lesion", "lower": 50, "upper": 1000}
            return [
                created,
                await client.call_tool("segment_threshold", args),
                await client.call_tool("segment_statistics", {"segmentation_id": seg_id, "surface": False}),
                await client.call_tool("undo_last_edit", {}),
                await client.call_tool("measure_volume", {"node_id": seg_id}),
            ]

    results = asyncio.run(main())
    if bridge_target.backend == "webserver":
        (created,) = results
        assert created.is_error
        error = json.loads(created.content[0].text)["error"]
        assert error["code"] == "NOT_SUPPORTED" and "--headless" in error["message"]
        return
    for result in results:
        assert not result.is_error, result.content[0].text
    _, threshold, stats, undo, measured = (r.structured_content for r in results)
    assert threshold["changes"][0]["voxels_after"] == expected
    assert stats["segments"][0]["voxel_count"] == expected
    assert undo["undone"] == "segment_threshold"
    assert measured["segments"][0]["voxel_count"] == 0  # the segment is empty again
