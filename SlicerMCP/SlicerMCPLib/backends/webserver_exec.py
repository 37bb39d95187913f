"""Python sent to Slicer's `/slicer/exec` for the work no WebServer endpoint does.

Each snippet is self-contained (Slicer has no SlicerMCPLib), uses only `slicer.mrmlScene`,
VTK and numpy, and leaves its answer in `__execResult`, which the WebServer returns as
JSON. Arguments go in as Python literals (`repr` of str, dict, None), never pasted as code.
"""

from __future__ import annotations

from typing import Any

from ..core.errors import ErrorCode, InvalidNodeId, SlicerMCPError, VolumeCalculationError
from ..core.models import SegmentVolume, VolumeMeasurement
from ..scene.python_exec import MAX_NAMESPACES

_MEASURE = r"""
def __slicer_mcp_measure(node_id, wanted):
    import numpy
    from vtk.util import numpy_support
    node = slicer.mrmlScene.GetNodeByID(node_id)
    if node is None:
        return {"error": "INVALID_NODE_ID"}
    out = {"node_id": node.GetID(), "node_name": node.GetName(), "node_class": node.GetClassName(),
           "segments": []}

    def voxels(image):
        scalars = image.GetPointData().GetScalars() if image is not None else None
        return numpy.zeros(0) if scalars is None else numpy_support.vtk_to_numpy(scalars)

    if node.IsA("vtkMRMLSegmentationNode"):
        seg = node.GetSegmentation()
        if not seg.ContainsRepresentation("Binary labelmap"):
            seg.CreateRepresentation("Binary labelmap")
        voxel_mm3 = None
        for sid in seg.GetSegmentIDs():
            segment = seg.GetSegment(sid)
            if wanted is not None and wanted not in (sid, segment.GetName()):
                continue
            image = segment.GetRepresentation("Binary labelmap")
            value = segment.GetLabelValue()
            spacing = image.GetSpacing() if image is not None else (1.0, 1.0, 1.0)
            voxel_mm3 = float(spacing[0] * spacing[1] * spacing[2])
            count = int((voxels(image) == value).sum())
            out["segments"].append({"segment_id": sid, "name": segment.GetName(), "label_value": int(value),
                                    "voxel_count": count, "voxel_mm3": voxel_mm3})
        out["voxel_volume_mm3"] = voxel_mm3 or 0.0
        return out
    if node.IsA("vtkMRMLLabelMapVolumeNode"):
        spacing = node.GetSpacing()
        voxel_mm3 = float(spacing[0] * spacing[1] * spacing[2])
        data = voxels(node.GetImageData())
        labels, counts = numpy.unique(data[data != 0], return_counts=True)
        display = node.GetDisplayNode()
        colors = display.GetColorNode() if display is not None else None
        for label, count in zip(labels.tolist(), counts.tolist()):
            if wanted is not None and wanted != str(int(label)):
                continue
            name = colors.GetColorName(int(label)) if colors is not None else ""
            out["segments"].append({"segment_id": str(int(label)), "name": name or "label %d" % label,
                                    "label_value": int(label), "voxel_count": int(count),
                                    "voxel_mm3": voxel_mm3})
        out["voxel_volume_mm3"] = voxel_mm3
        return out
    return {"error": "NOT_MEASURABLE", "node_class": node.GetClassName()}

__execResult = __slicer_mcp_measure(@ARGS@)
"""

_RUN = r"""
def __slicer_mcp_run(code, key, limit):
    import ast, contextlib, io, traceback
    spaces = globals().setdefault("__slicer_mcp_namespaces", {})
    space = spaces.pop(key, None) or {"__name__": "__slicer_mcp__", "slicer": slicer}
    spaces[key] = space  # most recently used last; the oldest beyond `limit` are dropped
    while len(spaces) > limit:
        spaces.pop(next(iter(spaces)))
    out, err = io.StringIO(), io.StringIO()
    clip = lambda text: text if len(text) <= 100000 else text[:100000] + "\n... [output cut]"
    try:
        tree = ast.parse(code, mode="exec")
    except SyntaxError as exc:
        return {"success": False, "error": "SyntaxError: %s (line %s)" % (exc.msg, exc.lineno),
                "traceback": "".join(traceback.format_exception_only(type(exc), exc))}
    last = ast.Expression(tree.body.pop().value) if tree.body and isinstance(tree.body[-1], ast.Expr) else None
    value = None
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            exec(compile(tree, "<execute_python>", "exec"), space)
            if last is not None:
                value = eval(compile(last, "<execute_python>", "eval"), space)
        except BaseException as exc:
            return {"success": False, "stdout": clip(out.getvalue()), "stderr": clip(err.getvalue()),
                    "error": "%s: %s" % (type(exc).__name__, exc),
                    "traceback": clip("".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))}
    return {"success": True, "stdout": clip(out.getvalue()), "stderr": clip(err.getvalue()),
            "result": None if value is None else clip(repr(value))}

__execResult = __slicer_mcp_run(@ARGS@)
"""

_ATTRIBUTES = r"""
def __slicer_mcp_attributes(node_id, attributes):
    node = slicer.mrmlScene.GetNodeByID(node_id)
    if node is None:
        return {"error": "INVALID_NODE_ID"}
    for key, value in attributes.items():
        node.SetAttribute(key, value)
    return {"id": node.GetID()}

__execResult = __slicer_mcp_attributes(@ARGS@)
"""

