"""Segments as voxel masks on a volume's grid, and back: the common ground of every analysis step.

Every edit works on the source volume's grid (Slicer's segment editor does the same with its
"source volume"): a segment's binary labelmap is resampled onto it, changed, and written back with
`vtkSlicerSegmentationsModuleLogic.SetBinaryLabelmapToSegment`. Arrays are indexed [k, j, i].
Runs on the main thread.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..core.errors import InvalidParameter
from .measure import pick_segments
from .nodes import find_node

# what SetReferenceImageGeometryParameterFromVolumeNode sets; vtkSegmentationConverter's representation name
SOURCE_VOLUME_REFERENCE = "referenceImageGeometryRef"
BINARY_LABELMAP = "Binary labelmap"


def segmentation_node(scene: Any, node_id: str, what: str) -> Any:
    return find_node(scene, node_id, "vtkMRMLSegmentationNode", what)


def segment_id(node: Any, segment: str) -> str:
    """The id of the segment named or identified by `segment` (InvalidParameter lists the segments)."""
    return pick_segments(node.GetSegmentation(), segment)[0]


def source_volume(scene: Any, node: Any, volume_id: str | None, what: str) -> Any:
    """The scalar volume an edit works on: the one asked for, else the segmentation's reference volume."""
    if volume_id:
        return find_node(scene, volume_id, "vtkMRMLScalarVolumeNode", what)
    ref = node.GetNodeReferenceID(SOURCE_VOLUME_REFERENCE)
    volume = scene.GetNodeByID(ref) if ref else None
    if volume is None or volume.GetImageData() is None:
        raise InvalidParameter(
            f"segmentation {node.GetID()} has no source volume in the scene; pass volume_id "
            "(call list_scene_nodes with class_name=vtkMRMLScalarVolumeNode to find one)",
            details={"segmentation_id": node.GetID()},
        )
    return volume


def segmentation_grid(node: Any) -> Any:
    """A segmentation's own reference grid, for edits on a segmentation without a source volume."""
    import slicer

    geometry = node.GetSegmentation().GetConversionParameter(
        slicer.vtkSegmentationConverter.GetReferenceImageGeometryParameterName()
    )
    image = slicer.vtkOrientedImageData()
    if geometry:
        slicer.vtkSegmentationConverter.DeserializeImageGeometry(geometry, image, True, 3, 1)
        return image
    raise InvalidParameter(
        f"segmentation {node.GetID()} has neither a source volume nor a reference geometry; "
        "create it with create_segmentation on a volume",
        details={"segmentation_id": node.GetID()},
    )


def volume_image(volume: Any) -> Any:
    """The volume's voxels as a vtkOrientedImageData carrying its IJK->RAS geometry (no voxel copy).

    Slicer's CreateOrientedImageDataFromVolumeNode deep-copies the voxels (85 ms for a 512x512x300
    CT); a shallow copy with the volume's matrix is the same image without that.
    """
    import slicer
    import vtk

    image = slicer.vtkOrientedImageData()
    image.ShallowCopy(volume.GetImageData())
    matrix = vtk.vtkMatrix4x4()
    volume.GetIJKToRASMatrix(matrix)
    image.SetImageToWorldMatrix(matrix)
    return image


def voxels(image: Any) -> np.ndarray:
    """A view of an image's scalars, shaped [k, j, i] (writes go into the image)."""
    from vtk.util import numpy_support

    extent = image.GetExtent()
    shape = (extent[5] - extent[4] + 1, extent[3] - extent[2] + 1, extent[1] - extent[0] + 1)
    scalars = image.GetPointData().GetScalars()
    if scalars is None or min(shape) <= 0:
        return np.zeros((0, 0, 0), np.uint8)
    return numpy_support.vtk_to_numpy(scalars).reshape(shape)


def image_like(reference: Any, array: np.ndarray) -> Any:
    """A vtkOrientedImageData with `reference`'s geometry and extent over `array`'s memory (no copy:
    the image keeps the array alive; a non-contiguous array is copied first)."""
    import slicer
    import vtk
    from vtk.util import numpy_support

    image = slicer.vtkOrientedImageData()
    image.SetExtent(reference.GetExtent())
    matrix = vtk.vtkMatrix4x4()
    reference.GetImageToWorldMatrix(matrix)
    image.SetImageToWorldMatrix(matrix)
    flat = np.ascontiguousarray(array).reshape(-1)
    image.GetPointData().SetScalars(numpy_support.numpy_to_vtk(flat, deep=False))
    return image


