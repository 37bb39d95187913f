"""Segment editing with Slicer's own algorithms, as the Segment Editor's effects use them.

Threshold: `vtkImageThreshold` on the source volume. Grow from seeds: `vtkImageGrowCutSegment`.
Islands: `vtkITKIslandMath`. Margin: `vtkITKImageMargin` (distances in mm). Smoothing:
`vtkImageMedian3D` / `vtkImageOpenClose3D` with kernels sized in mm. Logical operators combine
masks voxel by voxel. Each function is one undoable step (`EditHistory.edit`) and reports what
changed. Runs on the main thread.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..core import terminology
from ..core.analysis_models import EditResult, IslandMode, LogicalOperation, SegmentChange, SmoothingMethod
from ..core.errors import InvalidParameter
from . import labelmaps as lm
from .edit_history import UndoStep, Workspace
from .nodes import find_node

# the first colours of Slicer's GenericAnatomyColors-like palette: distinct on grey images
PALETTE = [
    (0.50, 0.68, 0.50),
    (0.94, 0.84, 0.57),
    (0.69, 0.48, 0.40),
    (0.44, 0.72, 0.83),
    (0.85, 0.40, 0.40),
    (0.86, 0.60, 0.84),
    (0.56, 0.76, 0.24),
    (0.98, 0.70, 0.30),
]
MAX_SPLIT_ISLANDS = 50


def create_segmentation(ws: Workspace, volume_id: str, name: str | None, segments: list[str]) -> EditResult:
    """A new segmentation on `volume_id`'s grid, with empty segments named `segments`."""
    scene = ws.scene
    volume = find_node(scene, volume_id, "vtkMRMLScalarVolumeNode", "create_segmentation")
    if len(set(segments)) != len(segments):
        raise InvalidParameter("segment names must be different", details={"segments": segments})
    with ws.history.edit("create_segmentation") as step:
        node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", name or f"{volume.GetName()} segmentation")
        ws.history.created(step, node)
        node.CreateDefaultDisplayNodes()
        node.SetReferenceImageGeometryParameterFromVolumeNode(volume)
        for segment in segments:
            _add_segment(node, segment)
        ref = lm.volume_image(volume)
        changes = [_change(node, sid, ref, 0, "created") for sid in _ids(node)]
    return _result(ws, "create_segmentation", node, volume, changes)


def threshold(
    ws: Workspace,
    segmentation_id: str,
    segment: str,
    lower: float,
    upper: float,
    volume_id: str | None,
    roi_id: str | None,
) -> EditResult:
    """Set `segment` to the voxels whose intensity is within [lower, upper] (inside the ROI if given)."""
    import vtk

    if lower > upper:
        raise InvalidParameter(
            f"lower ({lower}) is above upper ({upper})", details={"lower": lower, "upper": upper}
        )
    node, volume, ref = _target(ws, segmentation_id, volume_id, "segment_threshold")
    roi = find_node(ws.scene, roi_id, "vtkMRMLMarkupsROINode", "segment_threshold") if roi_id else None
    notes: list[str] = []
    with ws.history.edit("segment_threshold") as step:
        sid, before, status = _segment_for_edit(ws, step, node, segment, ref)
        filt = vtk.vtkImageThreshold()
        filt.SetInputData(ref)
        filt.ThresholdBetween(lower, upper)
        filt.SetInValue(1)
        filt.SetOutValue(0)
        filt.SetOutputScalarTypeToUnsignedChar()
        ws.watch(filt, "threshold")
        filt.Update()
        mask = lm.voxels(filt.GetOutput())
        if roi is not None:
            mask = mask * _roi_mask(ref, roi, notes)
        lm.write_mask(node, sid, ref, mask)
        changes = [_change(node, sid, ref, before, status)]
    return _result(ws, "segment_threshold", node, volume, changes, notes)


