"""Scene tools and resources through the SDK's in-memory client, on a real headless scene."""

from __future__ import annotations

import asyncio
import json

import pytest
from mcp import Client

from fixtures.scene import (
    LABEL_COUNTS,
    SEGMENT_NAMES,
    call_tool,
    call_tools,
    error_of,
    make_labelmap,
    make_phantom_volume,
    make_segmentation_file,
    phantom_arrays,
    scene_busy,
)
from SlicerMCPLib.core.errors import ErrorCode


def load(server, path, **kw):
    result = call_tool(server, "load_volume", {"path": str(path), **kw})
    assert not result.is_error, result.content[0].text
    return result.structured_content["nodes"]


def marker_centroid_ras(array, ijk_to_ras):
    """RAS centre of the phantom's bright left-side marker (readers may reorder axes, geometry must hold)."""
    import numpy as np

    k, j, i = np.nonzero(array == array.max())
    ijk = np.stack([i, j, k, np.ones_like(i)]).astype(float)
    return (ijk_to_ras @ ijk)[:3].mean(axis=1)


@pytest.mark.parametrize("suffix", [".nrrd", ".nii.gz", ".mha"])
def test_load_volume_formats_keep_geometry(mcp_server, tmp_path, suffix, clean_backend) -> None:
    path = make_phantom_volume(tmp_path, suffix)
    (node,) = load(mcp_server, path)
    image, _, ijk_to_ras = phantom_arrays()
    assert node["class_name"] == "vtkMRMLScalarVolumeNode"
    assert node["name"].startswith("phantom")  # made unique like Slicer does
    vol = node["volume"]
    assert tuple(vol["dimensions"]) == image.shape[::-1]
    assert vol["spacing"] == pytest.approx([2.0, 2.0, 2.5])
    assert vol["scalar_range"] == pytest.approx([0, 1500])
    loaded = asyncio.run(clean_backend.export_volume(node["id"]))
    expected = marker_centroid_ras(image, ijk_to_ras)
    assert expected[0] < -50  # the marker is on the patient's left (RAS x < 0)
    assert marker_centroid_ras(loaded.array, loaded.ijk_to_ras) == pytest.approx(expected, abs=1e-3)


def test_load_labelmap_and_measure_labels(mcp_server, tmp_path) -> None:
    (node,) = load(mcp_server, make_labelmap(tmp_path), labelmap=True, name="organs")
    assert node["class_name"] == "vtkMRMLLabelMapVolumeNode" and node["volume"]["is_labelmap"]
    assert node["name"] == "organs"
    whole, one, absent = call_tools(
        mcp_server,
        [
            ("measure_volume", {"node_id": node["id"]}),
            ("measure_volume", {"node_id": node["id"], "segment": "2"}),
            ("measure_volume", {"node_id": node["id"], "segment": "9"}),
        ],
    )
    m = whole.structured_content
    assert m["voxel_volume_mm3"] == pytest.approx(1.0)
    assert {s["label_value"]: s["voxel_count"] for s in m["segments"]} == LABEL_COUNTS
    assert {s["label_value"]: s["volume_ml"] for s in m["segments"]} == pytest.approx(
        {k: v / 1000 for k, v in LABEL_COUNTS.items()}
    )
    assert [s["voxel_count"] for s in one.structured_content["segments"]] == [240]
    assert one.structured_content["segments"][0]["volume_mm3"] == pytest.approx(240.0)
    assert absent.structured_content["segments"][0]["voxel_count"] == 0


def test_load_seg_nrrd_as_segmentation_and_measure(mcp_server, tmp_path, scene_thread, clean_backend) -> None:
    path = make_segmentation_file(tmp_path, scene_thread, clean_backend)
    (node,) = load(mcp_server, path)
    assert node["class_name"] == "vtkMRMLSegmentationNode"
    assert node["name"] == "organs"
    assert sorted(s["name"] for s in node["segments"]) == sorted(SEGMENT_NAMES.values())
    whole, by_name, by_id, bad = call_tools(
        mcp_server,
        [
            ("measure_volume", {"node_id": node["id"]}),
            ("measure_volume", {"node_id": node["id"], "segment": "spleen"}),
            ("measure_volume", {"node_id": node["id"], "segment": node["segments"][0]["id"]}),
            ("measure_volume", {"node_id": node["id"], "segment": "Heart"}),
        ],
    )
    counts = {s["name"]: s["voxel_count"] for s in whole.structured_content["segments"]}
    assert counts == {SEGMENT_NAMES[k]: v for k, v in LABEL_COUNTS.items()}
    assert whole.structured_content["voxel_volume_mm3"] == pytest.approx(1.0)
    assert by_name.structured_content["segments"][0]["voxel_count"] == 240
    assert by_name.structured_content["segments"][0]["volume_ml"] == pytest.approx(0.24)
    assert len(by_id.structured_content["segments"]) == 1
    body = error_of(bad)
    assert body["code"] == ErrorCode.INVALID_PARAMETER and "Spleen" in body["message"]


