"""Screenshots of a headless scene, checked by pixel content (orientation, overlays, scroll, 3D).

The demo phantom is asymmetric: a bright (white at its window/level) marker on the patient's
LEFT, a red "Lesion" segment on the left, blue "Ventricles" in the middle. Slicer shows slices
in radiological convention, so the patient's left must appear on the right of the image.
"""

from __future__ import annotations

import base64
import json
import tempfile
from pathlib import Path

import numpy as np
import pytest

from fixtures.scene import call_tool, call_tools, error_of
from SlicerMCPLib.core.errors import ErrorCode
from SlicerMCPLib.scene.demo import load_demo_scene


def decode_png(data: bytes) -> np.ndarray:
    """HxWx3 uint8, top row first (decoded by VTK's PNG reader: no extra dependency)."""
    import vtk
    from vtk.util import numpy_support

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "shot.png"
        path.write_bytes(data)
        reader = vtk.vtkPNGReader()
        reader.SetFileName(str(path))
        reader.Update()
    image = reader.GetOutput()
    w, h, _ = image.GetDimensions()
    pixels = numpy_support.vtk_to_numpy(image.GetPointData().GetScalars()).reshape(h, w, -1)
    return pixels[::-1, :, :3].copy()


def shot(server, **args) -> tuple[np.ndarray, dict]:
    result = call_tool(server, "capture_screenshot", args)
    assert not result.is_error, result.content[0].text
    image = next(c for c in result.content if c.type == "image")
    assert image.mime_type == "image/png"
    return decode_png(base64.b64decode(image.data)), result.structured_content


@pytest.fixture
def demo_server(mcp_server, run_on_scene, clean_backend):
    run_on_scene(lambda: load_demo_scene(clean_backend))
    return mcp_server


def white(rgb: np.ndarray) -> np.ndarray:
    return (rgb >= 250).all(axis=2)


def reddish(rgb: np.ndarray) -> np.ndarray:
    r, g, b = (rgb[..., c].astype(int) for c in range(3))
    return (r > 150) & (r - g > 80) & (r - b > 80)


def bluish(rgb: np.ndarray) -> np.ndarray:
    r, g, b = (rgb[..., c].astype(int) for c in range(3))
    return (b > 120) & (b - r > 60)


@pytest.mark.parametrize("view", ["axial", "coronal"])
def test_patient_left_is_screen_right(demo_server, view) -> None:
    rgb, info = shot(demo_server, view_type=view)
    assert rgb.shape == (512, 512, 3) and info["width"] == 512
    marker = white(rgb)
    assert marker.sum() > 50, "the bright marker should be visible"
    columns = np.nonzero(marker)[1]
    assert columns.min() > 256, (
        f"marker (patient left) must be on the right half, found x {columns.min()}..{columns.max()}"
    )
    assert info["background_volume_id"] and info["renderer"] == "headless-vtk"


def test_axial_anterior_is_up(demo_server) -> None:
    rgb, _ = shot(demo_server, view_type="axial", scroll_position=0.5)
    rows = np.nonzero(reddish(rgb))[0]
    assert rows.size and rows.mean() < 250, "the lesion lies anterior of centre, so above the image centre"


def test_segments_drawn_in_their_colours_where_they_are(demo_server) -> None:
    rgb, _ = shot(demo_server, view_type="axial")
    lesion, ventricles = reddish(rgb), bluish(rgb)
    assert lesion.sum() > 100 and ventricles.sum() > 300
    assert np.nonzero(lesion)[1].mean() > 300  # lesion is on the patient's left -> screen right
    assert abs(np.nonzero(ventricles)[1].mean() - 256) < 30  # ventricles in the middle


def test_hidden_segmentation_is_not_drawn(demo_server, run_on_scene, clean_backend) -> None:
    def hide() -> None:
        node = clean_backend.scene.GetFirstNodeByClass("vtkMRMLSegmentationNode")
        node.GetDisplayNode().SetVisibility(False)

    run_on_scene(hide)
    rgb, _ = shot(demo_server, view_type="axial")
    assert reddish(rgb).sum() == 0 and bluish(rgb).sum() == 0


