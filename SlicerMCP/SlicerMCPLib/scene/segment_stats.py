"""Segment statistics with the definitions of Slicer's Segment Statistics module.

Labelmap measures: voxel count and volume of the binary labelmap; centroid from
`vtkITKLabelShapeStatistics` (as Slicer's labelmap plugin). Scalar volume measures: mean,
population standard deviation, min, max and median of the volume's voxels inside the segment.
Closed surface measures: surface area from `vtkMassProperties` on the segment's closed surface.
Runs on the main thread.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..core.analysis_models import SegmentStatistics, StatisticsResult
from ..core.errors import InvalidParameter
from . import labelmaps as lm
from .edit_history import Workspace
from .measure import pick_segments

_ML_PER_MM3 = 1e-3


def statistics(
    ws: Workspace, segmentation_id: str, segment: str | None, volume_id: str | None, surface: bool
) -> StatisticsResult:
    """Statistics of every segment (or one) of a segmentation, intensities from its source volume."""
    node = lm.segmentation_node(ws.scene, segmentation_id, "segment_statistics")
    notes: list[str] = []
    try:
        volume = lm.source_volume(ws.scene, node, volume_id, "segment_statistics")
        ref = lm.volume_image(volume)
        values = lm.voxels(ref)
    except InvalidParameter:
        if volume_id:
            raise
        volume, ref, values = None, lm.segmentation_grid(node), None
        notes.append("no source volume: intensity measures are empty; pass volume_id to get them")
    if node.GetParentTransformNode() is not None:
        notes.append("the segmentation is transformed: positions are in its own (untransformed) space")
    ids = pick_segments(node.GetSegmentation(), segment)
    if surface and ids:
        node.CreateClosedSurfaceRepresentation()
    rows = []
    for index, sid in enumerate(ids):
        ws.report(index, len(ids), "segment statistics")
        mask = lm.segment_mask(node, sid, ref).view(bool)
        rows.append(_segment_row(node, sid, ref, mask, values, surface))
    return StatisticsResult(
        segmentation_id=node.GetID(),
        volume_id=volume.GetID() if volume is not None else None,
        segments=rows,
        notes=notes,
    )


def _segment_row(
    node: Any, sid: str, ref: Any, mask: np.ndarray, values: np.ndarray | None, surface: bool
) -> SegmentStatistics:
    count = int(np.count_nonzero(mask))
    volume_mm3 = count * lm.voxel_mm3(ref)
    name = node.GetSegmentation().GetSegment(sid).GetName() or sid
    row: dict[str, Any] = {
        "segment_id": sid,
        "name": name,
        "voxel_count": count,
        "volume_mm3": volume_mm3,
        "volume_ml": volume_mm3 * _ML_PER_MM3,
        "surface_area_mm2": _surface_area(node, sid) if surface and count else None,
        "mean": None,
        "std": None,
        "min": None,
        "max": None,
        "median": None,
        "centroid_ras": None,
        "bounding_box_ras": None,
    }
    if count:
        if values is not None:
            inside = values[mask].astype(np.float64)
            row.update(
                mean=float(inside.mean()),
                std=float(inside.std()),
                min=float(inside.min()),
                max=float(inside.max()),
                median=float(np.median(inside)),
            )
        row["centroid_ras"] = _centroid(ref, mask)
        row["bounding_box_ras"] = _bounding_box(ref, mask)
    return SegmentStatistics(**row)


def _centroid(ref: Any, mask: np.ndarray) -> list[float]:
    """Centroid in RAS from ITK's label shape statistics on the segment's grid (Slicer's definition)."""
    import slicer
    import vtk

    image = lm.image_like(ref, mask.view(np.uint8))
    shape = slicer.vtkITKLabelShapeStatistics()
    shape.SetInputData(image)
    directions = vtk.vtkMatrix4x4()
    image.GetDirectionMatrix(directions)
    shape.SetDirections(directions)
    shape.SetComputeShapeStatistic("Centroid", True)
    shape.Update()
    table = shape.GetOutput()
    column = table.GetColumnByName("Centroid")
    return [float(column.GetComponent(0, c)) for c in range(3)]


def _bounding_box(ref: Any, mask: np.ndarray) -> list[float]:
    """Axis-aligned RAS box of the segment's voxel centres."""
    ranges = []
    for axis in range(3):
        other = tuple(a for a in range(3) if a != axis)
        present = np.flatnonzero(mask.any(axis=other))
        ranges.append((int(present[0]), int(present[-1])))
    (k0, k1), (j0, j1), (i0, i1) = ranges
    extent = ref.GetExtent()
    to_ras = lm.ijk_to_ras(ref)
    corners = np.array(
        [
            [i + extent[0], j + extent[2], k + extent[4], 1.0]
            for i in (i0, i1)
            for j in (j0, j1)
            for k in (k0, k1)
        ]
    )
    ras = (to_ras @ corners.T).T[:, :3]
    lo, hi = ras.min(axis=0), ras.max(axis=0)
    return [float(lo[0]), float(hi[0]), float(lo[1]), float(hi[1]), float(lo[2]), float(hi[2])]


def _surface_area(node: Any, sid: str) -> float | None:
    import vtk

    polydata = vtk.vtkPolyData()
    node.GetClosedSurfaceRepresentation(sid, polydata)
    if polydata.GetNumberOfPoints() == 0:
        return None
    triangles = vtk.vtkTriangleFilter()
    triangles.SetInputData(polydata)
    mass = vtk.vtkMassProperties()
    mass.SetInputConnection(triangles.GetOutputPort())
    mass.Update()
    return float(mass.GetSurfaceArea())
