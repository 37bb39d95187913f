"""Describing MRML nodes as plain data: the per-node fields of list_scene_nodes and get_node.

Every function here runs on the main thread (the backend calls them through the gateway).
"""

from __future__ import annotations

import math
import re
from typing import Any

from ..core.errors import InvalidNodeId, InvalidParameter
from ..core.models import NodeDetails, NodeList, NodeSummary, SegmentInfo, VolumeInfo

_PRINT_LINE = re.compile(r"^  (\w[\w ]*?)\s*[:=]\s*(.+?)\s*$")
_MAX_GENERIC_PROPERTIES = 60
# PrintSelf lines that repeat the summary or say nothing to a user
_SKIP_PRINTED = frozenset(
    {
        "Debug",
        "Modified Time",
        "MTime",
        "Reference Count",
        "Registered Events",
        "ID",
        "Name",
        "Indent",
        "ClassName",
        "Description",
        "HideFromEditors",
    }
)

# Not data: views, cameras, colour tables and the like belong to the application.
APPLICATION_CLASSES = (
    "vtkMRMLColorNode",
    "vtkMRMLAbstractViewNode",
    "vtkMRMLCameraNode",
    "vtkMRMLSliceCompositeNode",
    "vtkMRMLLayoutNode",
    "vtkMRMLInteractionNode",
    "vtkMRMLSelectionNode",
    "vtkMRMLCrosshairNode",
    "vtkMRMLSubjectHierarchyNode",
)


_IS_A: dict[tuple[str, str], bool] = {}  # (node class, asked class) -> IsA: fixed per class


def is_a(node: Any, class_name: str) -> bool:
    """`node.IsA(class_name)`, answered from a per-class table after the first node of each class.

    A listing asks each of ~1,000 nodes about a dozen classes; every wrapped VTK call costs ~1 µs.
    """
    return _class_is_a(node, node.GetClassName(), class_name)


def _class_is_a(node: Any, kind: str, class_name: str) -> bool:
    found = _IS_A.get((kind, class_name))
    if found is None:
        found = bool(node.IsA(class_name))
        if len(_IS_A) < 10_000:  # class filters come from clients: bounded
            _IS_A[(kind, class_name)] = found
    return found


def is_application_node(node: Any) -> bool:
    """Singletons, nodes hidden from editors (slice-plane models, presets) and view/colour nodes."""
    if node.GetSingletonTag() or node.GetHideFromEditors():
        return True
    return _class_is_application(node, node.GetClassName())


def _finite(values: Any) -> tuple[float, ...]:
    return tuple(float(v) if math.isfinite(float(v)) else 0.0 for v in values)


def scalar_range(image: Any) -> tuple[float, float] | None:
    """The voxels' (min, max); None without voxels.

    The array's own range is ~8x faster than vtkImageData's (which checks ghost points) and
    stays cached on the array until the voxels change.
    """
    scalars = image.GetPointData().GetScalars() if image.GetPointData() is not None else None
    if scalars is None:
        return None
    one = scalars.GetNumberOfComponents() == 1
    low, high = _finite(scalars.GetRange(0) if one else image.GetScalarRange())
    return low, high


def volume_info(node: Any) -> VolumeInfo | None:
    image = node.GetImageData()
    if image is None:
        return None
    return VolumeInfo(
        dimensions=tuple(image.GetDimensions()),
        spacing=_finite(node.GetSpacing()),
        origin=_finite(node.GetOrigin()),
        scalar_range=scalar_range(image),
        scalar_type=image.GetScalarTypeAsString(),
        is_labelmap=node.IsA("vtkMRMLLabelMapVolumeNode"),
    )


