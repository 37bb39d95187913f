"""Label counting against numpy's own answer, and listings that follow voxel edits."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from fixtures.scene import call_tool, error_of
from SlicerMCPLib.core.scene_backend import VolumeArray
from SlicerMCPLib.scene.measure import CHUNK_BYTES, count_label, count_labels


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.uint16, np.int16, np.int32, np.uint32, np.float32])
def test_count_labels_matches_numpy(dtype) -> None:
    rng = np.random.default_rng(7)
    size = CHUNK_BYTES * 3 // np.dtype(dtype).itemsize + 123  # several chunks and a ragged tail
    a = rng.integers(0, 5, size=size).astype(dtype)
    a[: size // 3] = 0  # background-only chunk
    a[size // 3 : size // 2] = 4  # uniform chunk
    if np.dtype(dtype).kind == "i":
        a[-50:] = -3
    a[7] = 100 if np.dtype(dtype).itemsize > 1 or dtype == np.uint8 else 99  # a wide label range in one chunk
    values, counts = np.unique(a, return_counts=True)
    expected = {int(v): int(c) for v, c in zip(values, counts, strict=True) if v != 0}
    assert count_labels(a) == expected
    for label in (4, 2, 0, 100, 250):
        assert count_label(a, label) == int(np.count_nonzero(a == label))


def test_whole_chunk_counts_lane_by_lane_without_carry() -> None:
    """A full chunk's matches are added 255 words deep in byte lanes: a lane full of matches
    (255 in every byte of the sum) must not carry into its neighbour."""
    from SlicerMCPLib.scene.measure import _count_true

    rng = np.random.default_rng(5)
    for hits in (
        np.ones(CHUNK_BYTES, bool),
        rng.random(CHUNK_BYTES) < 0.3,
        np.arange(CHUNK_BYTES) % 8 == 3,  # one byte lane of every word: 255 in that lane only
    ):
        assert _count_true(hits) == int(np.count_nonzero(hits))
    a = np.full(CHUNK_BYTES * 2, 7, np.uint8)
    a[::2] = 5  # every whole chunk mixed: counted by compare + lanes
    assert count_labels(a) == {5: CHUNK_BYTES, 7: CHUNK_BYTES}
    assert count_label(a, 7) == CHUNK_BYTES


def test_count_labels_split_across_threads_matches_numpy(monkeypatch) -> None:
    """Large volumes are counted by a few threads, each on its own run of chunks."""
    from SlicerMCPLib.scene import measure

    monkeypatch.setattr(measure, "PARALLEL_MIN_BYTES", 0)
    monkeypatch.setattr(measure, "_workers", lambda: 3)
    rng = np.random.default_rng(11)
    a = np.zeros(CHUNK_BYTES * 7 + 13, np.uint8)
    a[CHUNK_BYTES : 3 * CHUNK_BYTES] = 1
    a[2 * CHUNK_BYTES + 5 : 5 * CHUNK_BYTES : 3] = 2  # shares chunks with 1 and 6
    a[4 * CHUNK_BYTES :: 7] = 6
    a[-13:] = rng.integers(0, 9, 13)
    assert len(measure._parts(a)) == 3
    values, counts = np.unique(a, return_counts=True)
    expected = {int(v): int(c) for v, c in zip(values, counts, strict=True) if v}
    assert count_labels(a) == expected
    for label in (1, 2, 3, 6, 8):
        assert count_label(a, label) == int(np.count_nonzero(a == label))


def test_measure_reuses_counts_until_the_voxels_change(
    mcp_server, clean_backend, run_on_scene, monkeypatch
) -> None:
    from SlicerMCPLib.scene import measure

    labels = np.zeros((20, 30, 40), np.uint8)
    labels[2:5, 3:9, 4:20] = 3
    labels[10:12, :, :] = 1
    summary = asyncio.run(clean_backend.add_volume(VolumeArray(labels, np.eye(4), "seg", is_labelmap=True)))
    counted: list[str] = []
    for name in ("count_labels", "count_label"):
        original = getattr(measure, name)
        monkeypatch.setattr(measure, name, lambda *a, _f=original, _n=name: counted.append(_n) or _f(*a))

    def volumes(segment: str | None = None) -> dict[int, int]:
        args = {"node_id": summary.id} | ({"segment": segment} if segment else {})
        result = call_tool(mcp_server, "measure_volume", args).structured_content
        return {row["label_value"]: row["voxel_count"] for row in result["segments"]}

    assert volumes("3") == {3: 3 * 6 * 16} and counted == ["count_label"]
    assert volumes("3") == {3: 3 * 6 * 16} and counted == ["count_label"]
    assert volumes() == {1: 2 * 30 * 40, 3: 3 * 6 * 16} and counted == ["count_label", "count_labels"]
    assert volumes() == {1: 2 * 30 * 40, 3: 3 * 6 * 16} and volumes("1") == {1: 2 * 30 * 40}
    assert counted == ["count_label", "count_labels"]

    def edit() -> None:
        import slicer

        node = clean_backend.scene.GetNodeByID(summary.id)
        slicer.util.arrayFromVolume(node)[0, 0, :7] = 3
        slicer.util.arrayFromVolumeModified(node)

    run_on_scene(edit)
    assert volumes() == {1: 2 * 30 * 40, 3: 3 * 6 * 16 + 7} and counted[-1] == "count_labels"
    assert len(counted) == 3
    # the MCP Slicer Bridge spec's segment_name is the same parameter; a misspelt one is refused
    spec = call_tool(mcp_server, "measure_volume", {"node_id": summary.id, "segment_name": "1"})
    assert [row["label_value"] for row in spec.structured_content["segments"]] == [1]
    typo = error_of(call_tool(mcp_server, "measure_volume", {"node_id": summary.id, "segment_nme": "1"}))
    assert typo["code"] == "INVALID_PARAMETER" and "did you mean segment_name?" in typo["message"]
    assert typo["details"]["unknown"] == ["segment_nme"]


def test_listing_follows_in_place_voxel_edits(mcp_server, clean_backend, run_on_scene) -> None:
    summary = asyncio.run(
        clean_backend.add_volume(VolumeArray(np.zeros((4, 5, 6), np.int16), np.eye(4), "edit"))
    )
    first = call_tool(mcp_server, "list_scene_nodes", {}).structured_content["nodes"][0]
    assert first["volume"]["scalar_range"] == [0, 0]

    def edit() -> None:
        import slicer

        node = clean_backend.scene.GetNodeByID(summary.id)
        voxels = slicer.util.arrayFromVolume(node)
        voxels[1, 2, 3] = 77
        slicer.util.arrayFromVolumeModified(node)

    run_on_scene(edit)
    after = call_tool(mcp_server, "list_scene_nodes", {}).structured_content["nodes"][0]
    assert after["volume"]["scalar_range"] == [0, 77]


def test_volume_info_follows_a_new_node_that_reuses_an_id(run_on_scene) -> None:
    """After scene.Clear (Slicer's Close Scene) node ids start again at 1; the cache must not mix them up."""

    def check() -> list[tuple[float, ...] | None]:
        import slicer
        import vtk

        from SlicerMCPLib.scene.nodes import VolumeInfoCache

        scene = slicer.vtkMRMLScene()
        cache = VolumeInfoCache(scene)

        def add() -> object:
            node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode")
            image = vtk.vtkImageData()
            image.SetDimensions(2, 2, 2)
            image.AllocateScalars(vtk.VTK_SHORT, 1)
            image.GetPointData().GetScalars().Fill(0)
            node.SetAndObserveImageData(image)
            return node

        def edit_in_place(node, value: int) -> None:  # the voxels change, the node's MTime does not
            scalars = node.GetImageData().GetPointData().GetScalars()
            scalars.SetValue(3, value)
            scalars.Modified()
            node.GetImageData().Modified()

        first = add()
        seen = [cache.get(first).scalar_range]
        first_id = first.GetID()
        scene.Clear(0)
        second = add()
        assert second.GetID() == first_id
        seen.append(cache.get(second).scalar_range)
        edit_in_place(second, 9)
        seen.append(cache.get(second).scalar_range)
        cache.close()
        return seen

    assert run_on_scene(check) == [(0.0, 0.0), (0.0, 0.0), (0.0, 9.0)]


@pytest.mark.parametrize("dtype", [">i2", "<u2", np.float16, np.bool_])
def test_add_volume_keeps_voxel_values_whatever_the_dtype(clean_backend, dtype) -> None:
    """Big-endian voxels (Explicit VR Big Endian) and float16 arrive with their values, not reinterpreted bytes."""
    values = np.array([0, 1, 300, 1000], dtype=np.int64).reshape(1, 2, 2)
    if dtype == np.bool_:
        values = values.clip(0, 1)
    array = values.astype(dtype)
    summary = asyncio.run(clean_backend.add_volume(VolumeArray(array, np.eye(4), "typed")))
    back = asyncio.run(clean_backend.export_volume(summary.id))
    assert back.array.tolist() == values.tolist()
    assert summary.volume.scalar_range == (float(values.min()), float(values.max()))


def test_add_volume_refuses_voxels_vtk_cannot_hold(clean_backend) -> None:
    from SlicerMCPLib.core.errors import InvalidParameter

    with pytest.raises(InvalidParameter, match="complex"):
        asyncio.run(clean_backend.add_volume(VolumeArray(np.zeros((2, 2, 2), np.complex64), np.eye(4), "c")))


def test_window_of_float_voxels_with_nan_is_finite() -> None:
    """Float pixel data may hold NaN (masked maps); the window comes from the finite voxels."""
    from SlicerMCPLib.scene.data_io import estimate_window_level

    voxels = np.linspace(0.0, 100.0, 4000, dtype=np.float32).reshape(10, 20, 20)
    voxels[0, 0, :5] = np.nan
    window, level = estimate_window_level(voxels)
    assert np.isfinite(window) and np.isfinite(level)
    assert 90 < window <= 100 and 45 < level < 55
    window, level = estimate_window_level(np.full((2, 2, 2), np.nan, np.float32))
    assert np.isfinite(window) and np.isfinite(level)