def test_removed_segmentation_voxels_are_released(demo_server, run_on_scene, clean_backend) -> None:
    """The overlay reslicers of a segmentation that left the scene do not keep its labelmap alive."""
    shot(demo_server, view_type="axial")
    view = clean_backend._headless_renderer().slice_view("axial")
    assert view._reslicers  # the demo segmentation was drawn through one
    scene = clean_backend.scene
    run_on_scene(lambda: scene.RemoveNode(scene.GetFirstNodeByClass("vtkMRMLSegmentationNode")))
    shot(demo_server, view_type="axial")  # the volume is still shown
    assert view._reslicers == {}
    run_on_scene(lambda: load_demo_scene(clean_backend))
    shot(demo_server, view_type="axial")
    assert view._reslicers
    assert not call_tool(demo_server, "clear_scene").is_error
    shot(demo_server, view_type="axial")  # nothing left to show
    assert view._reslicers == {}


def test_a_volume_removed_display_first_leaves_no_display_node_holding_its_voxels(
    demo_server, run_on_scene, clean_backend
) -> None:
    """Removing a shown volume's display node makes the slice layer give it a new default one; that
    one is removed with the volume (it held the voxels: the soak's serve RSS grew one per load)."""
    import vtk

    from SlicerMCPLib.core.scene_backend import VolumeArray
    from SlicerMCPLib.scene.data_io import add_volume

    scene = clean_backend.scene
    displays = lambda: scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeDisplayNode")  # noqa: E731
    before = run_on_scene(displays)
    voxels = []
    for cycle in range(3):
        volume = VolumeArray(np.zeros((20, 30, 40), np.int16), np.eye(4), f"cycle{cycle}")
        node = run_on_scene(lambda v=volume: add_volume(clean_backend.app, v))
        shot(demo_server, view_type="axial")  # the new volume is the slice's background
        weak = vtk.vtkWeakReference()
        weak.Set(node.GetImageData())
        voxels.append(weak)

        def remove(node=node) -> None:
            for part in [node.GetNthDisplayNode(i) for i in range(node.GetNumberOfDisplayNodes())]:
                scene.RemoveNode(part)  # display first, as a client tidying up does
            scene.RemoveNode(node)

        run_on_scene(remove)
        del node, remove
        for view in ("axial", "coronal", "sagittal"):  # each view drawing the volume lets go of it
            shot(demo_server, view_type=view)
    assert run_on_scene(displays) == before
    assert [w.Get() is None for w in voxels] == [True, True, True]


def test_scroll_moves_the_slice(demo_server) -> None:
    (a, ia), (b, ib), (c, ic) = (
        shot(demo_server, view_type="sagittal", scroll_position=p) for p in (0.0, 0.5, 1.0)
    )
    assert ia["slice_offset_mm"] < ib["slice_offset_mm"] < ic["slice_offset_mm"]
    # Slicer's sagittal normal points to the patient's left (-x): offsets run from the right edge
    # (x = +95, offset -95) to the left edge, 96 slice centres 2 mm apart
    assert ia["slice_offset_mm"] == pytest.approx(-95.0) and ic["slice_offset_mm"] == pytest.approx(95.0)
    assert ib["scroll_position"] == 0.5
    assert not np.array_equal(a, b) and not np.array_equal(b, c)
    # the marker sits at x = -88 mm (patient's left): only a slice near there cuts it
    marker, info = shot(demo_server, view_type="sagittal", scroll_position=(95 + 88) / 190)
    assert info["slice_offset_mm"] == pytest.approx(88.0)
    assert white(marker).sum() > 100 and white(b).sum() == 0 and white(c).sum() == 0


def test_size_and_full_layout(demo_server) -> None:
    rgb, info = shot(demo_server, view_type="coronal", size=256)
    assert rgb.shape == (256, 256, 3) and info["height"] == 256
    full, info = shot(demo_server, view_type="full", size=512)
    assert full.shape == (512, 512, 3)
    assert "layout FourUp" in info["notes"]
    quadrants = [full[:256, :256], full[:256, 256:], full[256:, :256], full[256:, 256:]]
    assert all(q.std() > 10 for q in quadrants), "every view of the four-up layout shows something"


def test_3d_view_shows_segment_surfaces(demo_server) -> None:
    """The demo's brain is see-through in 3D, so the lesion and the ventricles inside it show."""
    rgb, info = shot(demo_server, view_type="3d", look_from_axis="anterior")
    assert info["look_from_axis"] == "anterior" and not info["notes"]
    r, g, b = (rgb[..., c].astype(int) for c in range(3))
    lesion = (r > 150) & (g < 90) & (b < 90)  # the lesion's red, lit
    ventricles = (b > 120) & (b > r + 50) & (b > g + 20) & (r < 110)  # their blue, lit, darker than the sky
    assert lesion.sum() > 100, "the lesion is hidden in 3D"
    assert ventricles.sum() > 100, "the ventricles are hidden in 3D"
    # the lesion sits on the patient's left: on the screen's right when seen from the front
    assert np.nonzero(lesion)[1].mean() > rgb.shape[1] / 2
    other, _ = shot(demo_server, view_type="3d", look_from_axis="superior")
    assert not np.array_equal(rgb, other)


