"""Off-screen renders of a headless scene for capture_screenshot.

Slice views: `vtkMRMLSliceLogic` reslices the background (and label) layer with the display
node's window/level into an RGBA image, in Slicer's orientation presets (radiological:
patient left on screen right in axial and coronal). Segmentations are composited on top
from their binary labelmap representation, resliced with the same XY->RAS matrix, filled
and outlined in the segment colours. Nothing here needs OpenGL.

3D view: an off-screen VTK render window (EGL) with Slicer's 3D displayable managers
(segment surfaces, models, CPU ray-cast volume rendering) for the layout's view node. When
nothing else would be visible, volume rendering of the background volume is turned on with a
shipped preset (SlicerMCPLib.volume_rendering).
Render windows and reslice filters are created once and reused. Main thread only.
"""

from __future__ import annotations

import ctypes.util
import logging
import os
import struct
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..core.errors import ScreenshotFailed
from ..core.models import ScreenshotInfo
from ..core.scene_backend import Screenshot
from .app import SLICE_VIEW_OF, slice_centre_range
from .data_io import reap_orphan_displays
from .markups import draw_on_slice as draw_markups

log = logging.getLogger(__name__)

DEFAULT_SIZE = 512
OFFSCREEN_HELP = (
    "off-screen OpenGL is not available, so the 3D view cannot be rendered. Install EGL with Mesa "
    "(Debian/Ubuntu: apt-get install libegl1 libegl-mesa0 libgl1-mesa-dri) and set "
    "VTK_DEFAULT_OPENGL_WINDOW=vtkEGLRenderWindow, then restart the server. Slice views still work."
)
_3D_MANAGERS = (
    "vtkMRMLCameraDisplayableManager",
    "vtkMRMLViewDisplayableManager",
    "vtkMRMLModelDisplayableManager",
    "vtkMRMLSegmentationsDisplayableManager3D",
    "vtkMRMLVolumeRenderingDisplayableManager",
    "vtkMRMLMarkupsDisplayableManager",
)
# (direction from the focal point to the camera in RAS, view-up)
_LOOK_FROM = {
    "left": ((-1, 0, 0), (0, 0, 1)),
    "right": ((1, 0, 0), (0, 0, 1)),
    "anterior": ((0, 1, 0), (0, 0, 1)),
    "posterior": ((0, -1, 0), (0, 0, 1)),
    "superior": ((0, 0, 1), (0, 1, 0)),
    "inferior": ((0, 0, -1), (0, 1, 0)),
}
# how "full" tiles each layout: rows of views
_FULL_TILES = {
    "OneUp3D": [["3d"]],
    "OneUpRedSlice": [["axial"]],
    "OneUpYellowSlice": [["sagittal"]],
    "OneUpGreenSlice": [["coronal"]],
    "Conventional": [["3d"], ["axial", "sagittal", "coronal"]],
    "ConventionalWidescreen": [["3d", "axial"], ["sagittal", "coronal"]],
    "Dual3D": [["3d"], ["axial", "sagittal", "coronal"]],
    "SideBySide": [["axial", "3d"]],
}
_FOUR_UP = [["axial", "3d"], ["sagittal", "coronal"]]

_offscreen: tuple[bool, str] | None = None


def offscreen_available() -> tuple[bool, str]:
    """Whether an off-screen OpenGL window can be made here (checked once, without crashing on a missing EGL)."""
    global _offscreen
    if _offscreen is None:
        _offscreen = _probe_offscreen()
    return _offscreen


def _probe_offscreen() -> tuple[bool, str]:
    wanted = os.environ.get("VTK_DEFAULT_OPENGL_WINDOW", "")
    if wanted == "vtkEGLRenderWindow" and not ctypes.util.find_library("EGL"):
        return False, OFFSCREEN_HELP
    if not wanted and not os.environ.get("DISPLAY"):
        return False, OFFSCREEN_HELP
    try:
        import vtk

        window = vtk.vtkRenderWindow()
        window.SetOffScreenRendering(1)
        window.SetSize(8, 8)
        window.AddRenderer(vtk.vtkRenderer())
        window.Render()
        ok = bool(window.SupportsOpenGL())
        window.Finalize()
    except Exception as exc:  # any failure to make a context means no 3D
        log.warning("off-screen OpenGL probe failed: %s", exc)
        return False, OFFSCREEN_HELP
    return (True, "") if ok else (False, OFFSCREEN_HELP)


