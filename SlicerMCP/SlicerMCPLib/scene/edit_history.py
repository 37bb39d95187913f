"""Undo for the analysis tools: every edit is one step, and a failed edit leaves nothing behind.

A segmentation edit keeps a deep copy of the `vtkSegmentation` taken before it (what Slicer's
`vtkSegmentationHistory` stores for the segment editor's undo); a created node is undone by
removing it. Steps are bounded by count and by the bytes their copies hold, oldest dropped
first. Runs on the main thread.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from ..core.errors import InvalidParameter
from ..core.progress import Progress

log = logging.getLogger(__name__)

MAX_STEPS = 20
MAX_BYTES = 1 << 30  # copies of large segmentations: a few 512x512x300 steps


@dataclass
class UndoStep:
    description: str
    node_ids: list[str]
    restores: list[Callable[[], None]] = field(default_factory=list)
    nbytes: int = 0

    def restore(self) -> None:
        for undo in reversed(self.restores):
            undo()


class EditHistory:
    """The undo stack of one scene."""

    def __init__(self, scene: Any, max_steps: int = MAX_STEPS, max_bytes: int = MAX_BYTES):
        self.scene = scene
        self.max_steps = max_steps
        self.max_bytes = max_bytes
        self._steps: list[UndoStep] = []

    def __len__(self) -> int:
        """Steps that can be undone (those whose nodes are still in the scene)."""
        return sum(1 for s in self._steps if any(self.scene.GetNodeByID(i) is not None for i in s.node_ids))

    @contextlib.contextmanager
    def edit(self, description: str) -> Iterator[UndoStep]:
        """One undoable step: on an exception inside the block everything recorded is restored."""
        step = UndoStep(description, [])
        try:
            yield step
        except BaseException:
            try:
                step.restore()
            except Exception:  # the original error matters more; say that the scene may differ
                log.exception("restoring the scene after a failed %s failed", description)
            raise
        if step.restores:
            self._push(step)

    def keep_segmentation(self, step: UndoStep, node: Any) -> None:
        """Record `node`'s segments as they are now, once per step."""
        import slicer

        if node.GetID() in step.node_ids:
            return
        copy = slicer.vtkSegmentation()
        copy.DeepCopy(node.GetSegmentation())
        node_id = node.GetID()

        def restore() -> None:
            current = self.scene.GetNodeByID(node_id)
            if current is not None:
                current.GetSegmentation().DeepCopy(copy)
                current.Modified()

        step.node_ids.append(node_id)
        step.restores.append(restore)
        step.nbytes += _segmentation_bytes(copy)

    def created(self, step: UndoStep, node: Any) -> None:
        """Record that `node` is new: undo removes it."""
        node_id = node.GetID()

        def restore() -> None:
            current = self.scene.GetNodeByID(node_id)
            if current is not None:
                self.scene.RemoveNode(current)

        step.node_ids.append(node_id)
        step.restores.append(restore)

    def undo(self) -> UndoStep:
        """Revert the newest step whose nodes are still in the scene (steps on removed nodes are dropped)."""
        while self._steps and not any(
            self.scene.GetNodeByID(i) is not None for i in self._steps[-1].node_ids
        ):
            self._steps.pop()
        if not self._steps:
            raise InvalidParameter(
                "nothing to undo: no analysis edit has been made since the scene was loaded or cleared",
                details={"undo_steps": 0},
            )
        step = self._steps.pop()
        step.restore()
        return step

    def clear(self) -> None:
        self._steps.clear()

    def _push(self, step: UndoStep) -> None:
        self._steps.append(step)
        while len(self._steps) > self.max_steps or (
            len(self._steps) > 1 and sum(s.nbytes for s in self._steps) > self.max_bytes
        ):
            dropped = self._steps.pop(0)
            log.debug("undo: dropped the oldest step (%s)", dropped.description)


def _segmentation_bytes(segmentation: Any) -> int:
    total = 0
    for layer in range(segmentation.GetNumberOfLayers()):
        image = segmentation.GetLayerDataObject(layer)
        scalars = image.GetPointData().GetScalars() if image is not None else None
        if scalars is not None:
            total += scalars.GetNumberOfValues() * scalars.GetDataTypeSize()
    return total


@dataclass
class Workspace:
    """What an analysis step gets on the main thread: the scene, its undo stack, a progress sink."""

    app: Any
    history: EditHistory
    progress: Progress | None = None

    @property
    def scene(self) -> Any:
        return self.app.scene

    def report(self, done: float, total: float | None, message: str) -> None:
        if self.progress is not None:
            self.progress(done, total, message)

    def watch(self, algorithm: Any, message: str) -> None:
        """Relay a VTK filter's progress events (0..1) to the caller while it runs."""
        if self.progress is None:
            return
        import vtk

        algorithm.AddObserver(
            vtk.vtkCommand.ProgressEvent,
            lambda caller, _event: self.report(caller.GetProgress(), 1.0, message),
        )