def test_empty_scene_and_bad_arguments(mcp_server) -> None:
    rgb, info = shot(mcp_server, view_type="axial", size=128)
    assert rgb.shape == (128, 128, 3) and rgb.max() == 0
    assert info["notes"] and "load_volume" in info["notes"][0]
    results = call_tools(
        mcp_server,
        [
            ("capture_screenshot", {"view_type": "axial", "scroll_position": 1.5}),
            ("capture_screenshot", {"view_type": "axial", "scroll_position": -0.1}),
            ("capture_screenshot", {"view_type": "sideways"}),
            ("capture_screenshot", {"view_type": "3d", "look_from_axis": "up"}),
            ("capture_screenshot", {"size": 10}),
        ],
    )
    for result in results:
        assert error_of(result)["code"] == ErrorCode.INVALID_PARAMETER
    assert "scroll_position" in json.loads(results[0].content[0].text)["error"]["message"]


def test_3d_of_a_volume_alone_uses_cpu_volume_rendering(
    mcp_server, tmp_path, run_on_scene, clean_backend
) -> None:
    from fixtures.scene import make_phantom_volume

    call_tool(mcp_server, "load_volume", {"path": str(make_phantom_volume(tmp_path))})
    rgb, info = shot(mcp_server, view_type="3d", look_from_axis="anterior")
    assert any("volume rendering" in n and "Window-Level" in n for n in info["notes"])
    method = run_on_scene(
        lambda: clean_backend.scene.GetFirstNodeByClass("vtkMRMLVolumeRenderingDisplayNode").GetClassName()
    )
    assert method == "vtkMRMLCPURayCastVolumeRenderingDisplayNode"
    r, b = rgb[..., 0].astype(int), rgb[..., 2].astype(int)
    head = r > b + 20  # warm tissue colours; the blue background, magenta box and white labels are not
    assert head.sum() > 5000
    columns = np.nonzero(head)[1]
    # seen from the front, the patient's left (with the marker) is on the viewer's right
    assert columns.max() - 256 > 256 - columns.min() + 10
    call_tool(mcp_server, "clear_scene")
    leftovers = run_on_scene(
        lambda: [
            clean_backend.scene.GetNumberOfNodesByClass(c)
            for c in ("vtkMRMLVolumeRenderingDisplayNode", "vtkMRMLVolumePropertyNode", "vtkMRMLVolumeNode")
        ]
    )
    assert leftovers == [0, 0, 0]


def test_window_level_of_the_display_node_is_used(demo_server, run_on_scene, clean_backend) -> None:
    before, _ = shot(demo_server, view_type="coronal")

    def narrow_window() -> None:
        display = clean_backend.scene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode").GetDisplayNode()
        display.SetAutoWindowLevel(False)
        display.SetWindowLevel(100, 400)  # brain (400) mid-grey, skull (900) white, ventricles (80) black

    run_on_scene(narrow_window)
    after, _ = shot(demo_server, view_type="coronal")
    assert not np.array_equal(before, after)
    assert white(after).sum() > 3 * white(before).sum(), "the skull saturates with the narrow window"


def test_missing_offscreen_opengl_says_how_to_install(
    demo_server, clean_backend, run_on_scene, monkeypatch
) -> None:
    """A fault this machine can't produce (it has EGL): the probe's answer is faked to 'missing'."""
    from SlicerMCPLib.scene import rendering

    monkeypatch.setattr(rendering, "_offscreen", (False, rendering.OFFSCREEN_HELP))
    renderer = run_on_scene(clean_backend._headless_renderer)
    saved, renderer._threed = renderer._threed, None
    try:
        body = error_of(call_tool(demo_server, "capture_screenshot", {"view_type": "3d"}))
        rgb, info = shot(demo_server, view_type="axial", size=128)  # slice views need no OpenGL
        full, full_info = shot(demo_server, view_type="full", size=256)
        status = json.loads(call_tool(demo_server, "list_scene_nodes").content[0].text)
    finally:
        renderer._threed = saved
    assert body["code"] == ErrorCode.SCREENSHOT_FAILED
    assert "libegl1" in body["message"] and "VTK_DEFAULT_OPENGL_WINDOW=vtkEGLRenderWindow" in body["message"]
    assert rgb.std() > 10 and full.shape == (256, 256, 3)
    assert any("off-screen OpenGL" in n for n in full_info["notes"])
    assert status["total"] == 2