def encode_png(rgb: np.ndarray, level: int = 1) -> bytes:
    """PNG bytes of an HxWx3 uint8 image (row 0 at the top), fast compression.

    Every row uses PNG's "Up" filter (the difference to the row above, one numpy subtraction):
    on rendered views it compresses ~3x faster than unfiltered rows, and smaller.
    """
    height, width, _ = rgb.shape
    rows = rgb.reshape(height, width * 3)
    raw = np.empty((height, width * 3 + 1), dtype=np.uint8)
    raw[:, 0] = 2  # filter type Up
    raw[0, 1:] = rows[0]
    np.subtract(rows[1:], rows[:-1], out=raw[1:, 1:])  # modulo 256, as PNG defines it

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw, level))
        + chunk(b"IEND", b"")
    )


def _vtk_rgb(image: Any) -> np.ndarray:
    """HxWx3 uint8, top row first, from a VTK image (bottom row first)."""
    from vtk.util import numpy_support

    dims = image.GetDimensions()
    pixels = numpy_support.vtk_to_numpy(image.GetPointData().GetScalars())
    pixels = pixels.reshape(dims[1], dims[0], -1)
    if pixels.shape[2] == 1:
        pixels = np.repeat(pixels, 3, axis=2)
    return np.ascontiguousarray(pixels[::-1, :, :3])


@dataclass
class SliceRender:
    rgb: np.ndarray
    scroll_position: float | None
    offset_mm: float | None
    volume_id: str | None
    notes: list[str]


