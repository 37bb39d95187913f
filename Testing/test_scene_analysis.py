"""Analysis tools on a real headless scene: known answers from synthetic volumes.

Every number is checked against an independent computation: the analytic volume of a ball (within
the voxelisation error: surface area x half the largest voxel edge), numpy on the same voxels, or
the truth masks the volume was made from.
"""

from __future__ import annotations

import base64
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fixtures.analysis import (
    SPHERE_CENTRE_RAS,
    SPHERE_RADIUS_MM,
    SPHERE_SPACING,
    _write_image,
    sphere_arrays,
    sphere_volume,
    two_blobs_volume,
)
from fixtures.scene import call_tool, call_tools, error_of

pytestmark = pytest.mark.headless


def ball_volume(r: float) -> float:
    return 4.0 / 3.0 * math.pi * r**3


def voxelisation_error(r: float) -> float:
    """The most a voxelised ball can differ from the analytic one: its surface times half a voxel edge."""
    return 4.0 * math.pi * r**2 * max(SPHERE_SPACING) / 2.0


def ok(result: Any) -> dict[str, Any]:
    assert not result.is_error, result.content[0].text
    return result.structured_content


def load(server: Any, path: Path) -> str:
    return ok(call_tool(server, "load_volume", {"path": str(path)}))["nodes"][0]["id"]


def segmented_sphere(server: Any, tmp_path: Path) -> tuple[str, str, np.ndarray, np.ndarray]:
    path, image, ijk_to_ras = sphere_volume(tmp_path)
    volume_id = load(server, path)
    seg = ok(call_tool(server, "create_segmentation", {"volume_id": volume_id, "segments": ["lesion"]}))
    ok(
        call_tool(
            server,
            "segment_threshold",
            {"segmentation_id": seg["segmentation_id"], "segment": "lesion", "lower": 50, "upper": 1000},
        )
    )
    return volume_id, seg["segmentation_id"], image, ijk_to_ras


def segment_row(server: Any, segmentation_id: str, name: str) -> dict[str, Any]:
    stats = ok(
        call_tool(server, "segment_statistics", {"segmentation_id": segmentation_id, "surface": False})
    )
    rows = {row["name"]: row for row in stats["segments"]}
    return rows[name]


def test_threshold_of_a_ball_is_its_volume_within_the_voxelisation_error(mcp_server, tmp_path):
    path, image, _ = sphere_volume(tmp_path)
    volume_id = load(mcp_server, path)
    created = call_tool(mcp_server, "create_segmentation", {"volume_id": volume_id, "segments": ["lesion"]})
    args = {
        "segmentation_id": ok(created)["segmentation_id"],
        "segment": "lesion",
        "lower": 50,
        "upper": 1000,
    }
    done = call_tool(mcp_server, "segment_threshold", args)
    assert ok(created)["changes"][0]["status"] == "created"
    change = ok(done)["changes"][0]
    expected = int(np.count_nonzero((image >= 50) & (image <= 1000)))
    assert change["voxels_after"] == expected  # the same voxels numpy picks
    voxel_mm3 = math.prod(SPHERE_SPACING)
    assert change["volume_mm3_after"] == pytest.approx(expected * voxel_mm3)
    assert abs(change["volume_mm3_after"] - ball_volume(SPHERE_RADIUS_MM)) < voxelisation_error(
        SPHERE_RADIUS_MM
    )


def test_statistics_equal_numpy_on_the_same_mask(mcp_server, tmp_path):
    _, seg_id, image, ijk_to_ras = segmented_sphere(mcp_server, tmp_path)
    stats = ok(call_tool(mcp_server, "segment_statistics", {"segmentation_id": seg_id}))
    (row,) = stats["segments"]
    mask = (image >= 50) & (image <= 1000)
    inside = image[mask].astype(np.float64)
    assert row["voxel_count"] == int(mask.sum())
    assert row["volume_ml"] == pytest.approx(mask.sum() * math.prod(SPHERE_SPACING) / 1000.0)
    for key, value in {
        "mean": inside.mean(),
        "std": inside.std(),
        "min": inside.min(),
        "max": inside.max(),
        "median": np.median(inside),
    }.items():
        assert row[key] == pytest.approx(value, rel=1e-9, abs=1e-9), key
    k, j, i = np.nonzero(mask)
    centroid = (ijk_to_ras @ np.array([i.mean(), j.mean(), k.mean(), 1.0]))[:3]
    assert row["centroid_ras"] == pytest.approx(list(centroid), abs=1e-3)
    assert row["centroid_ras"] == pytest.approx(list(SPHERE_CENTRE_RAS), abs=0.2)
    lo = (ijk_to_ras @ np.array([i.min(), j.min(), k.min(), 1.0]))[:3]
    hi = (ijk_to_ras @ np.array([i.max(), j.max(), k.max(), 1.0]))[:3]
    assert row["bounding_box_ras"] == pytest.approx([lo[0], hi[0], lo[1], hi[1], lo[2], hi[2]], abs=1e-6)
    sphere_area = 4 * math.pi * SPHERE_RADIUS_MM**2
    assert row["surface_area_mm2"] == pytest.approx(sphere_area, rel=0.1)