@pytest.mark.parametrize("view_type", ["axial", "3d"])
def test_gui_view_not_created_yet_is_screenshot_failed(view_type) -> None:
    """Inside Slicer, a view the layout has never shown has no widget (the layout manager returns None).
    No Slicer GUI runs here, so a stand-in layout manager plays that part (a fake, for that fault only)."""
    from types import SimpleNamespace

    from SlicerMCPLib.core.errors import ScreenshotFailed
    from SlicerMCPLib.scene.app import SlicerGuiApp

    layout_manager = SimpleNamespace(sliceWidget=lambda name: None, threeDWidget=lambda index: None)
    app = SlicerGuiApp.__new__(SlicerGuiApp)
    app.slicer = SimpleNamespace(app=SimpleNamespace(layoutManager=lambda: layout_manager))
    with pytest.raises(ScreenshotFailed, match="set_layout"):
        app.grab_view(view_type, 0.5, None)


@pytest.mark.parametrize("shape", [(1, 1), (3, 5), (512, 512)])
def test_png_encoding_round_trips_exactly(shape) -> None:
    """The encoder's row filter (Up, differences modulo 256) decodes to the very same pixels."""
    from SlicerMCPLib.scene.rendering import encode_png

    rgb = np.random.default_rng(3).integers(0, 256, (*shape, 3), dtype=np.uint8)
    assert np.array_equal(decode_png(encode_png(rgb)), rgb)
    assert np.array_equal(decode_png(encode_png(rgb[:, ::-1])), rgb[:, ::-1])  # a non-contiguous view


def test_overlay_blend_matches_a_pixel_by_pixel_reference(demo_server, run_on_scene, clean_backend) -> None:
    """The overlay blends only the box around the labels: labels touching the image's sides, lone
    pixels and neighbouring segments still get the fill and edge colours a per-pixel rule gives."""
    from SlicerMCPLib.scene.rendering import _composite

    def check() -> None:
        node = clean_backend.scene.GetFirstNodeByClass("vtkMRMLSegmentationNode")
        display, segmentation = node.GetDisplayNode(), node.GetSegmentation()
        ids = [segmentation.GetNthSegmentID(i) for i in range(segmentation.GetNumberOfSegments())]
        display.SetSegmentOpacity2DFill(ids[0], 0.3)  # fill and edge alphas differ per segment
        display.SetSegmentOpacity2DOutline(ids[1], 0.6)
        values = [int(segmentation.GetSegment(i).GetLabelValue()) for i in ids]
        top = max(values) + 1  # a label no segment has: drawn nowhere, but it makes edges
        rng = np.random.default_rng(3)
        for trial in range(40):
            labels = np.zeros((48, 64), np.uint8)
            for _ in range(int(rng.integers(1, 5))):
                r, c = int(rng.integers(0, 48)), int(rng.integers(0, 64))
                labels[r : r + int(rng.integers(1, 15)), c : c + int(rng.integers(1, 20))] = rng.choice(
                    values + [top]
                )
            if trial % 3 == 0:
                labels[:, 0] = values[0]  # on the image's side: no margin there
            if trial % 4 == 0:
                labels[-1, 5] = values[-1]  # one pixel in the last row
            rgb = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
            expected = rgb.astype(np.int64)
            padded = np.pad(labels, 1, mode="edge")
            centre = padded[1:-1, 1:-1]
            edge = (
                (padded[:-2, 1:-1] != centre)
                | (padded[2:, 1:-1] != centre)
                | (padded[1:-1, :-2] != centre)
                | (padded[1:-1, 2:] != centre)
            )
            base = display.GetOpacity()
            for seg_id, value in zip(ids, values, strict=True):
                fill = base * display.GetOpacity2DFill() * display.GetSegmentOpacity2DFill(seg_id)
                line = base * display.GetOpacity2DOutline() * display.GetSegmentOpacity2DOutline(seg_id)
                colour = np.round(np.array(segmentation.GetSegment(seg_id).GetColor()) * 255).astype(np.int64)
                for where, a in ((~edge, fill), (edge, max(fill, line))):
                    at = where & (labels == value)
                    alpha = round(min(max(a, 0.0), 1.0) * 256)
                    expected[at] = (expected[at] * (256 - alpha) + colour * alpha + 128) >> 8
            _composite(rgb, labels, node, display, ids)
            assert np.array_equal(rgb, expected), trial

    run_on_scene(check)