class VolumeInfoCache:
    """VolumeInfo per volume node, reused until the node or its voxels change.

    Reading a volume's image data costs ~15 µs per call in VTK 9.6's Python wrapping (a
    Python subclass wraps every vtkImageData), which made a 1,000-volume listing take
    ~50 ms. Entries are keyed by node id and node MTime, and dropped when the node reports
    ImageDataModifiedEvent (voxels changed in place) or leaves the scene (after a scene
    Clear, Slicer's Close Scene, a new node may get the same id).
    """

    def __init__(self, scene: Any) -> None:
        self.scene = scene
        self._entries: dict[str, tuple[int, VolumeInfo | None]] = {}
        self._observed: dict[str, int] = {}  # node id -> tag of its ImageDataModifiedEvent observer
        self._scene_tag: int | None = None  # observing starts on first use, on the main thread

    def get(self, node: Any) -> VolumeInfo | None:
        if self._scene_tag is None:
            self._watch_scene()
        key = node.GetID()
        mtime = node.GetMTime()
        entry = self._entries.get(key)
        if entry is not None and entry[0] == mtime:
            return entry[1]
        if key not in self._observed:
            self._observed[key] = node.AddObserver(
                node.ImageDataModifiedEvent, lambda *_: self._entries.pop(key, None)
            )
        info = volume_info(node)
        self._entries[key] = (node.GetMTime(), info)
        return info

    def _watch_scene(self) -> None:
        import vtk

        @vtk.calldata_type(vtk.VTK_OBJECT)
        def removed(_scene: Any, _event: str, node: Any) -> None:
            key = node.GetID() if node is not None else None
            self._entries.pop(key, None)
            tag = self._observed.pop(key, None)
            if tag is not None:
                node.RemoveObserver(tag)

        self._scene_tag = self.scene.AddObserver(self.scene.NodeRemovedEvent, removed)

    def close(self) -> None:
        """Remove every observer; the cache starts afresh if used again."""
        if self._scene_tag is not None:
            self.scene.RemoveObserver(self._scene_tag)
            self._scene_tag = None
        for key, tag in self._observed.items():
            node = self.scene.GetNodeByID(key)
            if node is not None:
                node.RemoveObserver(tag)
        self._observed.clear()
        self._entries.clear()


class SceneIndex:
    """The scene's nodes as a Python list, with each node's class and whether it is data.

    Walking a vtkCollection from Python wraps every node again (~1 µs each), and asking each node
    whether it is an application node costs 2-3 more wrapped calls: a listing of a 1,000-node scene
    spent most of its time there. The list is rebuilt only after nodes were added or removed; the
    data/application split also after a watched node changed (HideFromEditors can be switched on
    any node; class and singleton tag never change), which ModifiedEvent observers report.
    """

    _EVENTS = ("NodeAddedEvent", "EndImportEvent", "EndRestoreEvent")

    def __init__(self, scene: Any):
        import vtk

        self.scene = scene
        self._nodes: list[tuple[Any, str]] | None = None  # (node, class name)
        self._data: list[tuple[Any, str]] | None = None  # the nodes that are not application nodes
        self._watched: dict[str, tuple[Any, int]] = {}  # node id -> (node, ModifiedEvent observer tag)

        @vtk.calldata_type(vtk.VTK_OBJECT)
        def removed(_scene: Any, _event: str, node: Any) -> None:
            self._invalidate()
            entry = self._watched.pop(node.GetID(), None) if node is not None else None
            if entry is not None and entry[0] is node:  # hold no removed node, watch it no more
                node.RemoveObserver(entry[1])
            elif entry is not None:
                self._watched[node.GetID()] = entry

        self._tags = [scene.AddObserver(getattr(scene, e), self._invalidate) for e in self._EVENTS]
        self._tags.append(scene.AddObserver(scene.NodeRemovedEvent, removed))
        self._tags.append(scene.AddObserver(scene.EndCloseEvent, self._closed))

    def _invalidate(self, *_: Any) -> None:
        self._nodes = None
        self._data = None

    def _flags_changed(self, *_: Any) -> None:
        self._data = None

    def _closed(self, *_: Any) -> None:
        """After a scene close, node ids start again: forget every node no longer in the scene."""
        self._invalidate()
        for key in [k for k, (node, _) in self._watched.items() if node.GetScene() is not self.scene]:
            node, tag = self._watched.pop(key)
            node.RemoveObserver(tag)

    def nodes(self) -> list[Any]:
        return [node for node, _ in self._typed()]

    def _typed(self) -> list[tuple[Any, str]]:
        if self._nodes is None:
            self._nodes = [(node, node.GetClassName()) for node in self.scene.GetNodes()]
        return self._nodes

    def data_nodes(self) -> list[tuple[Any, str]]:
        """(node, class name) of every node that is not an application node (`is_application_node`)."""
        if self._data is None:
            data = []
            for node, kind in self._typed():
                if _class_is_application(node, kind) or node.GetSingletonTag():
                    continue
                key = node.GetID()
                if key not in self._watched:
                    self._watched[key] = (node, node.AddObserver("ModifiedEvent", self._flags_changed))
                if not node.GetHideFromEditors():
                    data.append((node, kind))
            self._data = data
        return self._data

    def all_nodes(self) -> list[tuple[Any, str]]:
        return self._typed()

    def close(self) -> None:
        for tag in self._tags:
            self.scene.RemoveObserver(tag)
        for node, tag in self._watched.values():
            node.RemoveObserver(tag)
        self._watched.clear()
        self._nodes = self._data = None