@pytest.mark.parametrize("margin_mm", [2.0, -2.0])
def test_margin_matches_the_analytic_ball_within_the_voxelisation_error(mcp_server, tmp_path, margin_mm):
    _, seg_id, _, _ = segmented_sphere(mcp_server, tmp_path)
    result = ok(
        call_tool(
            mcp_server,
            "segment_margin",
            {"segmentation_id": seg_id, "segment": "lesion", "margin_mm": margin_mm},
        )
    )
    radius = SPHERE_RADIUS_MM + margin_mm
    change = result["changes"][0]
    assert abs(change["volume_mm3_after"] - ball_volume(radius)) < voxelisation_error(radius)
    assert (change["voxels_after"] > change["voxels_before"]) == (margin_mm > 0)


def test_grow_from_seeds_separates_two_touching_blobs(mcp_server, tmp_path):
    path, first, second = two_blobs_volume(tmp_path)
    volume_id = load(mcp_server, path)
    seg_id = ok(call_tool(mcp_server, "create_segmentation", {"volume_id": volume_id}))["segmentation_id"]
    seeds = {
        "left blob": [[25, 20, 20]],
        "right blob": [[44, 20, 20]],
        "background": [[2, 2, 2], [66, 36, 36]],
    }
    result = ok(call_tool(mcp_server, "segment_grow_from_seeds", {"segmentation_id": seg_id, "seeds": seeds}))
    counts = {c["name"]: c["voxels_after"] for c in result["changes"]}
    assert counts["left blob"] == int(first.sum())
    assert counts["right blob"] == int(second.sum())
    assert counts["background"] == first.size - int(first.sum()) - int(second.sum())


def test_grow_from_seeds_needs_two_segments_and_leaves_nothing_on_error(mcp_server, tmp_path):
    path, _, _ = two_blobs_volume(tmp_path)
    volume_id = load(mcp_server, path)
    seg_id = ok(call_tool(mcp_server, "create_segmentation", {"volume_id": volume_id}))["segmentation_id"]
    one, outside = call_tools(
        mcp_server,
        [
            ("segment_grow_from_seeds", {"segmentation_id": seg_id, "seeds": {"a": [[25, 20, 20]]}}),
            # the first segment is made before the second's seed is found outside: all of it is undone
            (
                "segment_grow_from_seeds",
                {"segmentation_id": seg_id, "seeds": {"a": [[25, 20, 20]], "b": [[500, 0, 0]]}},
            ),
        ],
    )
    assert error_of(one)["code"] == "INVALID_PARAMETER"
    assert error_of(outside)["code"] == "INVALID_PARAMETER"
    node = ok(call_tool(mcp_server, "get_node", {"node_id": seg_id}))
    assert not node["segments"]


def islands_volume(tmp_path: Path) -> tuple[Path, int, int]:
    """The ball plus a 4x4x4 cube far from it: two islands of known size."""
    image, ijk_to_ras = sphere_arrays()
    image[2:6, 2:6, 2:6] = 100
    ball = int(np.count_nonzero(image >= 50)) - 64
    return _write_image(image, ijk_to_ras, tmp_path / "islands.nrrd"), ball, 64


