"""Markups: point lists, lines, angles, ROIs and planes placed in RAS, and what Slicer measures on them.

The nodes are Slicer's own (`vtkMRMLMarkups*Node`); lengths and angles are the nodes' own
measurements (`GetMeasurement("length")`, `"angle"`), so an assistant reads the same numbers a
Slicer user sees. Runs on the main thread.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..core.analysis_models import MarkupInfo, MarkupList, MarkupType
from ..core.errors import InvalidParameter
from .edit_history import Workspace
from .nodes import find_node

CLASSES: dict[MarkupType, str] = {
    "point_list": "vtkMRMLMarkupsFiducialNode",
    "line": "vtkMRMLMarkupsLineNode",
    "angle": "vtkMRMLMarkupsAngleNode",
    "roi": "vtkMRMLMarkupsROINode",
    "plane": "vtkMRMLMarkupsPlaneNode",
}
POINTS_NEEDED: dict[MarkupType, tuple[int, int]] = {  # (fewest, most) control points
    "point_list": (1, 1000),
    "line": (2, 2),
    "angle": (3, 3),
    "roi": (1, 2),
    "plane": (3, 3),
}
COLORS: dict[MarkupType, tuple[float, float, float]] = {  # Slicer's default unselected colours differ
    "point_list": (1.0, 0.5, 0.5),
    "line": (1.0, 1.0, 0.0),
    "angle": (0.0, 1.0, 1.0),
    "roi": (0.0, 1.0, 0.0),
    "plane": (1.0, 0.0, 1.0),
}


def place(
    ws: Workspace,
    markup_type: MarkupType,
    points: list[list[float]],
    name: str | None,
    size_mm: list[float] | None,
) -> MarkupInfo:
    """A new markups node. ROI: one point (centre, with size_mm) or two (opposite corners)."""
    import vtk

    fewest, most = POINTS_NEEDED[markup_type]
    if not fewest <= len(points) <= most:
        wanted = str(fewest) if fewest == most else f"{fewest} to {most}"
        raise InvalidParameter(
            f"a {markup_type} needs {wanted} point(s), got {len(points)}",
            details={"type": markup_type, "points": len(points)},
        )
    if markup_type == "roi" and len(points) == 1 and not size_mm:
        raise InvalidParameter("an ROI from one point (its centre) needs size_mm [R, A, S]", details={})
    if markup_type == "plane" and _collinear(points):
        raise InvalidParameter(
            "the three points of a plane must not lie on one line", details={"points": points}
        )
    with ws.history.edit("place_markup") as step:
        node = ws.scene.AddNewNodeByClass(CLASSES[markup_type], name or markup_type.replace("_", " "))
        ws.history.created(step, node)
        node.CreateDefaultDisplayNodes()
        display = node.GetDisplayNode()
        if display is not None:
            display.SetSelectedColor(*COLORS[markup_type])
            display.SetColor(*COLORS[markup_type])
        if markup_type == "roi":
            _set_roi(node, points, size_mm)
        else:
            for point in points:
                node.AddControlPoint(vtk.vtkVector3d(*point))
        info = describe(node)
    info.undo_steps = len(ws.history)
    return info


def measure(ws: Workspace, node_id: str) -> MarkupInfo:
    return describe(find_node(ws.scene, node_id, "vtkMRMLMarkupsNode", "measure_markup"))


def list_markups(ws: Workspace) -> MarkupList:
    scene = ws.scene
    nodes = [
        scene.GetNthNodeByClass(i, "vtkMRMLMarkupsNode")
        for i in range(scene.GetNumberOfNodesByClass("vtkMRMLMarkupsNode"))
    ]
    return MarkupList(markups=[describe(n) for n in nodes if type_of(n) is not None])


def type_of(node: Any) -> MarkupType | None:
    for markup_type, class_name in CLASSES.items():
        if node.IsA(class_name):
            return markup_type
    return None


def describe(node: Any) -> MarkupInfo:
    markup_type = type_of(node)
    if markup_type is None:
        raise InvalidParameter(
            f"{node.GetID()} is a {node.GetClassName()}; measure_markup knows point lists, lines, angles, "
            "ROIs and planes",
            details={"node_id": node.GetID(), "class_name": node.GetClassName()},
        )
    points = control_points(node)
    info = MarkupInfo(
        node_id=node.GetID(), name=node.GetName() or node.GetID(), type=markup_type, points_ras=points
    )
    if markup_type == "line" and len(points) == 2:
        info.length_mm = _measurement(node, "length")
    elif markup_type == "angle" and len(points) == 3:
        info.angle_deg = _measurement(node, "angle")
    elif markup_type == "roi":
        info.roi_size_mm = [float(v) for v in node.GetSize()]
        centre = [0.0, 0.0, 0.0]
        node.GetCenterWorld(centre)
        info.points_ras = [[float(v) for v in centre]]
    elif markup_type == "plane" and node.GetIsPlaneValid():
        normal = [0.0, 0.0, 0.0]
        node.GetNormalWorld(normal)
        info.plane_normal = [float(v) for v in normal]
    return info


def control_points(node: Any) -> list[list[float]]:
    out = []
    for i in range(node.GetNumberOfControlPoints()):
        point = [0.0, 0.0, 0.0]
        node.GetNthControlPointPositionWorld(i, point)
        out.append([float(v) for v in point])
    return out


def _measurement(node: Any, name: str) -> float | None:
    measurement = node.GetMeasurement(name)
    if measurement is None or not measurement.GetValueDefined():
        return None
    return float(measurement.GetValue())


def _set_roi(node: Any, points: list[list[float]], size_mm: list[float] | None) -> None:
    if len(points) == 2:
        a, b = np.array(points[0], float), np.array(points[1], float)
        centre, size = (a + b) / 2, np.abs(b - a)
    else:
        centre, size = np.array(points[0], float), np.array(size_mm or [0, 0, 0], float)
    if size.shape != (3,) or np.any(size <= 0):
        raise InvalidParameter(
            "an ROI needs a positive size along R, A and S", details={"size_mm": [float(v) for v in size]}
        )
    node.SetCenter(*centre)
    node.SetSize(*size)


def _collinear(points: list[list[float]]) -> bool:
    a, b, c = (np.array(p, float) for p in points)
    return bool(np.linalg.norm(np.cross(b - a, c - a)) < 1e-9)


def draw_on_slice(rgb: np.ndarray, scene: Any, xy_to_ras: Any) -> int:
    """Draw the visible markups that cross this slice into `rgb` (row 0 at the top); returns how many.

    Control points within half a slice of the plane are discs; lines and angles join their points
    when both lie on the slice; an ROI the slice cuts is its outline. Colours are the markups'.
    """
    import vtk

    size = rgb.shape[0]
    to_xy = vtk.vtkMatrix4x4()
    vtk.vtkMatrix4x4.Invert(xy_to_ras, to_xy)
    matrix = np.array([[to_xy.GetElement(r, c) for c in range(4)] for r in range(4)])
    drawn = 0
    for i in range(scene.GetNumberOfNodesByClass("vtkMRMLMarkupsNode")):
        node = scene.GetNthNodeByClass(i, "vtkMRMLMarkupsNode")
        display = node.GetDisplayNode()
        markup_type = type_of(node)
        if (
            markup_type is None
            or display is None
            or not display.GetVisibility()
            or not display.GetVisibility2D()
        ):
            continue
        color = np.clip(np.round(np.array(display.GetSelectedColor()) * 255), 0, 255).astype(np.uint8)
        if markup_type == "roi":
            drawn += _draw_roi(rgb, node, matrix, color)
            continue
        points = control_points(node)
        if not points:
            continue
        xy = (matrix @ np.c_[np.array(points), np.ones(len(points))].T).T[:, :3]
        on_slice = np.abs(xy[:, 2]) <= 0.5
        if markup_type in ("line", "angle"):
            for a, b in zip(range(len(xy) - 1), range(1, len(xy)), strict=True):
                if on_slice[a] and on_slice[b]:
                    _line(rgb, xy[a], xy[b], color)
        radius = max(2, size // 128)
        for point, shown in zip(xy, on_slice, strict=True):
            if shown:
                _disc(rgb, point, radius, color)
        drawn += int(on_slice.any())
    return drawn


def _row_col(point: np.ndarray, size: int) -> tuple[float, float]:
    return size - 1 - point[1], point[0]


def _disc(rgb: np.ndarray, point: np.ndarray, radius: int, color: np.ndarray) -> None:
    size = rgb.shape[0]
    row, col = _row_col(point, size)
    r0, r1 = int(max(0, np.floor(row - radius))), int(min(size, np.ceil(row + radius) + 1))
    c0, c1 = int(max(0, np.floor(col - radius))), int(min(size, np.ceil(col + radius) + 1))
    if r0 >= r1 or c0 >= c1:
        return
    rows, cols = np.ogrid[r0:r1, c0:c1]
    rgb[r0:r1, c0:c1][(rows - row) ** 2 + (cols - col) ** 2 <= radius**2] = color


def _line(rgb: np.ndarray, a: np.ndarray, b: np.ndarray, color: np.ndarray) -> None:
    size = rgb.shape[0]
    (ra, ca), (rb, cb) = _row_col(a, size), _row_col(b, size)
    steps = int(max(abs(rb - ra), abs(cb - ca), 1)) * 2
    rows = np.round(np.linspace(ra, rb, steps)).astype(int)
    cols = np.round(np.linspace(ca, cb, steps)).astype(int)
    keep = (rows >= 0) & (rows < size) & (cols >= 0) & (cols < size)
    rgb[rows[keep], cols[keep]] = color


def _draw_roi(rgb: np.ndarray, node: Any, to_xy: np.ndarray, color: np.ndarray) -> int:
    bounds = [0.0] * 6
    node.GetRASBounds(bounds)
    corners = np.array([[x, y, z, 1.0] for x in bounds[0:2] for y in bounds[2:4] for z in bounds[4:6]])
    xy = (to_xy @ corners.T).T[:, :3]
    if not xy[:, 2].min() <= 0 <= xy[:, 2].max():
        return 0
    lo, hi = xy[:, :2].min(axis=0), xy[:, :2].max(axis=0)
    box = [
        np.array([lo[0], lo[1]]),
        np.array([hi[0], lo[1]]),
        np.array([hi[0], hi[1]]),
        np.array([lo[0], hi[1]]),
    ]
    for a, b in zip(box, box[1:] + box[:1], strict=True):
        _line(rgb, a, b, color)
    return 1
