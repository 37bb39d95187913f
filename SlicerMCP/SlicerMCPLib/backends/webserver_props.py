"""Reading Slicer's WebServer `/slicer/mrml/properties` answer: node summaries and what not to trust.

The WebServer parses each node's PrintSelf text (SlicerRequestHandler.nodeProperties): numbers
have 6 significant digits and text that looks like a number or true/false is converted, so
names, attributes and geometry are read another way by `webserver.WebServerBackend`.
"""

from __future__ import annotations

import re
from typing import Any

from ..core.models import NodeSummary, SegmentInfo, VolumeInfo

CLASS_IN_ID = re.compile(r"^(vtkMRML\w*?Node)")
UNLISTED_PROPERTIES = ("ImageData", "Segmentation", "Node references", "Attributes", "IJKToRASDirections")
# printed fields the WebServer alters (text typed, numbers rounded) that get_node reads another way or leaves out
ALTERED_PROPERTIES = ("Name", "Description", "Spacing", "Origin")
GEOMETRY_PRINTED = ("Spacing", "Origin", "IJKToRASDirections")
NRRD_CLASSES = ("vtkMRMLScalarVolumeNode", "vtkMRMLLabelMapVolumeNode")
LAYERS = ("BackgroundVolumeID", "ForegroundVolumeID", "LabelVolumeID")
NO_EXEC_NOTE = (
    "attributes, description and the storage file are left out: Slicer's WebServer alters them in "
    "/slicer/mrml/properties (text that looks like a number or true/false is converted, lines it can't "
    "convert vanish) and only /slicer/exec reads them exactly. To get them, enable 'Slicer API exec' in "
    "Slicer's Web Server module. The other properties (and segment names) are as the WebServer parsed "
    "them from the node's printout (numbers rounded to 6 digits)."
)


def vec3(value: Any) -> tuple[float, float, float] | None:
    if isinstance(value, list) and len(value) == 3:
        return (float(value[0]), float(value[1]), float(value[2]))
    return None


def class_of(node_id: str, props: dict[str, Any]) -> str:
    """The node's class; from its id when its PrintSelf skips the MRML base fields (the layout node)."""
    if "ClassName" in props:
        return str(props["ClassName"])
    m = CLASS_IN_ID.match(node_id)
    return m.group(1) if m else ""


def node_summary(node_id: str, props: dict[str, Any], name: str | None = None) -> NodeSummary:
    """A summary from the WebServer's properties; `name` from /slicer/mrml/names (exact), when known."""
    class_name = class_of(node_id, props)
    volume = None
    image = props.get("ImageData")
    if (
        class_name.endswith("VolumeNode")
        and isinstance(image, dict)
        and isinstance(image.get("Dimensions"), list)
    ):
        volume = VolumeInfo(
            dimensions=tuple(int(v) for v in image["Dimensions"]),
            spacing=vec3(props.get("Spacing")) or (1.0, 1.0, 1.0),
            origin=vec3(props.get("Origin")) or (0.0, 0.0, 0.0),
            is_labelmap=class_name == "vtkMRMLLabelMapVolumeNode",
        )
    segments = None
    segmentation = props.get("Segmentation")
    if isinstance(segmentation, dict):
        found = segmentation.get("Segments")
        segments = [
            SegmentInfo(
                id=str(sid), name=str(seg.get("Name", sid)), color=vec3(seg.get("Color")) or (1.0, 1.0, 1.0)
            )
            for sid, seg in (found.items() if isinstance(found, dict) else [])
            if isinstance(seg, dict)
        ]
    return NodeSummary(
        id=node_id,
        name=name if name is not None else str(props.get("Name", "")),
        class_name=class_name,
        volume=volume,
        segments=segments,
    )


def is_listed(props: dict[str, Any]) -> bool:
    """Application nodes (hidden from editors, singletons, or printing no MRML base fields like the
    layout node) are listed only when asked for by class."""
    return "ID" in props and props.get("HideFromEditors") is not True and props.get("SingletonTag") is None


def exact_segments(summary: NodeSummary, exact: Any) -> None:
    """Segments as /slicer/exec read them (the printout types names like "007")."""
    if isinstance(exact, dict) and isinstance(exact.get("segments"), list):
        summary.segments = [
            SegmentInfo(
                id=str(s["id"]),
                name=str(s["name"]),
                color=vec3(s["color"]) or (1.0, 1.0, 1.0),
                label_value=int(s["label_value"]),
            )
            for s in exact["segments"]
        ]


def unique_name(name: str, taken: set[str]) -> str:
    """A literal name no node has: the WebServer overwrites a node whose name or id matches (shell-style)."""
    base = "".join("_" if c in "*?[]" else c for c in name) or "Volume"
    unique, n = base, 1
    while unique in taken:
        n += 1
        unique = f"{base}_{n}"
    return unique