@pytest.mark.parametrize("mode", ["keep_largest", "remove_small", "split"])
def test_islands(mcp_server, tmp_path, mode):
    path, ball, cube = islands_volume(tmp_path)
    volume_id = load(mcp_server, path)
    seg_id = ok(
        call_tool(mcp_server, "create_segmentation", {"volume_id": volume_id, "segments": ["lesion"]})
    )["segmentation_id"]
    ok(
        call_tool(
            mcp_server,
            "segment_threshold",
            {"segmentation_id": seg_id, "segment": "lesion", "lower": 50, "upper": 1000},
        )
    )
    args = {
        "segmentation_id": seg_id,
        "segment": "lesion",
        "mode": mode,
        "min_size_voxels": 100 if mode == "remove_small" else 1,
    }
    changes = {c["name"]: c for c in ok(call_tool(mcp_server, "segment_islands", args))["changes"]}
    assert changes["lesion"]["voxels_before"] == ball + cube
    assert changes["lesion"]["voxels_after"] == ball
    if mode == "split":
        assert changes["lesion 2"]["voxels_after"] == cube
        assert changes["lesion 2"]["status"] == "created"
    else:
        assert set(changes) == {"lesion"}


def smoothing_volume(tmp_path: Path) -> Path:
    """A 12-voxel cube with a one-voxel hole, a one-voxel speck, and a one-voxel-thin spike."""
    image = np.zeros((30, 30, 30), np.int16)
    image[5:17, 5:17, 5:17] = 100
    image[10, 10, 10] = 0  # hole
    image[25, 25, 25] = 100  # speck
    image[10, 10, 17:26] = 100  # spike
    return _write_image(image, np.eye(4), tmp_path / "smooth.nrrd")


@pytest.mark.parametrize(
    ("method", "expected"),
    [("closing", "hole filled"), ("median", "speck gone"), ("opening", "spike gone")],
)
def test_smoothing(mcp_server, tmp_path, method, expected):
    volume_id = load(mcp_server, smoothing_volume(tmp_path))
    seg_id = ok(call_tool(mcp_server, "create_segmentation", {"volume_id": volume_id}))["segmentation_id"]
    ok(
        call_tool(
            mcp_server,
            "segment_threshold",
            {"segmentation_id": seg_id, "segment": "s", "lower": 50, "upper": 200},
        )
    )
    ok(
        call_tool(
            mcp_server,
            "segment_smoothing",
            {"segmentation_id": seg_id, "segment": "s", "method": method, "kernel_mm": 3},
        )
    )
    mask = segment_mask(mcp_server, seg_id, "s", tmp_path)
    if expected == "hole filled":
        assert mask[10, 10, 10] and mask[25, 25, 25]  # closing fills, and keeps what is there
    elif expected == "speck gone":
        assert not mask[25, 25, 25]
        assert mask[10, 10, 10]  # the median of a hole's neighbourhood is the cube
    else:
        assert not mask[10, 10, 20]
        assert mask[6, 6, 6]


def segment_mask(server: Any, seg_id: str, segment: str, tmp_path: Path) -> np.ndarray:
    """The segment's voxels read back through measure_volume's labelmap export: copy into a labelmap
    segmentation file would need Python, so this reads the scene on its thread via the backend."""
    from SlicerMCPLib.scene import labelmaps

    backend = server.services.backend

    def read() -> np.ndarray:
        node = backend.scene.GetNodeByID(seg_id)
        ref = labelmaps.source_volume(backend.scene, node, None, "test")
        return labelmaps.segment_mask(
            node, labelmaps.segment_id(node, segment), labelmaps.volume_image(ref)
        ).copy()

    return backend.gateway.call(read, 30)


def test_logical_operations_equal_numpy(mcp_server, tmp_path):
    _, seg_id, image, _ = segmented_sphere(mcp_server, tmp_path)
    ball = (image >= 50) & (image <= 1000)
    half = np.zeros_like(ball)
    half[:, :, 32:] = True
    ok(
        call_tool(
            mcp_server,
            "segment_threshold",
            {"segmentation_id": seg_id, "segment": "all", "lower": -1000, "upper": 1000},
        )
    )
    # "half": the right half of the volume, from the whole-volume segment via an ROI-free copy + subtract
    calls = [
        (
            "segment_logical",
            {"segmentation_id": seg_id, "segment": "u", "operation": "copy", "other_segment": "lesion"},
        ),
        (
            "segment_logical",
            {"segmentation_id": seg_id, "segment": "u", "operation": "union", "other_segment": "all"},
        ),
        (
            "segment_logical",
            {"segmentation_id": seg_id, "segment": "i", "operation": "copy", "other_segment": "all"},
        ),
        (
            "segment_logical",
            {"segmentation_id": seg_id, "segment": "i", "operation": "intersect", "other_segment": "lesion"},
        ),
        (
            "segment_logical",
            {"segmentation_id": seg_id, "segment": "d", "operation": "copy", "other_segment": "all"},
        ),
        (
            "segment_logical",
            {"segmentation_id": seg_id, "segment": "d", "operation": "subtract", "other_segment": "lesion"},
        ),
    ]
    results = [ok(r)["changes"][0]["voxels_after"] for r in call_tools(mcp_server, calls)]
    assert results[1] == ball.size  # lesion | everything
    assert results[3] == int(ball.sum())  # everything & lesion
    assert results[5] == ball.size - int(ball.sum())  # everything - lesion


