"""One tool-level suite, run through `slicer-mcp` over stdio against every backend.

proxy: the bridge forwards to the catalog served over HTTP in this process (the stand-in for
the SlicerMCP module, found through the endpoint file); webserver: the bridge's WebServer
backend against the test WebServer (Testing/webserver_peer); headless: the bridge's own scene.
Every backend must give the same answers to the same calls.
"""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path
from typing import Any

import numpy as np

from fixtures.bridge import BridgeTarget, bridge_client
from fixtures.scene import LABEL_COUNTS, LABEL_SPACING, make_labelmap, make_phantom_volume

SCENE_TOOLS = {
    "list_scene_nodes",
    "get_node",
    "capture_screenshot",
    "measure_volume",
    "list_sample_data",
    "load_sample_data",
    "load_volume",
    "set_layout",
    "execute_python",
    "clear_scene",
}


def png_pixels(png: bytes, tmp_path: Path) -> np.ndarray:
    import SimpleITK as sitk

    path = tmp_path / "shot.png"
    path.write_bytes(png)
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


def ok(result: Any) -> dict[str, Any]:
    assert not result.is_error, result.content[0].text if result.content else result
    return result.structured_content


def error_code(result: Any) -> str:
    assert result.is_error, result.structured_content
    return json.loads(result.content[0].text)["error"]["code"]


def test_same_tools_same_answers(bridge_target: BridgeTarget, tmp_path: Path) -> None:
    volume_file = make_phantom_volume(tmp_path)
    label_file = make_labelmap(tmp_path)

    async def main() -> None:
        async with bridge_client(bridge_target.args, bridge_target.env) as client:
            names = {t.name for t in (await client.list_tools()).tools}
            assert SCENE_TOOLS <= names
            ok(await client.call_tool("clear_scene", {}))
            empty = ok(await client.call_tool("list_scene_nodes", {"class_name": "vtkMRMLVolumeNode"}))
            assert empty["total"] == 0

            loaded = ok(await client.call_tool("load_volume", {"path": str(volume_file), "name": "Phantom"}))
            assert [n["name"] for n in loaded["nodes"]] == ["Phantom"]
            volume = loaded["nodes"][0]
            assert volume["class_name"] == "vtkMRMLScalarVolumeNode"

            listing = ok(await client.call_tool("list_scene_nodes", {"name": "phant"}))
            assert [n["id"] for n in listing["nodes"]] == [volume["id"]]
            geometry = listing["nodes"][0]["volume"]
            image_shape = volume["volume"]["dimensions"]
            assert geometry["dimensions"] == image_shape
            assert all(s > 0 for s in geometry["spacing"])

            details = ok(await client.call_tool("get_node", {"node_id": volume["id"]}))
            assert details["name"] == "Phantom" and details["class_name"] == "vtkMRMLScalarVolumeNode"
            assert details["references"].get("display"), details["references"]

            missing = await client.call_tool("get_node", {"node_id": "vtkMRMLScalarVolumeNode999"})
            assert error_code(missing) == "INVALID_NODE_ID"

            shot = await client.call_tool(
                "capture_screenshot", {"view_type": "axial", "scroll_position": 0.5}
            )
            info = ok(shot)
            image = next(c for c in shot.content if c.type == "image")
            assert image.mime_type == "image/png"
            pixels = png_pixels(base64.b64decode(image.data), tmp_path)
            assert pixels.shape[:2] == (info["height"], info["width"])
            assert len(np.unique(pixels)) > 2, "the axial view shows the phantom, not a blank image"

            labels = ok(
                await client.call_tool(
                    "load_volume", {"path": str(label_file), "labelmap": True, "name": "Labels"}
                )
            )
            label_node = labels["nodes"][0]
            assert label_node["class_name"] == "vtkMRMLLabelMapVolumeNode"
            measured = ok(await client.call_tool("measure_volume", {"node_id": label_node["id"]}))
            counts = {s["label_value"]: s["voxel_count"] for s in measured["segments"]}
            assert counts == LABEL_COUNTS
            voxel_mm3 = float(np.prod(LABEL_SPACING))
            assert measured["voxel_volume_mm3"] == voxel_mm3
            by_label = {s["label_value"]: s for s in measured["segments"]}
            assert by_label[1]["volume_mm3"] == 1000 * voxel_mm3 and by_label[1]["volume_ml"] == 1.0
            one = ok(await client.call_tool("measure_volume", {"node_id": label_node["id"], "segment": "2"}))
            assert [s["voxel_count"] for s in one["segments"]] == [LABEL_COUNTS[2]]

            python = ok(await client.call_tool("execute_python", {"code": "x = 6\nprint('hi')\nx * 7"}))
            assert python["success"] and python["result"] == "42" and python["stdout"] == "hi\n"
            again = ok(await client.call_tool("execute_python", {"code": "x"}))
            assert again["result"] == "6", "the namespace is kept for the client session"
            failed = ok(await client.call_tool("execute_python", {"code": "1/0"}))
            assert not failed["success"] and failed["error"].startswith("ZeroDivisionError")

            layout = ok(await client.call_tool("set_layout", {"layout": "FourUp"}))
            assert layout["layout"] == "FourUp"

            status = await client.read_resource("slicer://status")
            expected_kind = {"proxy": "headless", "webserver": "webserver", "headless": "headless"}
            assert json.loads(status.contents[0].text)["backend"] == expected_kind[bridge_target.backend]

            cleared = ok(await client.call_tool("clear_scene", {}))
            assert cleared["removed_nodes"] >= 2
            after = ok(await client.call_tool("list_scene_nodes", {"class_name": "vtkMRMLVolumeNode"}))
            assert after["total"] == 0

    asyncio.run(main())
