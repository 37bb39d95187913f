"""`MrmlBackend`: the scene tools on a real vtkMRMLScene, headless or inside Slicer.

Every MRML/VTK call runs on the main thread through `gateway.acall(fn, timeout)`; the
helpers in mrml_nodes / data_io / mrml_measure and SlicerMCPLib.rendering are plain
functions that assume they already are on it.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import anyio.to_thread
import numpy as np

from ..core.config import Config
from ..core.errors import InvalidParameter, SlicerTimeout
from ..core.gateway import MainThreadGateway
from ..core.models import (
    LAYOUT_NAMES,
    ClearResult,
    GuiMode,
    LayoutResult,
    LoadedNodes,
    LookFromAxis,
    NodeDetails,
    NodeList,
    NodeSummary,
    PythonResult,
    SceneStatus,
    ScreenshotInfo,
    ViewType,
    VolumeMeasurement,
)
from ..core.progress import Progress
from ..core.scene_backend import SceneBackend, SceneChanges, Screenshot, SegmentationArray, VolumeArray
from ..scene import data_io, segment_io
from ..scene import measure as mrml_measure
from ..scene import nodes as mrml_nodes
from ..scene.app import SceneApp, layout_id
from ..scene.edit_history import EditHistory, Workspace
from ..scene.python_exec import Namespaces, release_removed_nodes, run_code
from ..scene.volume_files import vet_volume_file

log = logging.getLogger(__name__)
T = TypeVar("T")


class MrmlBackend(SceneBackend):
    """The scene operations on `app.scene`; `app` is a HeadlessApp or a SlicerGuiApp."""

    def __init__(self, gateway: MainThreadGateway, config: Config, app: SceneApp):
        self.gateway = gateway
        self.config = config
        self.app = app
        self.kind = app.kind
        self._renderer: Any = None
        self._namespaces = Namespaces()
        self._volumes = mrml_nodes.VolumeInfoCache(app.scene)
        self._index: mrml_nodes.SceneIndex | None = None  # made on the main thread, on first use
        self._label_counts = mrml_measure.LabelCounts()
        self._workspace = Workspace(app, EditHistory(app.scene))
        self._watcher: Any = None  # scene.watch.SceneWatcher, made on the main thread on first use

    @property
    def scene(self) -> Any:
        return self.app.scene

    async def _scene_call(self, fn: Callable[[], Any], timeout: float | None = None) -> Any:
        return await self.gateway.acall(fn, timeout or self.config.timeouts.scene_s)

    # -- reading -----------------------------------------------------------------------------------
    async def status(self) -> SceneStatus:
        def run() -> SceneStatus:
            scene = self.scene
            volumes = scene.GetNumberOfNodesByClass("vtkMRMLVolumeNode")
            segmentations = scene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode")
            notes = []
            rendering_3d = None
            if not self.app.gui:
                from ..scene.rendering import offscreen_available

                rendering_3d, why = offscreen_available()
                if not rendering_3d:
                    notes.append(why)
                notes.append("headless scene: no GUI; screenshots are off-screen renders")
            return SceneStatus(
                backend=self.kind,
                slicer_version=self.app.version,
                node_count=scene.GetNumberOfNodes(),
                volume_count=volumes,
                segmentation_count=segmentations,
                gui=self.app.gui,
                rendering_3d=rendering_3d,
                notes=notes,
            )

        return await self._scene_call(run)

    async def list_nodes(self, class_name: str | None, name: str | None, offset: int, limit: int) -> NodeList:
        if offset < 0 or limit < 1:
            raise InvalidParameter(
                "offset must be >= 0 and limit >= 1", details={"offset": offset, "limit": limit}
            )
        return await self._scene_call(
            lambda: mrml_nodes.list_nodes(
                self.scene, class_name, name, offset, limit, self._volumes, self._scene_index()
            )
        )

    async def scene_changes(self) -> SceneChanges:
        def start() -> SceneChanges:
            if self._watcher is None:
                from ..scene.watch import SceneWatcher

                self._watcher = SceneWatcher(self.scene)
            return self._watcher

        return self._watcher or await self._scene_call(start)

    def _scene_index(self) -> mrml_nodes.SceneIndex:
        if self._index is None:
            self._index = mrml_nodes.SceneIndex(self.scene)
        return self._index

    async def get_node(self, node_id: str) -> NodeDetails:
        return await self._scene_call(lambda: mrml_nodes.details(self.scene, node_id))

    async def measure_volume(self, node_id: str, segment: str | None) -> VolumeMeasurement:
        return await self._scene_call(
            lambda: mrml_measure.measure(self.scene, node_id, segment, self._label_counts)
        )

    async def capture_screenshot(
        self,
        view_type: ViewType,
        scroll_position: float | None,
        look_from_axis: LookFromAxis | None,
        size: int | None,
    ) -> Screenshot:
        if view_type not in ("axial", "sagittal", "coronal", "3d", "full"):
            raise InvalidParameter(
                f"unknown view_type {view_type!r}; use axial, sagittal, coronal, 3d or full",
                details={"view_type": view_type},
            )
        if scroll_position is not None and not 0.0 <= scroll_position <= 1.0:
            raise InvalidParameter(
                f"scroll_position must be between 0 and 1, got {scroll_position}",
                details={"scroll_position": scroll_position},
            )
        if size is not None and not 16 <= size <= 4096:
            raise InvalidParameter(
                f"size must be between 16 and 4096 pixels, got {size}", details={"size": size}
            )

        def run() -> Screenshot:
            if self.app.gui:
                png, width, height, offset = self.app.grab_view(  # type: ignore[attr-defined]
                    view_type, scroll_position, size, look_from_axis
                )
                info = ScreenshotInfo(
                    view_type=view_type,
                    width=width,
                    height=height,
                    scroll_position=scroll_position,
                    slice_offset_mm=offset,
                    look_from_axis=look_from_axis,
                    renderer="slicer",
                )
                return Screenshot(png=png, info=info)
            return self._headless_renderer().capture(view_type, scroll_position, look_from_axis, size)

        return await self._scene_call(run, self.config.timeouts.screenshot_s)

    def _headless_renderer(self) -> Any:
        if self._renderer is None:
            from ..scene.rendering import SceneRenderer

            self._renderer = SceneRenderer(self.app)
        return self._renderer

    # -- changing ----------------------------------------------------------------------------------
    async def load_volume(self, path: Path, labelmap: bool, name: str | None) -> LoadedNodes:
        return await self._load(path, labelmap, name, str(path))

    async def load_sample_data(self, name: str, fetch_local: Callable[[], Awaitable[Path]]) -> LoadedNodes:
        path = await fetch_local()
        return await self._load(path, False, name, name)

    async def _load(self, path: Path, labelmap: bool, name: str | None, source: str) -> LoadedNodes:
        # the header and every file it names are checked, and the voxels read, on a worker thread:
        # the main thread only makes the node, so the server keeps answering during a large load
        limit = self.config.limits.volume_bytes()
        await anyio.to_thread.run_sync(vet_volume_file, path, limit)
        prepared = await anyio.to_thread.run_sync(data_io.read_volume_file, path, labelmap, name)

        def run() -> LoadedNodes:
            nodes = data_io.load_file(self.app, path, labelmap, name, prepared)
            return LoadedNodes(nodes=[mrml_nodes.summary(n) for n in nodes], source=source)

        return await self._scene_call(run, self.config.timeouts.load_s)

    async def set_layout(self, layout: str, gui_mode: GuiMode | None) -> LayoutResult:
        if layout not in LAYOUT_NAMES:
            raise InvalidParameter(
                f"unknown layout {layout!r}; use one of {', '.join(LAYOUT_NAMES)}",
                details={"layout": layout, "layouts": list(LAYOUT_NAMES)},
            )
        if gui_mode is not None and gui_mode not in ("full", "viewers"):
            raise InvalidParameter(
                f"gui_mode must be full or viewers, got {gui_mode!r}", details={"gui_mode": gui_mode}
            )

        def run() -> LayoutResult:
            if self.app.gui:
                notes = self.app.set_layout(layout, gui_mode)  # type: ignore[attr-defined]
                return LayoutResult(layout=layout, gui_mode=gui_mode, applied=True, notes=notes)
            import slicer

            self.app.layout_node.SetViewArrangement(layout_id(slicer, layout))
            notes = [
                f"headless scene: layout {layout} is recorded in the layout node (capture_screenshot "
                "view_type=full composes its views), but no window shows it"
            ]
            if gui_mode is not None:
                notes.append(
                    f"headless scene: gui_mode={gui_mode} has no effect, there is no application window"
                )
            return LayoutResult(layout=layout, gui_mode=gui_mode, applied=False, notes=notes)

        return await self._scene_call(run)

    async def execute_python(self, code: str, session_key: str, timeout_s: float) -> PythonResult:
        def run() -> PythonResult:
            namespace = self._namespaces.get(session_key)
            if "scene" not in namespace:
                namespace.update(self._python_seed())
            if not self.app.gui:
                # slicer.util's helpers (addVolumeFromArray, getNode...) use slicer.mrmlScene: in a
                # process with more than one headless scene it must be this one while the code runs
                import slicer

                slicer.mrmlScene = self.scene
            try:
                return run_code(code, namespace, timeout_s, self.config.limits.python_bytes())
            finally:
                release_removed_nodes(namespace)

        grace = self.config.limits.python_stop_grace_s
        try:
            return await self.gateway.acall(run, timeout_s + grace)
        except SlicerTimeout as exc:
            if not exc.details.get("started"):
                raise
            raise SlicerTimeout(
                f"execute_python was told to stop at {timeout_s:g} s but is still running {grace:g} s later: "
                "it is inside one long C call (a library function), which Python cannot interrupt. Every "
                "scene call waits until that call returns. If it does not, restart the server (SIGTERM "
                "stops it within limits.python_stop_grace_s).",
                details={**exc.details, "stoppable": False},
            ) from None

    def _python_seed(self) -> dict[str, Any]:
        import slicer
        import vtk

        return {
            "slicer": slicer,
            "vtk": vtk,
            "np": np,
            "scene": self.scene,
            "mrmlScene": self.scene,
            "app": self.app,
        }

    async def clear_scene(self) -> ClearResult:
        def run() -> int:
            self._workspace.history.clear()  # its steps name nodes that are gone
            return data_io.clear_data(self.scene)

        return ClearResult(removed_nodes=await self._scene_call(run))

    async def run_analysis(self, work: Callable[[Workspace], T], progress: Progress | None) -> T:
        def run() -> T:
            self._workspace.progress = progress
            try:
                return work(self._workspace)
            finally:
                self._workspace.progress = None

        return await self._scene_call(run, self.config.timeouts.load_s)

    def allocate_voxels(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        return data_io.allocate_voxels(shape, dtype)

    async def add_volume(self, volume: VolumeArray) -> NodeSummary:
        # copying voxels into VTK and estimating the window happen here, off the main thread
        prepared = await anyio.to_thread.run_sync(data_io.prepare_volume, volume)
        return await self._scene_call(
            lambda: mrml_nodes.summary(data_io.add_volume(self.app, prepared)), self.config.timeouts.load_s
        )

    async def export_volume(self, node_id: str) -> VolumeArray:
        def run() -> VolumeArray:
            node = mrml_nodes.find_node(self.scene, node_id, "vtkMRMLScalarVolumeNode", "export_volume")
            return data_io.export_volume(node)

        return await self._scene_call(run, self.config.timeouts.load_s)

    async def export_segmentation(
        self, node_id: str, segments: list[str] | None, reference_volume_id: str | None
    ) -> SegmentationArray:
        return await self._scene_call(
            lambda: segment_io.export_segments(
                self.app, node_id, segments, reference_volume_id, "export_dicom_seg"
            ),
            self.config.timeouts.load_s,
        )

    async def add_segmentation(self, segmentation: SegmentationArray) -> NodeSummary:
        return await self._scene_call(
            lambda: mrml_nodes.summary(segment_io.add_segmentation(self.app, segmentation, "load_series")),
            self.config.timeouts.load_s,
        )

    async def close(self) -> None:
        """Release render windows and scene observers (on the main thread)."""
        helpers = [
            h
            for h in (self._renderer, self._index, self._volumes, self._label_counts, self._watcher)
            if h is not None
        ]
        self._renderer = self._index = self._watcher = None
        for helper in helpers:
            try:
                await self.gateway.acall(helper.close, 10.0)
            except Exception as exc:  # closing must not fail the shutdown
                log.warning("closing %s failed: %s", type(helper).__name__, exc)

    def describe(self) -> dict[str, Any]:
        return {"backend": self.kind, "slicer_version": self.app.version}