def test_rename_recolour_terminology_delete_and_undo(mcp_server, tmp_path):
    _, seg_id, image, _ = segmented_sphere(mcp_server, tmp_path)
    renamed = ok(
        call_tool(
            mcp_server,
            "rename_segment",
            {"segmentation_id": seg_id, "segment": "lesion", "new_name": "Tumor", "color": [1, 0, 0]},
        )
    )
    assert any("108369006" in note for note in renamed["notes"])
    node = ok(call_tool(mcp_server, "get_node", {"node_id": seg_id}))
    (segment,) = node["segments"]
    assert segment["name"] == "Tumor" and segment["color"] == [1.0, 0.0, 0.0]
    deleted, gone, undone, back = call_tools(
        mcp_server,
        [
            ("delete_segment", {"segmentation_id": seg_id, "segment": "Tumor"}),
            ("get_node", {"node_id": seg_id}),
            ("undo_last_edit", {}),
            ("segment_statistics", {"segmentation_id": seg_id, "surface": False}),
        ],
    )
    assert ok(deleted)["changes"][0]["status"] == "removed"
    assert not ok(gone)["segments"]
    assert ok(undone)["undone"] == "delete_segment"
    (row,) = ok(back)["segments"]
    assert row["name"] == "Tumor" and row["voxel_count"] == int(((image >= 50) & (image <= 1000)).sum())


def test_undo_walks_back_every_step_then_says_nothing_is_left(mcp_server, tmp_path):
    _, seg_id, _, _ = segmented_sphere(mcp_server, tmp_path)  # create + threshold: two steps
    threshold_undone, create_undone, empty, listing = call_tools(
        mcp_server,
        [
            ("undo_last_edit", {}),
            ("undo_last_edit", {}),
            ("undo_last_edit", {}),
            ("list_scene_nodes", {"class_name": "vtkMRMLSegmentationNode"}),
        ],
    )
    assert ok(threshold_undone)["undone"] == "segment_threshold"
    assert ok(create_undone)["undone"] == "create_segmentation"
    assert error_of(empty)["code"] == "INVALID_PARAMETER"
    assert ok(listing)["total"] == 0


def test_threshold_inside_an_roi(mcp_server, tmp_path):
    _, seg_id, image, ijk_to_ras = segmented_sphere(mcp_server, tmp_path)
    roi = ok(
        call_tool(
            mcp_server,
            "place_markup",
            {"type": "roi", "points": [list(SPHERE_CENTRE_RAS)], "size_mm": [8, 8, 8]},
        )
    )
    result = ok(
        call_tool(
            mcp_server,
            "segment_threshold",
            {
                "segmentation_id": seg_id,
                "segment": "core",
                "lower": 50,
                "upper": 1000,
                "roi_id": roi["node_id"],
            },
        )
    )
    count = result["changes"][0]["voxels_after"]
    # the ROI (8 mm cube) lies inside the ball (r = 10 mm), so every voxel in it is kept
    to_ijk = np.linalg.inv(ijk_to_ras)
    lo = np.round(to_ijk @ np.array([c - 4 for c in SPHERE_CENTRE_RAS] + [1.0]))[:3].astype(int)
    hi = np.round(to_ijk @ np.array([c + 4 for c in SPHERE_CENTRE_RAS] + [1.0]))[:3].astype(int)
    box = image[lo[2] : hi[2] + 1, lo[1] : hi[1] + 1, lo[0] : hi[0] + 1]
    assert count == int(np.count_nonzero(box >= 50)) == box.size