def test_load_failure_leaves_scene_unchanged(mcp_server, tmp_path, clean_backend) -> None:
    bad = tmp_path / "broken.nrrd"
    bad.write_bytes(b"NRRD0004\ntype: garbage\n\n")
    before = call_tool(mcp_server, "list_scene_nodes", {}).structured_content["total"]
    body = error_of(call_tool(mcp_server, "load_volume", {"path": str(bad)}))
    assert body["code"] == ErrorCode.LOAD_FAILED
    assert call_tool(mcp_server, "list_scene_nodes", {}).structured_content["total"] == before
    for args in (
        {"path": "relative.nrrd"},
        {"path": str(tmp_path / "missing.nrrd")},
        {"path": "~no-such-user-here/x.nrrd"},  # pathlib raises RuntimeError for an unknown ~user
    ):
        assert error_of(call_tool(mcp_server, "load_volume", args))["code"] == ErrorCode.INVALID_PARAMETER


def test_list_filters_and_paging(mcp_server, tmp_path) -> None:
    volume_path = make_phantom_volume(tmp_path)
    for n in range(5):
        load(mcp_server, volume_path, name=f"Series {n}")
    load(mcp_server, make_labelmap(tmp_path), labelmap=True, name="Mask")
    r = call_tools(
        mcp_server,
        [
            ("list_scene_nodes", {}),
            ("list_scene_nodes", {"class_name": "vtkMRMLScalarVolumeNode"}),
            ("list_scene_nodes", {"class_name": "vtkMRMLLabelMapVolumeNode"}),
            (
                "list_scene_nodes",
                {"class_name": "vtkMRMLVolumeNode", "name": "series", "offset": 2, "limit": 2},
            ),
            ("list_scene_nodes", {"name": "SERIES 4"}),
            ("list_scene_nodes", {"class_name": "vtkMRMLColorTableNode", "limit": 1}),
            ("list_scene_nodes", {"class_name": "NoSuchClass"}),
        ],
    )
    everything = r[0].structured_content
    assert everything["total"] == 6 and not everything["has_more"], [
        (n["id"], n["name"]) for n in everything["nodes"]
    ]
    assert {n["class_name"] for n in everything["nodes"]} == {
        "vtkMRMLScalarVolumeNode",
        "vtkMRMLLabelMapVolumeNode",
    }
    # labelmaps are scalar volume subclasses: the base-class filter includes them
    assert r[1].structured_content["total"] == 6
    assert r[2].structured_content["total"] == 1
    page = r[3].structured_content
    assert (
        page["total"] == 5
        and [n["name"] for n in page["nodes"]] == ["Series 2", "Series 3"]
        and page["has_more"]
    )
    assert [n["name"] for n in r[4].structured_content["nodes"]] == ["Series 4"]
    colors = r[5].structured_content
    assert colors["total"] > 1 and len(colors["nodes"]) == 1 and colors["has_more"]
    assert r[6].structured_content["total"] == 0
    node = everything["nodes"][0]
    assert node["visible"] is True and node["volume"]["dimensions"] == [96, 96, 64]


def test_get_node_details_and_errors(mcp_server, tmp_path) -> None:
    (node,) = load(mcp_server, make_phantom_volume(tmp_path))
    (seg,) = load(mcp_server, make_labelmap(tmp_path), labelmap=True)
    details, unknown, empty_id, wrong_class = call_tools(
        mcp_server,
        [
            ("get_node", {"node_id": node["id"]}),
            ("get_node", {"node_id": "vtkMRMLScalarVolumeNode999"}),
            ("get_node", {"node_id": ""}),
            ("measure_volume", {"node_id": node["id"]}),
        ],
    )
    d = details.structured_content
    assert d["id"] == node["id"] and d["storage_file"].endswith("phantom.nrrd")
    assert abs(d["properties"]["ijk_to_ras"][2][2]) == pytest.approx(2.5)
    assert d["properties"]["display"]["window"] > 0
    assert "display" in d["references"] and "storage" in d["references"]
    body = error_of(unknown)
    assert body["code"] == ErrorCode.INVALID_NODE_ID and "list_scene_nodes" in body["message"]
    assert error_of(empty_id)["code"] == ErrorCode.INVALID_NODE_ID  # not a node id, as an unknown one
    body = error_of(wrong_class)
    assert body["code"] == ErrorCode.INVALID_PARAMETER and "vtkMRMLScalarVolumeNode" in body["message"]
    assert seg["id"] != node["id"]