def grow_from_seeds(
    ws: Workspace,
    segmentation_id: str,
    seeds: dict[str, list[list[float]]],
    volume_id: str | None,
    seed_radius_mm: float,
) -> EditResult:
    """Slicer's Grow from seeds: every voxel goes to the segment whose seeds reach it most cheaply.

    The seeds of a segment are its current voxels plus spheres of `seed_radius_mm` around the
    given RAS points; at least two segments must have seeds (one of them may be the background).
    """
    import slicer

    node, volume, ref = _target(ws, segmentation_id, volume_id, "segment_grow_from_seeds")
    if len(seeds) < 2:
        raise InvalidParameter(
            "grow from seeds needs seeds for at least two segments, e.g. the structure and 'background'",
            details={"segments": list(seeds)},
        )
    with ws.history.edit("segment_grow_from_seeds") as step:
        ws.history.keep_segmentation(step, node)
        labels = np.zeros(lm.voxels(ref).shape, np.int16)
        order: list[tuple[str, int, str]] = []
        for value, (segment, points) in enumerate(seeds.items(), start=1):
            sid, before, status = _segment_for_edit(ws, step, node, segment, ref)
            labels[lm.segment_mask(node, sid, ref) != 0] = value
            _paint_spheres(labels, ref, points, seed_radius_mm, value)
            if not np.any(labels == value):
                raise InvalidParameter(
                    f"segment {segment!r} has no seed inside the volume: give RAS points inside it",
                    details={"segment": segment, "points": points},
                )
            order.append((sid, before, status))
        grow = slicer.vtkImageGrowCutSegment()
        grow.SetIntensityVolume(ref)
        grow.SetSeedLabelVolume(lm.image_like(ref, labels))
        ws.watch(grow, "grow from seeds")
        grow.Update()
        result = lm.voxels(grow.GetOutput())
        changes = []
        for value, (sid, before, status) in enumerate(order, start=1):
            lm.write_mask(node, sid, ref, (result == value).astype(np.uint8))
            changes.append(_change(node, sid, ref, before, status))
    return _result(ws, "segment_grow_from_seeds", node, volume, changes)


def islands(
    ws: Workspace, segmentation_id: str, segment: str, mode: IslandMode, min_size_voxels: int
) -> EditResult:
    """Keep the largest island, remove islands under `min_size_voxels`, or split islands into segments."""
    import slicer

    node, volume, ref = _target(ws, segmentation_id, None, "segment_islands", need_volume=False)
    sid = lm.segment_id(node, segment)
    notes: list[str] = []
    with ws.history.edit("segment_islands") as step:
        ws.history.keep_segmentation(step, node)
        mask = lm.segment_mask(node, sid, ref)
        before = int(np.count_nonzero(mask))
        math = slicer.vtkITKIslandMath()
        math.SetInputData(lm.image_like(ref, mask))
        math.SetFullyConnected(False)  # 6-connected, Slicer's default for its Islands effect
        math.SetMinimumSize(1 if mode == "keep_largest" else max(1, min_size_voxels))
        ws.watch(math, "islands")
        math.Update()
        found = lm.voxels(math.GetOutput())  # 1 = the largest island, 2 the next, ...
        count = int(math.GetNumberOfIslands())
        notes.append(f"{count} island(s) of at least {max(1, min_size_voxels)} voxel(s) found")
        changes: list[SegmentChange] = []
        if mode == "keep_largest":
            lm.write_mask(node, sid, ref, (found == 1).astype(np.uint8))
        elif mode == "remove_small":
            lm.write_mask(node, sid, ref, (found > 0).astype(np.uint8))
        else:
            if count > MAX_SPLIT_ISLANDS:
                raise InvalidParameter(
                    f"{count} islands would become {count} segments (at most {MAX_SPLIT_ISLANDS}); "
                    "raise min_size_voxels or remove small islands first",
                    details={"islands": count, "max": MAX_SPLIT_ISLANDS},
                )
            lm.write_mask(node, sid, ref, (found == 1).astype(np.uint8))
            base = node.GetSegmentation().GetSegment(sid).GetName()
            for index in range(2, count + 1):
                new_id = _add_segment(node, f"{base} {index}")
                lm.write_mask(node, new_id, ref, (found == index).astype(np.uint8))
                changes.append(_change(node, new_id, ref, 0, "created"))
        changes.insert(0, _change(node, sid, ref, before, "modified"))
    return _result(ws, "segment_islands", node, volume, changes, notes)


