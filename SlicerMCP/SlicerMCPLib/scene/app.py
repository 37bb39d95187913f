"""Where the scene lives: `SceneApp` is what MrmlBackend needs from its host.

`HeadlessApp` (SlicerMCPLib.headless) bootstraps a scene from the slicer-core wheel;
`SlicerGuiApp` wraps a running Slicer: `slicer.mrmlScene`, the module logics and the
layout manager, whose real views are grabbed for screenshots. The GUI-only code paths
are all in this file and kept small.
"""

from __future__ import annotations

from typing import Any, Protocol

from ..core.errors import ScreenshotFailed

LAYOUT_IDS: dict[str, str] = {
    "FourUp": "SlicerLayoutFourUpView",
    "OneUp3D": "SlicerLayoutOneUp3DView",
    "OneUpRedSlice": "SlicerLayoutOneUpRedSliceView",
    "OneUpYellowSlice": "SlicerLayoutOneUpYellowSliceView",
    "OneUpGreenSlice": "SlicerLayoutOneUpGreenSliceView",
    "Conventional": "SlicerLayoutConventionalView",
    "ConventionalWidescreen": "SlicerLayoutConventionalWidescreenView",
    "ThreeOverThree": "SlicerLayoutThreeOverThreeView",
    "FourOverFour": "SlicerLayoutFourOverFourView",
    "Dual3D": "SlicerLayoutDual3DView",
    "SideBySide": "SlicerLayoutSideBySideView",
    "CompareView": "SlicerLayoutCompareView",
}
SLICE_VIEW_OF = {"axial": "Red", "sagittal": "Yellow", "coronal": "Green"}


class SceneApp(Protocol):
    kind: str  # "headless" or "mrml"
    gui: bool
    version: str | None
    scene: Any
    app_logic: Any
    volumes_logic: Any
    segmentations_logic: Any
    layout_node: Any


def layout_id(slicer: Any, layout: str) -> int:
    return int(getattr(slicer.vtkMRMLLayoutNode, LAYOUT_IDS[layout]))


class SlicerGuiApp:
    """A running Slicer application (inside the SlicerMCP module)."""

    kind = "mrml"
    gui = True

    def __init__(self) -> None:
        import slicer

        self.slicer = slicer
        self.scene = slicer.mrmlScene
        self.app_logic = slicer.app.applicationLogic()
        self.volumes_logic = slicer.modules.volumes.logic()
        self.segmentations_logic = slicer.modules.segmentations.logic()
        self.layout_node = slicer.app.layoutManager().layoutLogic().GetLayoutNode()
        self.version = slicer.app.applicationVersion

    def set_layout(self, layout: str, gui_mode: str | None) -> list[str]:
        self.slicer.app.layoutManager().setLayout(layout_id(self.slicer, layout))
        if gui_mode is not None:
            full = gui_mode == "full"
            self.slicer.util.setToolbarsVisible(full)
            self.slicer.util.setMenuBarsVisible(full)
            self.slicer.util.setModulePanelTitleVisible(full)
            self.slicer.util.setDataProbeVisible(full)
            self.slicer.util.setPythonConsoleVisible(full)
            self.slicer.util.setStatusBarVisible(full)
            self.slicer.util.findChild(self.slicer.util.mainWindow(), "PanelDockWidget").setVisible(full)
        return []

    def grab_view(
        self,
        view_type: str,
        scroll_position: float | None,
        size: int | None,
        look_from_axis: str | None = None,
    ) -> tuple[bytes, int, int, float | None]:
        """PNG of the real view widget (what the user sees), its size and the slice offset."""
        lm = self.slicer.app.layoutManager()
        offset = None
        # a view the layout has never shown has no widget yet: None, not an AttributeError
        no_view = ScreenshotFailed(f"the current layout has no {view_type} view; call set_layout first")
        if view_type == "3d":
            three_d = lm.threeDWidget(0)
            if three_d is None:
                raise no_view
            widget = three_d.threeDView()
            if look_from_axis:
                ctk = __import__("ctk")
                widget.lookFromViewAxis(getattr(ctk.ctkAxesWidget, look_from_axis.capitalize()))
                widget.resetFocalPoint()
        elif view_type == "full":
            widget = lm.viewport()
        else:
            slice_widget = lm.sliceWidget(SLICE_VIEW_OF[view_type])
            if slice_widget is None:
                raise no_view
            logic = slice_widget.sliceLogic()
            if scroll_position is not None:
                lo, hi = _offset_range(logic)
                logic.SetSliceOffset(lo + scroll_position * (hi - lo))
            offset = float(logic.GetSliceOffset())
            widget = slice_widget.sliceView()
        if widget is None:
            raise no_view
        qt = __import__("qt")
        self.slicer.util.forceRenderAllViews()
        pixmap = widget.grab()
        if size:
            pixmap = pixmap.scaled(size, size, qt.Qt.KeepAspectRatio, qt.Qt.SmoothTransformation)
        buffer = qt.QBuffer()
        buffer.open(qt.QIODevice.WriteOnly)
        pixmap.save(buffer, "PNG")
        data = buffer.data()
        png = bytes(data.data()) if hasattr(data, "data") else bytes(data)
        return png, pixmap.width(), pixmap.height(), offset


def _offset_range(logic: Any) -> tuple[float, float]:
    bounds = [0.0] * 6
    logic.GetLowestVolumeSliceBounds(bounds)
    return slice_centre_range(bounds, logic.GetLowestVolumeSliceSpacing()[2])


def slice_centre_range(bounds: Any, spacing: float) -> tuple[float, float]:
    """Offsets of the first and last slice centres, from slice-space bounds (voxel edges) and the
    spacing along the view normal: scroll_position 0 and 1 land on a slice, not between two."""
    step = abs(spacing)
    lo, hi = bounds[4] + step / 2, bounds[5] - step / 2
    if hi < lo:
        lo = hi = (bounds[4] + bounds[5]) / 2
    return lo, hi