def segment_mask(node: Any, seg_id: str, reference: Any) -> np.ndarray:
    """The segment as a uint8 0/1 array on `reference`'s grid (zeros where the segment has nothing).

    Segments share labelmap layers: the layer Slicer returns holds its other segments too, each
    under its own label value.
    """
    import slicer

    mask = same_grid_mask(node, seg_id, reference)
    if mask is not None:
        return mask
    labelmap = slicer.vtkOrientedImageData()
    slicer.vtkSlicerSegmentationsModuleLogic.GetSegmentBinaryLabelmapRepresentation(node, seg_id, labelmap)
    resampled = slicer.vtkOrientedImageData()
    slicer.vtkOrientedImageDataResample.ResampleOrientedImageToReferenceOrientedImage(
        labelmap, reference, resampled, False, False
    )
    value = node.GetSegmentation().GetSegment(seg_id).GetLabelValue()
    return (voxels(resampled) == value).view(np.uint8)


def same_grid_mask(node: Any, seg_id: str, reference: Any) -> np.ndarray | None:
    """`segment_mask` when it needs no resampling (the segment's layer is on `reference`'s grid, or
    the segment is empty); None when the layer lies on another grid."""
    import slicer

    segment = node.GetSegmentation().GetSegment(seg_id)
    shape = _shape(reference.GetExtent())
    layer = segment.GetRepresentation(BINARY_LABELMAP)
    if layer is None or layer.GetPointData().GetScalars() is None or _empty(layer.GetExtent()):
        return np.zeros(shape, np.uint8)
    if slicer.vtkOrientedImageDataResample.DoGeometriesMatch(layer, reference):
        return _on_same_grid(layer, reference, segment.GetLabelValue(), shape)
    return None


def _on_same_grid(layer: Any, reference: Any, value: int, shape: tuple[int, int, int]) -> np.ndarray:
    """The segment's voxels read straight from its shared layer (same grid, any sub-extent): no copy
    of the layer, one comparison over the part the layer covers."""
    out = np.zeros(shape, np.uint8)
    have, want = layer.GetExtent(), reference.GetExtent()
    lo = [max(have[2 * a], want[2 * a]) for a in range(3)]
    hi = [min(have[2 * a + 1], want[2 * a + 1]) for a in range(3)]
    if any(top < bottom for bottom, top in zip(lo, hi, strict=True)):
        return out
    src = voxels(layer)
    s = tuple(slice(lo[a] - have[2 * a], hi[a] - have[2 * a] + 1) for a in (2, 1, 0))
    d = tuple(slice(lo[a] - want[2 * a], hi[a] - want[2 * a] + 1) for a in (2, 1, 0))
    np.equal(src[s], value, out=out[d].view(bool))
    return out


def write_mask(node: Any, seg_id: str, reference: Any, mask: np.ndarray) -> None:
    """Replace the segment's voxels with `mask` (on `reference`'s grid), as the segment editor does."""
    import slicer

    logic = slicer.vtkSlicerSegmentationsModuleLogic
    image = image_like(reference, mask.astype(np.uint8, copy=False))
    if not logic.SetBinaryLabelmapToSegment(image, node, seg_id, logic.MODE_REPLACE):
        raise InvalidParameter(
            f"Slicer could not write segment {seg_id} of {node.GetID()}",
            details={"segmentation_id": node.GetID(), "segment_id": seg_id},
        )


def voxel_mm3(reference: Any) -> float:
    spacing = reference.GetSpacing()
    return float(abs(spacing[0] * spacing[1] * spacing[2]))


def ijk_to_ras(reference: Any) -> np.ndarray:
    import vtk

    matrix = vtk.vtkMatrix4x4()
    reference.GetImageToWorldMatrix(matrix)
    return np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])


def ras_to_kji(reference: Any, points: list[list[float]]) -> np.ndarray:
    """RAS points as rounded [k, j, i] indices on `reference`'s grid (relative to its extent start)."""
    to_ijk = np.linalg.inv(ijk_to_ras(reference))
    extent = reference.GetExtent()
    out = []
    for point in points:
        i, j, k, _ = to_ijk @ np.array([*point, 1.0])
        out.append([round(k) - extent[4], round(j) - extent[2], round(i) - extent[0]])
    return np.array(out, dtype=np.int64).reshape(-1, 3)


def _shape(extent: Any) -> tuple[int, int, int]:
    return (extent[5] - extent[4] + 1, extent[3] - extent[2] + 1, extent[1] - extent[0] + 1)


def _empty(extent: Any) -> bool:
    return extent[1] < extent[0] or extent[3] < extent[2] or extent[5] < extent[4]
