"""Segments in and out of a segmentation node as boolean masks on a reference volume's voxel grid.

Export takes each chosen segment separately, so overlapping segments stay whole, as a DICOM SEG
keeps them: read straight from its labelmap layer when that is on the reference volume's grid,
else resampled onto it by Slicer's own `ExportSegmentsToLabelmapNode`.
Import builds a segmentation node over its source volume from masks (a DICOM SEG being loaded).
Main thread only, like every function of this package.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..core.errors import InvalidParameter, VolumeCalculationError
from ..core.scene_backend import SegmentationArray, SegmentMask, VolumeArray
from . import data_io
from . import labelmaps as lm
from .measure import pick_segments
from .nodes import find_node

REFERENCE_ROLE = "referenceImageGeometryRef"


def _reference_volume(scene: Any, node: Any, reference_volume_id: str | None, tool: str) -> Any:
    if reference_volume_id:
        return find_node(scene, reference_volume_id, "vtkMRMLScalarVolumeNode", tool)
    ref = node.GetNodeReference(REFERENCE_ROLE)
    if ref is None or not ref.IsA("vtkMRMLScalarVolumeNode") or ref.IsA("vtkMRMLLabelMapVolumeNode"):
        raise InvalidParameter(
            f"segmentation {node.GetID()} names no source volume; pass reference_volume_id (the image the "
            "segments were drawn on)",
            details={"node_id": node.GetID()},
        )
    return ref


def _voxels(labelmap: Any) -> np.ndarray:
    from vtk.util import numpy_support

    image = labelmap.GetImageData()
    dims = image.GetDimensions()
    flat = numpy_support.vtk_to_numpy(image.GetPointData().GetScalars())
    return flat.reshape(dims[2], dims[1], dims[0])


def _ijk_to_ras(volume: Any) -> np.ndarray:
    import vtk

    m = vtk.vtkMatrix4x4()
    volume.GetIJKToRASMatrix(m)
    return np.array([[m.GetElement(r, c) for c in range(4)] for r in range(4)])


def _shape(volume: Any) -> tuple[int, int, int]:
    image = volume.GetImageData()
    if image is None:
        raise InvalidParameter(f"volume {volume.GetID()} has no voxels", details={"node_id": volume.GetID()})
    dims = image.GetDimensions()
    return (dims[2], dims[1], dims[0])


def _remove(scene: Any, node: Any) -> None:
    display = node.GetDisplayNode()
    if display is not None:
        scene.RemoveNode(display)
    scene.RemoveNode(node)


def export_segments(
    app: Any, node_id: str, segments: list[str] | None, reference_volume_id: str | None, tool: str
) -> SegmentationArray:
    """Masks [k, j, i] of the chosen segments on the reference volume's grid."""
    scene = app.scene
    node = find_node(scene, node_id, "vtkMRMLSegmentationNode", tool)
    reference = _reference_volume(scene, node, reference_volume_id, tool)
    segmentation = node.GetSegmentation()
    wanted: list[str] = []
    for name in segments or [None]:  # type: ignore[list-item]
        for seg_id in pick_segments(segmentation, name):
            if seg_id not in wanted:
                wanted.append(seg_id)
    if not wanted:
        raise InvalidParameter(
            f"segmentation {node_id} has no segments to export", details={"node_id": node_id}
        )
    # a segment already on the reference's grid is read straight from its labelmap layer (~10 ms
    # for a 512x512x300 CT, where Slicer's export makes and resamples a labelmap node: ~200 ms)
    direct = (
        segmentation.GetSourceRepresentationName() == lm.BINARY_LABELMAP
        and node.GetParentTransformNode() is None
        and reference.GetParentTransformNode() is None
    )
    grid = lm.volume_image(reference) if direct else None
    out = []
    for seg_id in wanted:
        segment = segmentation.GetSegment(seg_id)
        same = lm.same_grid_mask(node, seg_id, grid) if grid is not None else None
        mask = same.view(bool) if same is not None else _exported_mask(app, node, seg_id, reference)
        terminology = segment.GetTerminology() if segment.HasTerminology() else None
        color = tuple(float(c) for c in segment.GetColor())
        out.append(SegmentMask(seg_id, segment.GetName() or seg_id, mask, color, terminology))  # type: ignore[arg-type]
    attributes = {
        a: reference.GetAttribute(a)
        for a in (reference.GetAttributeNames() or ())
        if reference.GetAttribute(a) is not None
    }
    return SegmentationArray(
        node.GetName() or node_id, out, reference.GetID(), attributes, _ijk_to_ras(reference)
    )


def _exported_mask(app: Any, node: Any, seg_id: str, reference: Any) -> np.ndarray:
    """One segment resampled onto the reference volume by Slicer (any grid, transforms applied)."""
    import vtk

    ids = vtk.vtkStringArray()
    ids.InsertNextValue(seg_id)
    scene = app.scene
    labelmap = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "__export__")
    try:
        if not app.segmentations_logic.ExportSegmentsToLabelmapNode(node, ids, labelmap, reference):
            raise VolumeCalculationError(
                f"segment {node.GetSegmentation().GetSegment(seg_id).GetName()!r} could not be resampled onto "
                f"{reference.GetName()!r}",
                details={"segment_id": seg_id},
            )
        return _voxels(labelmap) != 0
    finally:
        _remove(scene, labelmap)


def add_segmentation(app: Any, segmentation: SegmentationArray, tool: str) -> Any:
    """A new segmentation node over the reference volume, one segment per mask (names, colours, tags)."""
    scene = app.scene
    reference = find_node(scene, segmentation.reference_volume_id, "vtkMRMLScalarVolumeNode", tool)
    matrix = _ijk_to_ras(reference)
    shape = _shape(reference)
    with data_io.rollback_on_failure(scene):
        node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", segmentation.name or "Segmentation")
        node.CreateDefaultDisplayNodes()
        node.SetReferenceImageGeometryParameterFromVolumeNode(reference)
        for key, value in segmentation.attributes.items():
            node.SetAttribute(key, value)
        seg = node.GetSegmentation()
        for item in segmentation.segments:
            if item.mask.shape != shape:
                raise InvalidParameter(
                    f"segment {item.name!r} has shape {item.mask.shape}, its source volume {shape}",
                    details={"segment": item.name},
                )
            before = seg.GetNumberOfSegments()
            if item.mask.any():
                prepared = data_io.prepare_volume(
                    VolumeArray(item.mask.astype(np.uint8), matrix, "__import__", is_labelmap=True)
                )
                labelmap = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "__import__")
                try:
                    labelmap.SetIJKToRASMatrix(prepared.matrix)
                    labelmap.SetAndObserveImageData(prepared.image)
                    app.segmentations_logic.ImportLabelmapToSegmentationNode(labelmap, node)
                finally:
                    _remove(scene, labelmap)
            if seg.GetNumberOfSegments() == before:
                seg.AddEmptySegment("", item.name, list(item.color))
            segment = seg.GetNthSegment(seg.GetNumberOfSegments() - 1)
            segment.SetName(item.name)
            segment.SetColor(*item.color)
            if item.terminology:
                segment.SetTerminology(item.terminology)
        for orphan in data_io.orphan_display_nodes(scene):
            scene.RemoveNode(orphan)
    return node