def test_set_layout_headless_reports_what_it_cannot_do(mcp_server, run_on_scene, clean_backend) -> None:
    ok, bad = call_tools(
        mcp_server,
        [("set_layout", {"layout": "OneUp3D", "gui_mode": "viewers"}), ("set_layout", {"layout": "Bogus"})],
    )
    r = ok.structured_content
    assert r["applied"] is False and r["layout"] == "OneUp3D"
    assert any("gui_mode" in n for n in r["notes"])
    import slicer

    arrangement = run_on_scene(lambda: clean_backend.app.layout_node.GetViewArrangement())
    assert arrangement == slicer.vtkMRMLLayoutNode.SlicerLayoutOneUp3DView
    assert error_of(bad)["code"] == ErrorCode.INVALID_PARAMETER
    call_tool(mcp_server, "set_layout", {"layout": "FourUp"})


def test_clear_scene_removes_data_keeps_application_nodes(
    mcp_server, tmp_path, run_on_scene, clean_backend
) -> None:
    load(mcp_server, make_phantom_volume(tmp_path))
    load(mcp_server, make_labelmap(tmp_path), labelmap=True)
    colors_before = run_on_scene(lambda: clean_backend.scene.GetNumberOfNodesByClass("vtkMRMLColorNode"))
    cleared = call_tool(mcp_server, "clear_scene").structured_content
    assert cleared["removed_nodes"] == 2
    assert call_tool(mcp_server, "list_scene_nodes").structured_content["total"] == 0
    assert (
        run_on_scene(lambda: clean_backend.scene.GetNumberOfNodesByClass("vtkMRMLColorNode")) == colors_before
    )
    assert run_on_scene(lambda: clean_backend.scene.GetNumberOfNodesByClass("vtkMRMLVolumeDisplayNode")) == 0
    assert call_tool(mcp_server, "clear_scene").structured_content["removed_nodes"] == 0


def test_resources(mcp_server, tmp_path) -> None:
    (node,) = load(mcp_server, make_phantom_volume(tmp_path))

    async def main():
        async with Client(mcp_server) as client:
            out = {}
            for uri in (
                "slicer://status",
                "slicer://scene",
                "slicer://volumes",
                f"slicer://node/{node['id']}",
            ):
                out[uri] = json.loads((await client.read_resource(uri)).contents[0].text)
            try:
                await client.read_resource("slicer://node/vtkMRMLNoSuchNode7")
                out["missing"] = None
            except Exception as exc:  # the SDK raises the server's resource error
                out["missing"] = str(exc)
            return out

    out = asyncio.run(main())
    status = out["slicer://status"]
    assert status["backend"] == "headless" and status["volume_count"] == 1 and status["gui"] is False
    assert status["slicer_version"].startswith("5.")
    assert status["rendering_3d"] is True
    assert [n["id"] for n in out["slicer://scene"]["nodes"]] == [node["id"]]
    assert out["slicer://volumes"]["total"] == 1
    assert out[f"slicer://node/{node['id']}"]["properties"]["ijk_to_ras"]
    assert out["missing"] and "INVALID_NODE_ID" in out["missing"]


def test_add_and_export_volume_round_trip(clean_backend) -> None:
    import numpy as np

    from SlicerMCPLib.core.errors import InvalidParameter
    from SlicerMCPLib.core.scene_backend import VolumeArray

    image, _, ijk_to_ras = phantom_arrays()

    async def main():
        summary = await clean_backend.add_volume(
            VolumeArray(image, ijk_to_ras, "CT", {"DICOM.instanceUIDs": "1.2.3"})
        )
        back = await clean_backend.export_volume(summary.id)
        with pytest.raises(InvalidParameter):
            await clean_backend.add_volume(VolumeArray(image[0], ijk_to_ras, "flat"))
        return summary, back

    summary, back = asyncio.run(main())
    assert summary.volume.dimensions == image.shape[::-1]
    np.testing.assert_array_equal(back.array, image)
    np.testing.assert_allclose(back.ijk_to_ras, ijk_to_ras)
    assert back.attributes == {"DICOM.instanceUIDs": "1.2.3"} and back.name == "CT"