def _class_is_application(node: Any, kind: str) -> bool:
    found = _IS_A.get((kind, "application"))
    if found is None:
        found = _IS_A[(kind, "application")] = any(node.IsA(c) for c in APPLICATION_CLASSES)
    return found


def segment_infos(node: Any) -> list[SegmentInfo]:
    segmentation = node.GetSegmentation()
    out = []
    for i in range(segmentation.GetNumberOfSegments()):
        seg = segmentation.GetNthSegment(i)
        out.append(
            SegmentInfo(
                id=segmentation.GetNthSegmentID(i),
                name=seg.GetName() or "",
                color=_finite(seg.GetColor()),
                label_value=int(seg.GetLabelValue()),
            )
        )
    return out


def summary(node: Any, volumes: VolumeInfoCache | None = None) -> NodeSummary:
    visible = None
    if is_a(node, "vtkMRMLDisplayableNode"):
        display = node.GetDisplayNode()
        visible = bool(display.GetVisibility()) if display is not None else False
    return NodeSummary(
        id=node.GetID(),
        name=node.GetName() or "",
        class_name=node.GetClassName(),
        visible=visible,
        volume=(volumes.get(node) if volumes else volume_info(node))
        if is_a(node, "vtkMRMLVolumeNode")
        else None,
        segments=segment_infos(node) if is_a(node, "vtkMRMLSegmentationNode") else None,
    )


def list_nodes(
    scene: Any,
    class_name: str | None,
    name: str | None,
    offset: int,
    limit: int,
    volumes: VolumeInfoCache | None = None,
    index: SceneIndex | None = None,
) -> NodeList:
    """Filter, then describe only the page: a 1,000-node scene lists in a few ms.

    Application nodes (views, colour tables, hidden helpers: `is_application_node`) are
    listed only when a class filter asks for their class.
    """
    needle = name.lower() if name else None
    if index is not None:  # class and data/application split known without asking VTK
        typed = index.all_nodes() if class_name else index.data_nodes()
        if class_name:
            typed = [(n, k) for n, k in typed if _class_is_a(n, k, class_name)]
        candidates = [n for n, _ in typed]
    else:
        candidates = [
            n for n in scene.GetNodes() if (is_a(n, class_name) if class_name else not is_application_node(n))
        ]
    matches = (
        candidates if needle is None else [n for n in candidates if needle in (n.GetName() or "").lower()]
    )
    page = matches[offset : offset + limit]
    return NodeList(
        nodes=[summary(n, volumes) for n in page],
        total=len(matches),
        offset=offset,
        limit=limit,
        has_more=offset + len(page) < len(matches),
    )


def find_node(scene: Any, node_id: str, expected_class: str | None = None, what: str = "") -> Any:
    """The node `node_id`, or InvalidNodeId / InvalidParameter saying how to find a good one."""
    # VTK takes C strings: "id\x00x" would resolve as "id", so a NUL never reaches it.
    node = scene.GetNodeByID(node_id) if node_id and "\x00" not in node_id else None
    if node is None:
        raise InvalidNodeId(
            f"no node with id {node_id!r} in the scene; call list_scene_nodes to see the node ids",
            details={"node_id": node_id},
        )
    if expected_class and not any(node.IsA(c) for c in expected_class.split("|")):
        wanted = " or ".join(expected_class.split("|"))
        raise InvalidParameter(
            f"node {node_id} is a {node.GetClassName()}, but {what or 'this operation'} needs a {wanted}; "
            f"call list_scene_nodes with class_name={expected_class.split('|')[0]} to find one",
            details={
                "node_id": node_id,
                "class_name": node.GetClassName(),
                "expected": expected_class.split("|"),
            },
        )
    return node


def _matrix(vtk_matrix: Any) -> list[list[float]]:
    return [[float(vtk_matrix.GetElement(r, c)) for c in range(4)] for r in range(4)]


