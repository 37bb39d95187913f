"""`SceneBackend`: what the tool catalog needs from a scene, whoever holds it.

Implementations: `MrmlBackend` (a real vtkMRMLScene, inside Slicer or headless through
the main-thread gateway) and `WebServerBackend` (Slicer's WebServer over HTTP). The tools
validate their arguments' shapes; a backend validates what depends on the scene (node ids,
node classes) and raises `SlicerMCPError` subclasses with codes.
"""

from __future__ import annotations

import abc
import logging
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import numpy as np

from .errors import NotSupported
from .models import (
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
from .progress import Progress

T = TypeVar("T")
log = logging.getLogger(__name__)


@dataclass
class Screenshot:
    png: bytes
    info: ScreenshotInfo


@dataclass
class VolumeArray:
    """A scalar volume as plain data: voxels indexed [k, j, i] and the IJK->RAS matrix."""

    array: np.ndarray
    ijk_to_ras: np.ndarray
    name: str
    attributes: dict[str, str] = field(default_factory=dict)
    is_labelmap: bool = False
    window_level: tuple[float, float] | None = None  # (window, level); None: estimated from the voxels
    value_range: tuple[float, float] | None = None  # exact min and max when the producer knows them


@dataclass
class SegmentMask:
    """One segment as a boolean mask [k, j, i] on its reference volume's voxel grid."""

    segment_id: str
    name: str
    mask: np.ndarray
    color: tuple[float, float, float] = (1.0, 0.0, 0.0)
    terminology: str | None = None  # Slicer's "TerminologyEntry" tag, when the segment has one


@dataclass
class SegmentationArray:
    """Segments of a segmentation node resampled onto a reference volume (the DICOM SEG's source)."""

    name: str
    segments: list[SegmentMask]
    reference_volume_id: str
    attributes: dict[str, str] = field(
        default_factory=dict
    )  # exported: the reference volume's; added: the node's
    ijk_to_ras: np.ndarray | None = None  # the reference volume's grid


class NodeName(NamedTuple):
    """What completions and the resource list need of a node, read without a scene call."""

    node_id: str
    name: str
    class_name: str
    data: bool = True  # False for application nodes (views, cameras, colour tables, singletons)


class SceneChanges(abc.ABC):
    """What changed in a scene since the last `take`, noted on the main thread, read from any thread.

    Listeners are called on the thread that changed the scene (the main thread) after each
    change: they must only schedule work elsewhere (e.g. `loop.call_soon_threadsafe`).
    """

    @abc.abstractmethod
    def add_listener(self, listener: Callable[[], None]) -> Callable[[], None]:
        """Register `listener`; returns the function that unregisters it."""

    @abc.abstractmethod
    def take(self) -> tuple[dict[str, str], bool]:
        """({node id: class name} of nodes added, removed or modified; whether the set of nodes or their
        names changed)."""

    @abc.abstractmethod
    def names(self) -> list[NodeName]:
        """Every node's id, name and class as of the last change."""

    async def watch(self, node_ids: frozenset[str]) -> None:  # noqa: B027 - optional hook
        """A client subscribes (to these nodes, among other resources): a source that has to poll to
        see changes polls from now on (its first look done on return) and looks at these nodes first.
        Observers see every change anyway and need nothing."""

    def unwatch(self) -> None:  # noqa: B027 - optional hook
        """No client subscribes any more: a polling source stops."""

    def live(self) -> bool:
        """Whether the notes and `names` follow the scene now (a polling source: only while it polls)."""
        return True


class ChangeNotes(SceneChanges):
    """What every change source keeps: notes under a lock, taken by readers; listeners told of each."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._modified: dict[str, str] = {}  # node id -> class name
        self._set_changed = False
        self._listeners: list[Callable[[], None]] = []

    def add_listener(self, listener: Callable[[], None]) -> Callable[[], None]:
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    def take(self) -> tuple[dict[str, str], bool]:
        with self._lock:
            modified, changed = self._modified, self._set_changed
            self._modified, self._set_changed = {}, False
        return modified, changed

    def _note(self, node_id: str | None, class_name: str | None, *, set_changed: bool) -> None:
        with self._lock:
            if node_id is not None:
                self._modified[node_id] = class_name or ""
            self._set_changed = self._set_changed or set_changed
        self._tell()

    def _tell(self) -> None:
        for listener in list(self._listeners):
            try:
                listener()
            except Exception:  # a broken listener must not break the change that told it
                log.exception("scene change listener %r failed", listener)


class SceneBackend(abc.ABC):
    """The scene operations behind the scene tools (and the scene side of DICOM loading)."""

    kind: str = "abstract"

    @abc.abstractmethod
    async def status(self) -> SceneStatus: ...

    @abc.abstractmethod
    async def list_nodes(self, class_name: str | None, name: str | None, offset: int, limit: int) -> NodeList:
        """Nodes whose class matches `class_name` (exact or base class) and whose name contains `name`."""

    @abc.abstractmethod
    async def get_node(self, node_id: str) -> NodeDetails: ...

    @abc.abstractmethod
    async def capture_screenshot(
        self,
        view_type: ViewType,
        scroll_position: float | None,
        look_from_axis: LookFromAxis | None,
        size: int | None,
    ) -> Screenshot: ...

    @abc.abstractmethod
    async def measure_volume(self, node_id: str, segment: str | None) -> VolumeMeasurement:
        """Segment volumes of a segmentation node, or label volumes of a labelmap volume node."""

    @abc.abstractmethod
    async def load_volume(self, path: Path, labelmap: bool, name: str | None) -> LoadedNodes:
        """NRRD, NIfTI or MHA; `*.seg.nrrd` loads as a segmentation."""

    @abc.abstractmethod
    async def load_sample_data(self, name: str, fetch_local: Callable[[], Awaitable[Path]]) -> LoadedNodes:
        """Load a named sample; `fetch_local` downloads (checksum-verified) when the backend needs a file."""

    @abc.abstractmethod
    async def set_layout(self, layout: str, gui_mode: GuiMode | None) -> LayoutResult: ...

    @abc.abstractmethod
    async def execute_python(self, code: str, session_key: str, timeout_s: float) -> PythonResult: ...

    @abc.abstractmethod
    async def clear_scene(self) -> ClearResult: ...

    @abc.abstractmethod
    async def add_volume(self, volume: VolumeArray) -> NodeSummary:
        """Create a scalar (or labelmap) volume node from plain data: the last step of a DICOM load."""

    def allocate_voxels(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        """Memory for a volume's voxels that `add_volume` can take over without a copy (any thread).

        A DICOM load decodes straight into it; backends whose scene holds voxels elsewhere override it.
        """
        return np.empty(shape, dtype)

    @abc.abstractmethod
    async def export_volume(self, node_id: str) -> VolumeArray:
        """A scalar volume node's voxels and geometry (for sending it as DICOM)."""

    async def run_analysis(self, work: Callable[[Any], T], progress: Progress | None) -> T:
        """Run an analysis step (`scene.segment_edit`, `segment_stats`, `markups`) on the scene.

        `work` gets the scene's `Workspace` on the main thread. Only backends holding the scene in
        this process can: Slicer's WebServer has no way to run Slicer's segment editor logic.
        """
        raise NotSupported(
            f"segment editing, statistics and markups need the scene in this process; the {self.kind} "
            "backend cannot run them. Use the SlicerMCP module inside Slicer (slicer-mcp proxies to it) "
            "or slicer-mcp --headless",
            details={"backend": self.kind},
        )

    async def export_segmentation(
        self, node_id: str, segments: list[str] | None, reference_volume_id: str | None
    ) -> SegmentationArray:
        """The chosen segments (ids or names; None: all) as masks on the reference volume's grid."""
        raise NotSupported(
            f"the {self.kind} backend cannot export segmentations; use the headless or in-Slicer server"
        )

    async def add_segmentation(self, segmentation: SegmentationArray) -> NodeSummary:
        """A segmentation node over `reference_volume_id` holding the masks (a DICOM SEG load)."""
        raise NotSupported(
            f"the {self.kind} backend cannot add segmentations; use the headless or in-Slicer server"
        )

    async def scene_changes(self) -> SceneChanges | None:
        """The scene's change notes, watched from now on; None when this backend cannot see changes
        (then only changes made through our own tools are reported)."""
        return None

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections or the headless scene."""

    def describe(self) -> dict[str, Any]:
        """Short facts for logs and `slicer://status` (never PHI)."""
        return {"backend": self.kind}