class SliceView:
    """One slice view (Red, Yellow or Green): its slice logic and the overlay reslicers."""

    def __init__(self, app: Any, layout_name: str):
        import slicer

        self.app = app
        self.logic = slicer.vtkMRMLSliceLogic()
        self.logic.SetMRMLScene(app.scene)
        self.logic.SetMRMLApplicationLogic(app.app_logic)
        node = app.scene.GetSingletonNode(layout_name, "vtkMRMLSliceNode")
        if node is None:
            node = self.logic.AddSliceNode(layout_name)
        else:
            self.logic.SetSliceNode(node)
        self.node = node
        app.app_logic.GetSliceLogics().AddItem(self.logic)
        self._reslicers: dict[tuple[str, int], Any] = {}

    def render(self, scroll_position: float | None, size: int) -> SliceRender:
        notes: list[str] = []
        volume = self._background_volume()
        self.node.SetDimensions(size, size, 1)
        if volume is None:
            self._reslicers.clear()  # nothing is drawn: hold no labelmap voxels
            notes.append("the scene has no volume to show; load one with load_volume or load_sample_data")
            return SliceRender(np.zeros((size, size, 3), np.uint8), None, None, None, notes)
        self.logic.FitSliceToVolume(volume, size, size)
        lo, hi = self._offset_range(volume)
        position = 0.5 if scroll_position is None else scroll_position
        offset = lo + position * (hi - lo)
        self.logic.SetSliceOffset(offset)
        producer = self.logic.GetImageDataConnection().GetProducer()
        producer.Update()
        rgb = _vtk_rgb(producer.GetOutputDataObject(0))
        self._overlay_segmentations(rgb, size)
        draw_markups(rgb, self.app.scene, self.node.GetXYToRAS())
        return SliceRender(rgb, position, float(offset), volume.GetID(), notes)

    def _background_volume(self) -> Any:
        scene = self.app.scene
        composite = self.logic.GetSliceCompositeNode()
        volume = scene.GetNodeByID(composite.GetBackgroundVolumeID() or "")
        if volume is None or volume.GetImageData() is None:
            volume = None
            for class_name in ("vtkMRMLScalarVolumeNode", "vtkMRMLVolumeNode"):
                for i in range(scene.GetNumberOfNodesByClass(class_name)):
                    candidate = scene.GetNthNodeByClass(i, class_name)
                    if candidate.GetImageData() is not None and not candidate.IsA(
                        "vtkMRMLLabelMapVolumeNode"
                    ):
                        volume = candidate
                        break
                if volume is not None:
                    break
            if volume is None:
                label = scene.GetNodeByID(composite.GetLabelVolumeID() or "")
                return label if label is not None and label.GetImageData() is not None else None
            composite.SetBackgroundVolumeID(volume.GetID())
        return volume

    def _offset_range(self, volume: Any) -> tuple[float, float]:
        """Offsets of the first and last slice centres along the view normal."""
        bounds = [0.0] * 6
        self.logic.GetVolumeSliceBounds(volume, bounds)
        return slice_centre_range(bounds, self.logic.GetVolumeSliceSpacing(volume)[2])

    def _overlay_segmentations(self, rgb: np.ndarray, size: int) -> None:
        scene = self.app.scene
        present: set[str] = set()
        for i in range(scene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode")):
            node = scene.GetNthNodeByClass(i, "vtkMRMLSegmentationNode")
            present.add(node.GetID())
            display = node.GetDisplayNode()
            if display is None or not display.GetVisibility() or not display.GetVisibility2D():
                continue
            segmentation = node.GetSegmentation()
            if not segmentation.ContainsRepresentation("Binary labelmap"):
                continue
            for layer in range(segmentation.GetNumberOfLayers()):
                labels = self._reslice_layer(node, layer, size)
                if labels is not None:
                    _composite(rgb, labels, node, display, segmentation.GetSegmentIDsForLayer(layer))
        self._forget_except(present)

    def _reslice_layer(self, node: Any, layer: int, size: int) -> np.ndarray | None:
        import vtk
        from vtk.util import numpy_support

        image = node.GetSegmentation().GetLayerDataObject(layer)
        if image is None or image.GetPointData().GetScalars() is None:
            return None
        extent = image.GetExtent()
        if extent[1] < extent[0] or extent[3] < extent[2] or extent[5] < extent[4]:
            return None
        plain = vtk.vtkImageData()
        plain.ShallowCopy(image)
        plain.SetOrigin(0, 0, 0)
        plain.SetSpacing(1, 1, 1)
        plain.SetDirectionMatrix(1, 0, 0, 0, 1, 0, 0, 0, 1)
        world_to_ijk = vtk.vtkMatrix4x4()
        image.GetWorldToImageMatrix(world_to_ijk)
        transform = node.GetParentTransformNode()
        if transform is not None:  # RAS -> segmentation's local space
            to_local = vtk.vtkMatrix4x4()
            transform.GetMatrixTransformFromWorld(to_local)
            vtk.vtkMatrix4x4.Multiply4x4(world_to_ijk, to_local, world_to_ijk)
        axes = vtk.vtkMatrix4x4()
        vtk.vtkMatrix4x4.Multiply4x4(world_to_ijk, self.node.GetXYToRAS(), axes)

        key = (node.GetID(), layer)
        reslice = self._reslicers.get(key)
        if reslice is None:
            reslice = vtk.vtkImageReslice()
            reslice.SetInterpolationModeToNearestNeighbor()
            reslice.SetBackgroundLevel(0)
            reslice.SetOutputSpacing(1, 1, 1)
            reslice.SetOutputOrigin(0, 0, 0)
            reslice.SetNumberOfThreads(1)  # one slice of labels: starting threads costs more than it saves
            self._reslicers[key] = reslice
        reslice.SetInputData(plain)
        reslice.SetResliceAxes(axes)
        reslice.SetOutputExtent(0, size - 1, 0, size - 1, 0, 0)
        reslice.Update()
        out = reslice.GetOutput()
        labels = numpy_support.vtk_to_numpy(out.GetPointData().GetScalars()).reshape(size, size)
        return labels[::-1]

    def _forget_except(self, keep_ids: set[str]) -> None:
        """Drop the reslicers of removed segmentations: each holds its input labelmap's voxels."""
        for key in [k for k in self._reslicers if k[0] not in keep_ids]:
            del self._reslicers[key]


def _composite(rgb: np.ndarray, labels: np.ndarray, node: Any, display: Any, segment_ids: list[str]) -> None:
    """Fill and outline the visible segments of one labelmap layer in their colours.

    Integer blending through per-label tables (alpha in 1/256 steps, colour) over the rows the
    segments cover: ~4x faster than gathering the covered pixels and blending in float.
    """
    top = int(labels.max()) if labels.size else 0
    if top <= 0:
        return
    segmentation = node.GetSegmentation()
    colors = np.zeros((top + 1, 3), np.uint16)
    fill = np.zeros(top + 1, np.float64)
    outline = np.zeros(top + 1, np.float64)
    base = float(display.GetOpacity())
    for seg_id in segment_ids:
        segment = segmentation.GetSegment(seg_id)
        value = int(segment.GetLabelValue()) if segment is not None else 0
        if not 0 < value <= top or not display.GetSegmentVisibility(seg_id):
            continue
        colors[value] = np.clip(np.round(np.array(segment.GetColor(), np.float64) * 255.0), 0, 255)
        if display.GetVisibility2DFill() and display.GetSegmentVisibility2DFill(seg_id):
            fill[value] = base * display.GetOpacity2DFill() * display.GetSegmentOpacity2DFill(seg_id)
        if display.GetVisibility2DOutline() and display.GetSegmentVisibility2DOutline(seg_id):
            outline[value] = base * display.GetOpacity2DOutline() * display.GetSegmentOpacity2DOutline(seg_id)
    fill_a = np.round(np.clip(fill, 0.0, 1.0) * 256).astype(np.uint16)
    edge_a = np.round(np.clip(np.maximum(outline, fill), 0.0, 1.0) * 256).astype(np.uint16)
    if not fill_a.any() and not edge_a.any():
        return
    full = labels if labels.dtype.kind == "u" else np.clip(labels, 0, top)
    covered = np.flatnonzero(full.any(axis=1))
    rows = slice(max(0, int(covered[0]) - 1), int(covered[-1]) + 2)  # one more row each side: edges
    covered = np.flatnonzero(full[rows].any(axis=0))
    cols = slice(max(0, int(covered[0]) - 1), int(covered[-1]) + 2)
    # the box around the labels and a margin of background (or the image's border): outside it
    # every pixel is background too, so no edge crosses the box's sides
    lab = full[rows, cols]
    edge = np.zeros(lab.shape, bool)
    vertical = lab[1:, :] != lab[:-1, :]  # both pixels of a differing pair are edge pixels
    edge[1:, :] |= vertical
    edge[:-1, :] |= vertical
    horizontal = lab[:, 1:] != lab[:, :-1]
    edge[:, 1:] |= horizontal
    edge[:, :-1] |= horizontal
    # one index per pixel into tables of (label, inside or edge): the pixel's alpha and its
    # colour times alpha (+ 128 to round) come from one gather each, no masked gather
    index = edge.astype(np.uint16)
    index *= top + 1
    index += lab
    alpha = np.concatenate([fill_a, edge_a])
    keep = np.take(256 - alpha, index)
    tinted = np.concatenate([colors, colors]) * alpha[:, None] + 128  # <= 255 * 256 + 128: fits uint16
    window = rgb[rows, cols]
    for channel in range(3):  # np.take per channel: a gather from an (n, 3) table is ~20x slower
        blended = window[..., channel] * keep
        blended += np.take(tinted[:, channel], index)
        blended >>= 8
        window[..., channel] = blended


def _background_volume_for_3d(scene: Any) -> Any:
    """The Red view's background volume, else the first scalar volume with voxels."""
    composite = scene.GetSingletonNode("Red", "vtkMRMLSliceCompositeNode")
    volume = scene.GetNodeByID(composite.GetBackgroundVolumeID() or "") if composite is not None else None
    if volume is not None and volume.GetImageData() is not None:
        return volume
    for i in range(scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode")):
        candidate = scene.GetNthNodeByClass(i, "vtkMRMLScalarVolumeNode")
        if candidate.GetImageData() is not None and not candidate.IsA("vtkMRMLLabelMapVolumeNode"):
            return candidate
    return None


class ThreeDView:
    """The layout's 3D view node drawn by Slicer's 3D displayable managers in an off-screen window."""

    def __init__(self, app: Any):
        import slicer
        import vtk

        ok, why = offscreen_available()
        if not ok:
            raise ScreenshotFailed(
                why, details={"install": "apt-get install libegl1 libegl-mesa0 libgl1-mesa-dri"}
            )
        self.app = app
        self.view_node = app.scene.GetSingletonNode("1", "vtkMRMLViewNode")
        if self.view_node is None:
            self.view_node = app.scene.AddNewNodeByClass("vtkMRMLViewNode")
        self.renderer = vtk.vtkRenderer()
        self.window = vtk.vtkRenderWindow()
        self.window.SetOffScreenRendering(1)
        self.window.AddRenderer(self.renderer)
        self.interactor = vtk.vtkRenderWindowInteractor()
        self.interactor.SetRenderWindow(self.window)
        self.interactor.Initialize()
        factory = slicer.vtkMRMLThreeDViewDisplayableManagerFactory.GetInstance()
        factory.SetMRMLApplicationLogic(app.app_logic)
        for manager in _3D_MANAGERS:
            if not factory.IsDisplayableManagerRegistered(manager):
                factory.RegisterDisplayableManager(manager)
        self.managers = factory.InstantiateDisplayableManagers(self.renderer)
        self.managers.SetMRMLDisplayableNode(self.view_node)
        self.grabber = vtk.vtkWindowToImageFilter()
        self.grabber.SetInput(self.window)
        self.grabber.ReadFrontBufferOff()
        self._look: str | None = None

    def render(self, look_from_axis: str | None, size: int) -> tuple[np.ndarray, list[str]]:
        notes = self._prepare_content()
        self.window.SetSize(size, size)
        look = look_from_axis or self._look or "anterior"
        self._look = look
        direction, up = _LOOK_FROM[look]
        camera = self.renderer.GetActiveCamera()
        camera.SetFocalPoint(0, 0, 0)
        camera.SetPosition(*direction)
        camera.SetViewUp(*up)
        self.renderer.ResetCamera()
        self.renderer.ResetCameraClippingRange()
        self.window.Render()
        self.grabber.Modified()
        self.grabber.Update()
        return _vtk_rgb(self.grabber.GetOutput()), notes

    def _prepare_content(self) -> list[str]:
        """Segment surfaces need the closed-surface representation; make it like Slicer's 3D view does."""
        scene = self.app.scene
        notes = []
        shown = 0
        for i in range(scene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode")):
            node = scene.GetNthNodeByClass(i, "vtkMRMLSegmentationNode")
            display = node.GetDisplayNode()
            if display is None or not display.GetVisibility() or not display.GetVisibility3D():
                continue
            if node.GetSegmentation().GetNumberOfSegments() and node.CreateClosedSurfaceRepresentation():
                shown += 1
        for class_name in (
            "vtkMRMLVolumeRenderingDisplayNode",
            "vtkMRMLModelDisplayNode",
            "vtkMRMLMarkupsDisplayNode",
        ):
            for i in range(scene.GetNumberOfNodesByClass(class_name)):
                if scene.GetNthNodeByClass(i, class_name).GetVisibility():
                    shown += 1
        if not shown:
            volume = _background_volume_for_3d(scene)
            if volume is None:
                notes.append(
                    "nothing is visible in 3D: the view shows segmentations as surfaces, models, and "
                    "volume rendering; load a volume or a segmentation first"
                )
            else:
                from .volume_rendering import enable

                preset = enable(self.app, volume)
                notes.append(
                    f"nothing else was visible in 3D, so volume rendering of {volume.GetID()} was turned on "
                    f"(CPU ray casting, preset {preset})"
                )
        return notes

    def close(self) -> None:
        self.managers.SetMRMLDisplayableNode(None)
        self.window.Finalize()


class SceneRenderer:
    """The headless views of one scene, created on first use and reused."""

    def __init__(self, app: Any):
        self.app = app
        self._slices: dict[str, SliceView] = {}
        self._threed: ThreeDView | None = None
        self._reaper: int | None = None  # observer tag of data_io.reap_orphan_displays

    def slice_view(self, view_type: str) -> SliceView:
        name = SLICE_VIEW_OF[view_type]
        if name not in self._slices:
            if self._reaper is None:
                self._reaper = reap_orphan_displays(self.app.scene)
            self._slices[name] = SliceView(self.app, name)
        return self._slices[name]

    def threed_view(self) -> ThreeDView:
        if self._threed is None:
            self._threed = ThreeDView(self.app)
        return self._threed

    def capture(
        self, view_type: str, scroll_position: float | None, look_from_axis: str | None, size: int | None
    ) -> Screenshot:
        size = size or DEFAULT_SIZE
        info = ScreenshotInfo(view_type=view_type, width=size, height=size, renderer="headless-vtk")  # type: ignore[arg-type]
        if view_type in SLICE_VIEW_OF:
            done = self.slice_view(view_type).render(scroll_position, size)
            info.scroll_position = done.scroll_position
            info.slice_offset_mm = done.offset_mm
            info.background_volume_id = done.volume_id
            info.notes = done.notes
            return Screenshot(png=encode_png(done.rgb), info=info)
        if view_type == "3d":
            rgb, notes = self.threed_view().render(look_from_axis, size)
            info.look_from_axis = look_from_axis  # type: ignore[assignment]
            info.notes = notes
            return Screenshot(png=encode_png(rgb), info=info)
        rgb, notes = self._tiled_layout(scroll_position, look_from_axis, size)
        info.width, info.height = rgb.shape[1], rgb.shape[0]
        info.notes = notes
        return Screenshot(png=encode_png(rgb), info=info)

    def _tiled_layout(
        self, scroll_position: float | None, look_from_axis: str | None, size: int
    ) -> tuple[np.ndarray, list[str]]:
        """The layout's views tiled into one image of about `size` pixels wide."""
        import slicer

        from .app import LAYOUT_IDS

        arrangement = self.app.layout_node.GetViewArrangement()
        name = next(
            (
                n
                for n, attr in LAYOUT_IDS.items()
                if int(getattr(slicer.vtkMRMLLayoutNode, attr)) == arrangement
            ),
            "FourUp",
        )
        rows = _FULL_TILES.get(name, _FOUR_UP)
        columns = max(len(r) for r in rows)
        tile = max(16, size // columns)
        canvas = np.zeros((tile * len(rows), tile * columns, 3), np.uint8)
        notes = [f"layout {name}"]
        for r, row in enumerate(rows):
            cell_w = tile * columns // len(row)
            for c, view in enumerate(row):
                rgb, more = self._tile(view, scroll_position, look_from_axis, tile)
                notes.extend(n for n in more if n not in notes)
                x = c * cell_w + (cell_w - tile) // 2
                canvas[r * tile : (r + 1) * tile, x : x + tile] = rgb
        return canvas, notes

    def _tile(
        self, view: str, scroll_position: float | None, look_from_axis: str | None, tile: int
    ) -> tuple[np.ndarray, list[str]]:
        if view != "3d":
            done = self.slice_view(view).render(scroll_position, tile)
            return done.rgb, done.notes
        try:
            return self.threed_view().render(look_from_axis, tile)
        except ScreenshotFailed as exc:
            return np.zeros((tile, tile, 3), np.uint8), [exc.message]

    def close(self) -> None:
        if self._threed is not None:
            self._threed.close()
            self._threed = None
        for view in self._slices.values():
            self.app.app_logic.GetSliceLogics().RemoveItem(view.logic)
        self._slices.clear()