def margin(ws: Workspace, segmentation_id: str, segment: str, margin_mm: float) -> EditResult:
    """Grow (positive) or shrink (negative) a segment by a distance in mm."""
    import slicer

    if margin_mm == 0:
        raise InvalidParameter("margin_mm must not be 0", details={"margin_mm": margin_mm})

    def grow(mask: np.ndarray, ref: Any) -> np.ndarray:
        # shrinking grows the background: the distance map starts at the border voxels, so this is
        # the more accurate way round (as Slicer's Margin effect does it)
        shrink = margin_mm < 0
        filt = slicer.vtkITKImageMargin()
        filt.SetInputData(lm.image_like(ref, 1 - mask if shrink else mask))
        filt.SetCalculateMarginInMM(True)
        filt.SetOuterMarginMM(abs(margin_mm))
        filt.SetBackgroundValue(0)
        ws.watch(filt, "margin")
        filt.Update()
        grown = lm.voxels(filt.GetOutput()) != 0
        return ~grown if shrink else grown

    return _reshape_segment(ws, "segment_margin", segmentation_id, segment, grow, [])


def smoothing(
    ws: Workspace, segmentation_id: str, segment: str, method: SmoothingMethod, kernel_mm: float
) -> EditResult:
    """Median, closing (fills small holes) or opening (removes thin protrusions), kernel in mm."""
    import vtk

    kernels: list[list[int]] = []

    def smooth(mask: np.ndarray, ref: Any) -> np.ndarray:
        kernel = [_odd_kernel(kernel_mm, s) for s in ref.GetSpacing()]
        kernels.append(kernel)
        if method == "median":
            filt = vtk.vtkImageMedian3D()
        else:
            filt = vtk.vtkImageOpenClose3D()
            # closing: dilate then erode the label; opening: the reverse (as Slicer's Smoothing effect)
            filt.SetOpenValue(0 if method == "closing" else 1)
            filt.SetCloseValue(1 if method == "closing" else 0)
        filt.SetKernelSize(*kernel)
        filt.SetInputData(lm.image_like(ref, mask))
        ws.watch(filt, method)
        filt.Update()
        return lm.voxels(filt.GetOutput()) != 0

    result = _reshape_segment(ws, "segment_smoothing", segmentation_id, segment, smooth, [])
    result.notes.append("kernel {}x{}x{} voxels for {} mm".format(*kernels[0], kernel_mm))
    return result


def _reshape_segment(
    ws: Workspace,
    operation: str,
    segmentation_id: str,
    segment: str,
    reshape: Callable[[np.ndarray, Any], np.ndarray],
    notes: list[str],
) -> EditResult:
    """One undoable step that replaces a segment's mask with `reshape(mask, grid)`."""
    node, volume, ref = _target(ws, segmentation_id, None, operation, need_volume=False)
    sid = lm.segment_id(node, segment)
    with ws.history.edit(operation) as step:
        ws.history.keep_segmentation(step, node)
        mask = lm.segment_mask(node, sid, ref)
        before = int(np.count_nonzero(mask))
        lm.write_mask(node, sid, ref, reshape(mask, ref).astype(np.uint8))
        changes = [_change(node, sid, ref, before, "modified")]
    return _result(ws, operation, node, volume, changes, notes)