def test_markups_measure_as_slicer_does(mcp_server):
    line, angle, roi, plane, points, listing = call_tools(
        mcp_server,
        [
            ("place_markup", {"type": "line", "points": [[0, 0, 0], [3, 4, 12]]}),
            ("place_markup", {"type": "angle", "points": [[10, 0, 0], [0, 0, 0], [5, 5, 0]]}),
            ("place_markup", {"type": "roi", "points": [[0, 0, 0], [10, 20, 30]]}),
            ("place_markup", {"type": "plane", "points": [[0, 0, 5], [1, 0, 5], [0, 1, 5]]}),
            ("place_markup", {"type": "point_list", "points": [[1, 2, 3], [4, 5, 6]], "name": "seeds"}),
            ("list_markups", {}),
        ],
    )
    assert ok(line)["length_mm"] == pytest.approx(13.0)
    assert ok(angle)["angle_deg"] == pytest.approx(45.0)
    assert ok(roi)["roi_size_mm"] == pytest.approx([10, 20, 30]) and ok(roi)["points_ras"] == [[5, 10, 15]]
    assert ok(plane)["plane_normal"] == pytest.approx([0, 0, 1])
    assert ok(points)["points_ras"] == [[1, 2, 3], [4, 5, 6]]
    assert [m["type"] for m in ok(listing)["markups"]] == ["line", "angle", "roi", "plane", "point_list"]
    measured = ok(call_tool(mcp_server, "measure_markup", {"node_id": ok(line)["node_id"]}))
    assert measured["length_mm"] == pytest.approx(13.0)


@pytest.mark.parametrize(
    ("args", "code"),
    [
        ({"type": "line", "points": [[0, 0, 0]]}, "INVALID_PARAMETER"),
        ({"type": "plane", "points": [[0, 0, 0], [1, 1, 1], [2, 2, 2]]}, "INVALID_PARAMETER"),
        ({"type": "roi", "points": [[0, 0, 0]]}, "INVALID_PARAMETER"),
    ],
)
def test_bad_markups_are_refused_and_add_nothing(mcp_server, args, code):
    bad, listing = call_tools(mcp_server, [("place_markup", args), ("list_markups", {})])
    assert error_of(bad)["code"] == code
    assert ok(listing)["markups"] == []


def test_unknown_nodes_and_segments_are_coded(mcp_server, tmp_path):
    volume_id, seg_id, _, _ = segmented_sphere(mcp_server, tmp_path)
    missing, wrong_class, no_segment = call_tools(
        mcp_server,
        [
            ("segment_statistics", {"segmentation_id": "vtkMRMLSegmentationNode99"}),
            (
                "segment_margin",
                {"segmentation_id": volume_id, "segment": "lesion", "margin_mm": 1},
            ),
            ("segment_margin", {"segmentation_id": seg_id, "segment": "nothing", "margin_mm": 1}),
        ],
    )
    assert error_of(missing)["code"] == "INVALID_NODE_ID"
    assert error_of(wrong_class)["code"] == "INVALID_PARAMETER"
    assert "lesion" in error_of(no_segment)["message"]


def test_screenshots_show_new_segments_and_markups(mcp_server, tmp_path):
    from test_scene_screenshots import decode_png

    _, seg_id, _, _ = segmented_sphere(mcp_server, tmp_path)
    ok(
        call_tool(
            mcp_server, "rename_segment", {"segmentation_id": seg_id, "segment": "lesion", "color": [0, 0, 1]}
        )
    )
    first = call_tool(mcp_server, "capture_screenshot", {"view_type": "axial", "size": 256})
    offset = ok(first)["slice_offset_mm"]
    pixels = decode_png(base64.b64decode(first.content[0].data))
    blue = (pixels[..., 2] > 150) & (pixels[..., 0] < 100) & (pixels[..., 1] < 100)
    assert blue.sum() > 200  # the ball's cross-section, filled in the segment's colour
    yellow = (pixels[..., 0] > 200) & (pixels[..., 1] > 200) & (pixels[..., 2] < 60)
    assert not yellow.any()
    # a line across the ball on the shown slice is drawn in the line's colour (yellow)
    line = [
        [SPHERE_CENTRE_RAS[0] - 8, SPHERE_CENTRE_RAS[1], offset],
        [SPHERE_CENTRE_RAS[0] + 8, SPHERE_CENTRE_RAS[1], offset],
    ]
    ok(call_tool(mcp_server, "place_markup", {"type": "line", "points": line}))
    second = call_tool(mcp_server, "capture_screenshot", {"view_type": "axial", "size": 256})
    pixels = decode_png(base64.b64decode(second.content[0].data))
    yellow = (pixels[..., 0] > 200) & (pixels[..., 1] > 200) & (pixels[..., 2] < 60)
    rows, cols = np.nonzero(yellow)
    assert yellow.sum() > 20
    assert np.ptp(cols) > 5 * max(1, np.ptp(rows))  # a horizontal line (R-L runs across an axial view)