_DETAILS = r"""
def __slicer_mcp_details(node_ids, printout):
    import vtk
    out = {}
    for node_id in node_ids:
        node = slicer.mrmlScene.GetNodeByID(node_id)
        if node is None:
            continue
        item = {"name": node.GetName(), "class_name": node.GetClassName(),
                "description": node.GetDescription(), "attributes": {}}
        for key in node.GetAttributeNames() or ():
            value = node.GetAttribute(key)
            if value is not None:
                item["attributes"][key] = value
        if node.IsA("vtkMRMLVolumeNode"):
            m = vtk.vtkMatrix4x4()
            node.GetIJKToRASMatrix(m)
            image = node.GetImageData()
            item["volume"] = {"spacing": list(node.GetSpacing()), "origin": list(node.GetOrigin()),
                              "ijk_to_ras": [[m.GetElement(r, c) for c in range(4)] for r in range(4)],
                              "dimensions": list(image.GetDimensions()) if image is not None else None}
        if node.IsA("vtkMRMLSegmentationNode"):
            seg = node.GetSegmentation()
            item["segments"] = [{"id": seg.GetNthSegmentID(i), "name": seg.GetNthSegment(i).GetName(),
                                 "color": list(seg.GetNthSegment(i).GetColor()),
                                 "label_value": seg.GetNthSegment(i).GetLabelValue()}
                                for i in range(seg.GetNumberOfSegments())]
        storage = node.GetStorageNode() if node.IsA("vtkMRMLStorableNode") else None
        item["storage_file"] = (storage.GetFileName() or None) if storage is not None else None
        if printout:
            item["printout"] = str(node)
        out[node_id] = item
    return out

__execResult = __slicer_mcp_details(@ARGS@)
"""

_NODES = r"""
def __slicer_mcp_nodes(application_classes):
    out = []
    for i in range(slicer.mrmlScene.GetNumberOfNodes()):
        node = slicer.mrmlScene.GetNthNode(i)
        application = bool(node.GetSingletonTag() or node.GetHideFromEditors()
                           or any(node.IsA(c) for c in application_classes))
        out.append([node.GetID(), node.GetName() or "", node.GetClassName(), node.GetMTime(), not application])
    return out

__execResult = __slicer_mcp_nodes(@ARGS@)
"""


def _call(
    template: str, *args: str | dict[str, str] | list[str] | tuple[str, ...] | bool | int | None
) -> str:
    return template.replace("@ARGS@", ", ".join(repr(a) for a in args))


def measure_source(node_id: str, segment: str | None) -> str:
    return _call(_MEASURE, str(node_id), None if segment is None else str(segment))


def run_source(code: str, session_key: str) -> str:
    return _call(_RUN, str(code), str(session_key), MAX_NAMESPACES)


def attributes_source(node_id: str, attributes: dict[str, str]) -> str:
    return _call(_ATTRIBUTES, str(node_id), {str(k): str(v) for k, v in attributes.items()})


def details_source(node_ids: list[str], printout: bool) -> str:
    """Exact name, description, attributes, geometry and storage file of each node (and its PrintSelf
    text when `printout`): what /slicer/mrml/properties rounds, converts or drops."""
    return _call(_DETAILS, [str(i) for i in node_ids], bool(printout))


def nodes_source(application_classes: tuple[str, ...]) -> str:
    """[id, name, class, MTime, data node] of every node in one call: what scene polling needs
    (`data node` as scene.nodes.is_application_node decides it, negated)."""
    return _call(_NODES, tuple(str(c) for c in application_classes))


def measurement(result: Any, node_id: str, segment: str | None) -> VolumeMeasurement:
    """The measurement from what `measure_source` left in `__execResult`; coded errors for what it reported."""
    if not isinstance(result, dict):
        raise VolumeCalculationError("Slicer returned an unexpected measurement", details={"result": result})
    if result.get("error") == "INVALID_NODE_ID":
        raise InvalidNodeId(
            f"no node with id {node_id!r} in the scene; call list_scene_nodes to see the node ids",
            details={"node_id": node_id},
        )
    if result.get("error"):
        raise SlicerMCPError(
            f"node {node_id} is a {result.get('node_class')}; measure_volume needs a segmentation or a "
            "labelmap volume (list_scene_nodes with class_name=vtkMRMLSegmentationNode finds one)",
            code=ErrorCode.INVALID_PARAMETER,
            details={"node_id": node_id, "class_name": result.get("node_class")},
        )
    if segment is not None and not result["segments"]:
        raise SlicerMCPError(
            f"node {node_id} has no segment or label {segment!r}; get_node lists its segments",
            code=ErrorCode.INVALID_PARAMETER,
            details={"node_id": node_id, "segment": segment},
        )
    segments = [
        SegmentVolume(
            segment_id=s["segment_id"],
            name=s["name"],
            label_value=s.get("label_value"),
            voxel_count=s["voxel_count"],
            volume_mm3=s["voxel_count"] * s["voxel_mm3"],
            volume_ml=s["voxel_count"] * s["voxel_mm3"] / 1000.0,
        )
        for s in result["segments"]
    ]
    return VolumeMeasurement(
        node_id=result["node_id"],
        node_name=result["node_name"],
        node_class=result["node_class"],
        voxel_volume_mm3=float(result.get("voxel_volume_mm3") or 0.0),
        segments=segments,
    )