def logical(
    ws: Workspace,
    segmentation_id: str,
    segment: str,
    operation: LogicalOperation,
    other_segment: str,
    other_segmentation_id: str | None,
) -> EditResult:
    """Combine `segment` with `other_segment` voxel by voxel; `segment` is created for copy if missing."""
    node, volume, ref = _target(ws, segmentation_id, None, "segment_logical", need_volume=False)
    other_node = lm.segmentation_node(ws.scene, other_segmentation_id or segmentation_id, "segment_logical")
    other_id = lm.segment_id(other_node, other_segment)
    with ws.history.edit("segment_logical") as step:
        if operation == "copy":
            sid, before, status = _segment_for_edit(ws, step, node, segment, ref)
        else:
            ws.history.keep_segmentation(step, node)
            sid, status = lm.segment_id(node, segment), "modified"
            before = -1
        mask = lm.segment_mask(node, sid, ref).astype(bool)
        before = int(np.count_nonzero(mask)) if before < 0 else before
        other = lm.segment_mask(other_node, other_id, ref).astype(bool)
        combined = {
            "union": mask | other,
            "subtract": mask & ~other,
            "intersect": mask & other,
            "copy": other,
        }[operation]
        lm.write_mask(node, sid, ref, combined.astype(np.uint8))
        changes = [_change(node, sid, ref, before, status)]
    return _result(ws, f"segment_logical {operation}", node, volume, changes)


def delete_segment(ws: Workspace, segmentation_id: str, segment: str) -> EditResult:
    node, volume, ref = _target(ws, segmentation_id, None, "delete_segment", need_volume=False)
    sid = lm.segment_id(node, segment)
    with ws.history.edit("delete_segment") as step:
        ws.history.keep_segmentation(step, node)
        change = _change(node, sid, ref, None, "removed")
        node.GetSegmentation().RemoveSegment(sid)
    return _result(ws, "delete_segment", node, volume, [change])


def rename_segment(
    ws: Workspace,
    segmentation_id: str,
    segment: str,
    new_name: str | None,
    color: tuple[float, float, float] | None,
    use_terminology: bool,
) -> EditResult:
    """Rename and recolour a segment; attach the standard SNOMED CT code its name has, if any."""
    node, volume, ref = _target(ws, segmentation_id, None, "rename_segment", need_volume=False)
    sid = lm.segment_id(node, segment)
    notes: list[str] = []
    with ws.history.edit("rename_segment") as step:
        ws.history.keep_segmentation(step, node)
        seg = node.GetSegmentation().GetSegment(sid)
        if new_name is not None:
            seg.SetName(new_name)
        if color is not None:
            seg.SetColor(*color)
        if use_terminology:
            notes.append(_apply_terminology(seg))
        node.Modified()
        changes = [_change(node, sid, ref, None, "modified")]
    return _result(ws, "rename_segment", node, volume, changes, notes)


# -- helpers ---------------------------------------------------------------------------------------


def _target(
    ws: Workspace, segmentation_id: str, volume_id: str | None, what: str, need_volume: bool = True
) -> tuple[Any, Any, Any]:
    """The segmentation, its source volume and the grid edits work on (the volume's)."""
    node = lm.segmentation_node(ws.scene, segmentation_id, what)
    try:
        volume = lm.source_volume(ws.scene, node, volume_id, what)
    except InvalidParameter:
        if need_volume:
            raise
        return node, None, lm.segmentation_grid(node)
    return node, volume, lm.volume_image(volume)


def _segment_for_edit(
    ws: Workspace, step: UndoStep, node: Any, segment: str, ref: Any
) -> tuple[str, int, str]:
    """The segment to write (created when no segment has this name), its voxels now, its status."""
    ws.history.keep_segmentation(step, node)
    try:
        sid = lm.segment_id(node, segment)
    except InvalidParameter:
        return _add_segment(node, segment), 0, "created"
    return sid, int(np.count_nonzero(lm.segment_mask(node, sid, ref))), "modified"


def _add_segment(node: Any, name: str) -> str:
    segmentation = node.GetSegmentation()
    color = PALETTE[segmentation.GetNumberOfSegments() % len(PALETTE)]
    sid = segmentation.AddEmptySegment("", name, color)
    _apply_terminology(segmentation.GetSegment(sid))
    return sid