def test_get_node_on_segmentations_and_application_nodes(mcp_server, run_on_scene, clean_backend) -> None:
    from SlicerMCPLib.scene.demo import load_demo_scene

    run_on_scene(lambda: load_demo_scene(clean_backend))
    (seg,) = call_tool(
        mcp_server, "list_scene_nodes", {"class_name": "vtkMRMLSegmentationNode"}
    ).structured_content["nodes"]
    seg_details, red = call_tools(
        mcp_server, [("get_node", {"node_id": seg["id"]}), ("get_node", {"node_id": "vtkMRMLSliceNodeRed"})]
    )
    d = seg_details.structured_content
    assert [s["name"] for s in d["segments"]] == ["Brain", "Ventricles", "Lesion"]
    assert d["properties"]["source_representation"] == "Binary labelmap"
    assert d["properties"]["labelmap_spacing"] == pytest.approx([2.0, 2.0, 2.5])
    assert d["references"]["referenceImageGeometryRef"]
    r = red.structured_content
    assert r["class_name"] == "vtkMRMLSliceNode" and r["properties"]["SingletonTag"] == "Red"
    assert "MTime" not in r["properties"]


def test_added_volumes_get_a_display_window(clean_backend, run_on_scene) -> None:
    """The series' own window when given (DICOM), else one estimated from the voxels' percentiles."""
    import numpy as np

    from SlicerMCPLib.core.scene_backend import VolumeArray

    rng = np.random.default_rng(7)
    image = rng.integers(-1000, 1000, size=(20, 32, 32)).astype(np.int16)
    eye = np.eye(4)

    async def main():
        given = await clean_backend.add_volume(VolumeArray(image, eye, "given", window_level=(400.0, 40.0)))
        estimated = await clean_backend.add_volume(VolumeArray(image, eye, "estimated"))
        return given.id, estimated.id

    given_id, estimated_id = asyncio.run(main())

    def window(node_id):
        display = clean_backend.scene.GetNodeByID(node_id).GetDisplayNode()
        return display.GetAutoWindowLevel(), display.GetWindow(), display.GetLevel()

    assert run_on_scene(lambda: window(given_id)) == (False, 400.0, 40.0)
    auto, w, level = run_on_scene(lambda: window(estimated_id))
    assert not auto
    assert 1800 < w <= 2000 and abs(level) < 60  # the 0.1..99.9 % range of uniform -1000..999


def test_resource_on_a_busy_scene_says_slicer_timeout(mcp_server, headless_services, scene_thread) -> None:
    """A resource read that times out tells the client why (the JSON error body), as tools do."""
    headless_services.config.timeouts.scene_s = 0.3

    async def main() -> list[str]:
        messages = []
        async with Client(mcp_server) as client:
            for uri in ("slicer://scene", "slicer://volumes"):
                try:
                    await client.read_resource(uri)
                    messages.append("no error")
                except Exception as exc:  # the SDK raises the server's resource error
                    messages.append(str(exc))
            # the status is still read: it says unreachable, with the same coded error
            status = json.loads((await client.read_resource("slicer://status")).contents[0].text)
            assert status["connection"] == "unreachable" and status["node_count"] is None
            messages.append(f"{status['error']['code']}: {status['error']['message']}")
        return messages

    with scene_busy(scene_thread.gateway):
        messages = asyncio.run(main())
    for message in messages:
        assert "SLICER_TIMEOUT" in message and "main thread is busy" in message


def test_listing_follows_hide_from_editors_and_removal(mcp_server, clean_backend, run_on_scene) -> None:
    """The node index caches which nodes are data; switching HideFromEditors or removing a node shows
    in the very next listing."""

    def add() -> list[str]:
        return [
            clean_backend.scene.AddNewNodeByClass("vtkMRMLTextNode", f"note {i}").GetID() for i in range(3)
        ]

    ids = run_on_scene(add)

    def listed() -> list[str]:
        return [n["id"] for n in call_tool(mcp_server, "list_scene_nodes", {}).structured_content["nodes"]]

    assert listed() == ids

    def hide(node_id: str, hidden: bool) -> None:
        clean_backend.scene.GetNodeByID(node_id).SetHideFromEditors(hidden)

    run_on_scene(lambda: hide(ids[1], True))
    assert listed() == [ids[0], ids[2]]
    assert ids[1] in [
        n["id"]
        for n in call_tool(
            mcp_server, "list_scene_nodes", {"class_name": "vtkMRMLTextNode"}
        ).structured_content["nodes"]
    ]
    run_on_scene(lambda: hide(ids[1], False))
    assert listed() == ids
    run_on_scene(lambda: clean_backend.scene.RemoveNode(clean_backend.scene.GetNodeByID(ids[0])))
    assert listed() == ids[1:]
    assert not any(key == ids[0] for key in clean_backend._scene_index()._watched), (
        "a removed node is not held by the index"
    )