def _volume_properties(node: Any) -> dict[str, Any]:
    import vtk

    m = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(m)
    props: dict[str, Any] = {"ijk_to_ras": _matrix(m)}
    image = node.GetImageData()
    if image is not None:
        props["number_of_components"] = image.GetNumberOfScalarComponents()
        props["bounds_ras"] = _bounds(node)
    display = node.GetDisplayNode()
    if display is not None:
        color = display.GetColorNode()
        props["display"] = {
            "visible": bool(display.GetVisibility()),
            "color_table": color.GetName() if color is not None else None,
        }
        if display.IsA("vtkMRMLScalarVolumeDisplayNode"):
            props["display"].update(
                window=float(display.GetWindow()),
                level=float(display.GetLevel()),
                auto_window_level=bool(display.GetAutoWindowLevel()),
                interpolate=bool(display.GetInterpolate()),
            )
    return props


def _bounds(node: Any) -> list[float]:
    bounds = [0.0] * 6
    node.GetRASBounds(bounds)
    return list(_finite(bounds))


def _segmentation_properties(node: Any) -> dict[str, Any]:
    segmentation = node.GetSegmentation()
    props: dict[str, Any] = {
        "source_representation": segmentation.GetSourceRepresentationName(),
        "number_of_segments": segmentation.GetNumberOfSegments(),
        "number_of_layers": segmentation.GetNumberOfLayers(),
    }
    if segmentation.GetNumberOfLayers() and segmentation.ContainsRepresentation("Binary labelmap"):
        image = segmentation.GetLayerDataObject(0)
        if image is not None:
            props["labelmap_spacing"] = list(_finite(image.GetSpacing()))
            props["labelmap_extent"] = list(image.GetExtent())
    display = node.GetDisplayNode()
    if display is not None:
        props["display"] = {
            "visible": bool(display.GetVisibility()),
            "opacity_2d_fill": float(display.GetOpacity2DFill()),
            "opacity_3d": float(display.GetOpacity3D()),
        }
    return props


def _generic_properties(node: Any) -> dict[str, Any]:
    """The simple `Key: value` lines of the node's PrintSelf, for node types not described above."""
    return printed_properties(str(node))


def printed_properties(text: str) -> dict[str, str]:
    """The top-level `Key: value` lines of a PrintSelf text, as text (the WebServer backend reads
    the same printout through /slicer/exec, and must not type or round its values)."""
    props: dict[str, str] = {}
    for line in text.splitlines():
        m = _PRINT_LINE.match(line)
        if not m:
            continue
        key, value = m.group(1).strip(), m.group(2)
        if key in _SKIP_PRINTED:
            continue
        if len(value) > 200 or "0x" in value:
            continue
        props[key] = value
        if len(props) >= _MAX_GENERIC_PROPERTIES:
            break
    return props


def details(scene: Any, node_id: str) -> NodeDetails:
    node = find_node(scene, node_id)
    base = summary(node)
    if node.IsA("vtkMRMLVolumeNode"):
        props = _volume_properties(node)
    elif node.IsA("vtkMRMLSegmentationNode"):
        props = _segmentation_properties(node)
    else:
        props = _generic_properties(node)
    props["description"] = node.GetDescription() or ""
    props["hide_from_editors"] = bool(node.GetHideFromEditors())
    if node.IsA("vtkMRMLDisplayableNode") and node.GetParentTransformNode() is not None:
        props["parent_transform_id"] = node.GetParentTransformNode().GetID()

    attributes = {}
    for attr in node.GetAttributeNames() or ():
        value = node.GetAttribute(attr)
        if value is not None:
            attributes[attr] = value

    references: dict[str, list[str]] = {}
    roles: list[str] = []
    node.GetNodeReferenceRoles(roles)
    for role in roles:
        ids = [node.GetNthNodeReferenceID(role, i) for i in range(node.GetNumberOfNodeReferences(role))]
        ids = [i for i in ids if i]
        if ids:
            references[role] = ids

    storage_file = None
    if node.IsA("vtkMRMLStorableNode") and node.GetStorageNode() is not None:
        storage_file = node.GetStorageNode().GetFileName() or None
    return NodeDetails(
        **base.model_dump(),
        attributes=attributes,
        properties=props,
        references=references,
        storage_file=storage_file,
    )