def _apply_terminology(segment: Any) -> str:
    codes = terminology.lookup(segment.GetName() or "")
    if codes is None:
        return f"no standard code is known for {segment.GetName()!r}; none attached"
    segment.SetTag(segment.GetTerminologyEntryTagName(), terminology.entry_tag(*codes))
    return f"terminology: {codes[0].meaning} / {codes[1].meaning} ({codes[1].scheme} {codes[1].value})"


def _ids(node: Any) -> list[str]:
    segmentation = node.GetSegmentation()
    return [segmentation.GetNthSegmentID(i) for i in range(segmentation.GetNumberOfSegments())]


def _change(node: Any, sid: str, ref: Any, before: int | None, status: str) -> SegmentChange:
    segment = node.GetSegmentation().GetSegment(sid)
    after = 0 if status == "removed" else int(np.count_nonzero(lm.segment_mask(node, sid, ref)))
    if before is None:
        before = after if status != "removed" else int(np.count_nonzero(lm.segment_mask(node, sid, ref)))
    if status == "modified" and before == after:
        status = "unchanged"
    return SegmentChange(
        segment_id=sid,
        name=segment.GetName() or sid,
        voxels_before=before,
        voxels_after=after,
        volume_mm3_after=after * lm.voxel_mm3(ref),
        status=status,  # type: ignore[arg-type]
    )


def _result(
    ws: Workspace,
    operation: str,
    node: Any,
    volume: Any,
    changes: list[SegmentChange],
    notes: list[str] | None = None,
) -> EditResult:
    return EditResult(
        operation=operation,
        segmentation_id=node.GetID(),
        source_volume_id=volume.GetID() if volume is not None else None,
        changes=changes,
        undo_steps=len(ws.history),
        notes=notes or [],
    )


def _paint_spheres(
    labels: np.ndarray, ref: Any, points: list[list[float]], radius_mm: float, value: int
) -> None:
    """Mark voxels within `radius_mm` of each RAS point (at least the voxel holding it) with `value`."""
    spacing = np.abs(np.array(ref.GetSpacing(), float))[::-1]  # k, j, i
    reach = np.maximum(0, np.floor(radius_mm / spacing)).astype(int)
    for centre in lm.ras_to_kji(ref, points):
        lo = np.maximum(centre - reach, 0)
        hi = np.minimum(centre + reach + 1, labels.shape)
        if np.any(lo >= hi):
            continue  # outside the volume
        grid = np.ogrid[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
        dist2 = sum(((g - c) * s) ** 2 for g, c, s in zip(grid, centre, spacing, strict=True))
        region = labels[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
        region[dist2 <= max(radius_mm, 0) ** 2] = value


def _roi_mask(ref: Any, roi: Any, notes: list[str]) -> np.ndarray:
    """1 inside the ROI's box on `ref`'s grid: the IJK box that holds the ROI's corners."""
    bounds = [0.0] * 6
    roi.GetRASBounds(bounds)
    corners = [[x, y, z] for x in bounds[0:2] for y in bounds[2:4] for z in bounds[4:6]]
    kji = lm.ras_to_kji(ref, corners)
    shape = lm.voxels(ref).shape
    lo = np.clip(kji.min(axis=0), 0, shape)
    hi = np.clip(kji.max(axis=0) + 1, 0, shape)
    mask = np.zeros(shape, np.uint8)
    mask[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]] = 1
    matrix = roi.GetObjectToWorldMatrix()
    if any(abs(matrix.GetElement(r, c) - (r == c)) > 1e-6 for r in range(3) for c in range(3)):
        notes.append("the ROI is rotated: its axis-aligned bounding box was used")
    return mask


def _odd_kernel(kernel_mm: float, spacing: float) -> int:
    """Kernel size in voxels for a size in mm: odd, at least 1 (as Slicer's Smoothing effect rounds)."""
    voxels = int(round(kernel_mm / abs(spacing)))
    return max(1, voxels if voxels % 2 else voxels + 1)