def test_markups_show_in_the_3d_view(mcp_server):
    from test_scene_screenshots import decode_png

    ok(call_tool(mcp_server, "place_markup", {"type": "line", "points": [[-50, 0, 0], [50, 0, 0]]}))
    shot = call_tool(mcp_server, "capture_screenshot", {"view_type": "3d", "size": 256})
    info = ok(shot)
    assert not any("nothing is visible" in note for note in info["notes"])
    pixels = decode_png(base64.b64decode(shot.content[0].data))
    yellow = (pixels[..., 0] > 200) & (pixels[..., 1] > 200) & (pixels[..., 2] < 80)
    rows, cols = np.nonzero(yellow)
    assert yellow.sum() > 50 and np.ptp(cols) > 100  # the line spans most of the view, left to right


def test_on_the_demo_scene_threshold_and_islands_find_the_lesion(mcp_server, run_on_scene):
    from SlicerMCPLib.scene.demo import load_demo_scene, phantom_arrays

    backend = mcp_server.services.backend
    run_on_scene(lambda: load_demo_scene(backend))
    image, labels, _ = phantom_arrays()
    ids = {n["name"]: n["id"] for n in ok(call_tool(mcp_server, "list_scene_nodes", {}))["nodes"]}
    volume_id, demo_seg = ids["DemoHead"], ids["DemoSegmentation"]
    seg_id = ok(call_tool(mcp_server, "create_segmentation", {"volume_id": volume_id}))["segmentation_id"]
    args = {"segmentation_id": seg_id, "segment": "found", "lower": 650, "upper": 800}
    ok(call_tool(mcp_server, "segment_threshold", args))
    ok(
        call_tool(
            mcp_server,
            "segment_islands",
            {"segmentation_id": seg_id, "segment": "found", "min_size_voxels": 1},
        )
    )
    (found,) = ok(call_tool(mcp_server, "segment_statistics", {"segmentation_id": seg_id}))["segments"]
    assert found["voxel_count"] == int((labels == 3).sum())
    assert found["mean"] == 700 and found["std"] == 0
    assert found["centroid_ras"][0] < -30  # on the patient's left (R < 0), as the demo places it
    demo = {
        s["name"]: s
        for s in ok(call_tool(mcp_server, "segment_statistics", {"segmentation_id": demo_seg}))["segments"]
    }
    measured = ok(call_tool(mcp_server, "measure_volume", {"node_id": demo_seg}))
    for row in measured["segments"]:
        assert demo[row["name"]]["voxel_count"] == row["voxel_count"]
    assert demo["Lesion"]["mean"] == 700 and demo["Ventricles"]["mean"] == 80


def test_long_edits_report_progress(mcp_server, tmp_path):
    import asyncio

    from mcp import Client

    path, _, _ = two_blobs_volume(tmp_path)
    volume_id = load(mcp_server, path)
    seg_id = ok(call_tool(mcp_server, "create_segmentation", {"volume_id": volume_id}))["segmentation_id"]
    seen: list[tuple[float, float | None, str | None]] = []

    async def progress(done: float, total: float | None, message: str | None) -> None:
        seen.append((done, total, message))

    async def main() -> Any:
        async with Client(mcp_server) as client:
            seeds = {"a": [[25, 20, 20]], "b": [[44, 20, 20]], "bg": [[2, 2, 2]]}
            return await client.call_tool(
                "segment_grow_from_seeds",
                {"segmentation_id": seg_id, "seeds": seeds},
                progress_callback=progress,
            )

    ok(asyncio.run(main()))
    assert seen and all(message and message.startswith("grow from seeds") for _, _, message in seen)
