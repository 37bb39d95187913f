"""Getting data into and out of the scene without Qt: storage nodes, the volumes logic, numpy.

Every function here runs on the main thread, except `read_volume_file` and `prepare_volume`
(any thread: files and VTK data objects, no scene). A failed load removes whatever it half-made,
so the scene looks exactly as before.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..core.errors import ErrorCode, InvalidParameter, SlicerMCPError
from ..core.scene_backend import VolumeArray
from .nodes import is_application_node

log = logging.getLogger(__name__)

# vtkSlicerVolumesLogic loading options (bit flags)
_LABELMAP = 1
_CENTERED = 2
_SINGLE_FILE = 4


def is_segmentation_file(path: Path) -> bool:
    return path.name.lower().endswith(".seg.nrrd")


@contextlib.contextmanager
def rollback_on_failure(scene: Any) -> Iterator[None]:
    """Remove every node added inside the block if the block raises."""
    before = {node.GetID() for node in scene.GetNodes()}
    try:
        yield
    except BaseException:
        added = [node for node in scene.GetNodes() if node.GetID() not in before]
        for node in added:
            scene.RemoveNode(node)
        if added:
            log.info("load failed: removed %d half-made nodes", len(added))
        raise


def _load_failed(path: Path, why: str) -> SlicerMCPError:
    return SlicerMCPError(
        f"could not load {path.name}: {why}. Check that the file is a readable NRRD, NIfTI or MHA "
        "volume (or a .seg.nrrd segmentation); the scene was left unchanged.",
        code=ErrorCode.LOAD_FAILED,
        details={"path": str(path)},
    )


_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def read_volume_file(path: Path, labelmap: bool, name: str | None) -> PreparedVolume | None:
    """A 3-D scalar volume file read and made ready for the scene, off the main thread.

    SimpleITK releases the GIL while it reads and decompresses, so the server keeps answering
    during a large load; Slicer's volumes logic holds it. None for what this reader does not
    turn into a plain volume (segmentations, vectors, 2-D or 4-D images): those are read by
    `load_file` on the main thread, as before.
    """
    import SimpleITK as sitk

    if is_segmentation_file(path):
        return None
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        raise _load_failed(path, "the volume reader could not read it") from exc
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        return None
    spacing = np.asarray(image.GetSpacing(), dtype=float)
    direction = np.asarray(image.GetDirection(), dtype=float).reshape(3, 3)
    ijk_to_lps = np.eye(4)
    ijk_to_lps[:3, :3] = direction * spacing
    ijk_to_lps[:3, 3] = image.GetOrigin()
    array = sitk.GetArrayViewFromImage(image)
    volume = VolumeArray(
        array=array, ijk_to_ras=_LPS_TO_RAS @ ijk_to_lps, name=name or _stem(path), is_labelmap=labelmap
    )
    return prepare_volume(volume)  # copies the voxels into VTK: the SimpleITK image can go


def load_file(
    app: Any, path: Path, labelmap: bool, name: str | None, prepared: PreparedVolume | None = None
) -> list[Any]:
    """Load a volume or segmentation file; returns the new data nodes.

    With `prepared` (what `read_volume_file` made of the file) only the node is made here.
    """
    if prepared is not None:
        return [_add_read_volume(app, path, prepared, name)]
    with rollback_on_failure(app.scene):
        if is_segmentation_file(path):
            node_name = name or path.name[: -len(".seg.nrrd")]
            node = app.segmentations_logic.LoadSegmentationFromFile(str(path), True, node_name)
            if node is None or node.GetSegmentation().GetNumberOfSegments() == 0:
                raise _load_failed(path, "the segmentation reader found no segments")
            node.CreateDefaultDisplayNodes()
            return [node]
        node_name = name or _stem(path)
        options = _SINGLE_FILE | (_LABELMAP if labelmap else 0)
        node = app.volumes_logic.AddArchetypeVolume(str(path), node_name, options)
        if node is None or node.GetImageData() is None:
            raise _load_failed(path, "the volume reader could not read it")
        if name:
            node.SetName(name)
        _show_as_background(app, node)
        return [node]


def _add_read_volume(app: Any, path: Path, prepared: PreparedVolume, name: str | None) -> Any:
    """A node for a volume read off the main thread, named and stored as the volumes logic would."""
    if not name:
        prepared.volume.name = app.scene.GenerateUniqueName(prepared.volume.name)
    with rollback_on_failure(app.scene):
        node = add_volume(app, prepared)
        storage = node.CreateDefaultStorageNode()
        storage.SetFileName(str(path))
        app.scene.AddNode(storage)
        node.SetAndObserveStorageNodeID(storage.GetID())
    return node


def _stem(path: Path) -> str:
    name = path.name
    for suffix in (".nii.gz", ".nrrd", ".nhdr", ".nii", ".mha", ".mhd"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def _show_as_background(app: Any, node: Any) -> None:
    """Like Slicer: a new scalar volume becomes the background, a labelmap the label layer."""
    scene = app.scene
    for i in range(scene.GetNumberOfNodesByClass("vtkMRMLSliceCompositeNode")):
        comp = scene.GetNthNodeByClass(i, "vtkMRMLSliceCompositeNode")
        if node.IsA("vtkMRMLLabelMapVolumeNode"):
            comp.SetLabelVolumeID(node.GetID())
        else:
            comp.SetBackgroundVolumeID(node.GetID())


@dataclass
class PreparedVolume:
    """A volume's VTK image, matrix and display window, built off the main thread."""

    volume: VolumeArray
    image: Any  # vtkImageData holding its own copy of the voxels
    matrix: Any  # vtkMatrix4x4 IJK->RAS
    window_level: tuple[float, float] | None


def estimate_window_level(array: np.ndarray) -> tuple[float, float]:
    """Window/level from the 0.1st..99.9th percentiles of a strided sample, close to Slicer's automatic
    window, without a full-volume histogram on the main thread (the slow part of a large load)."""
    step = max(1, round((array.size / 2_000_000) ** (1 / 3)))
    sample = array[::step, ::step, ::step]
    if sample.dtype.kind == "f" and not np.isfinite(sample).all():  # NaN/inf voxels would poison the window
        sample = sample[np.isfinite(sample)]
        if sample.size == 0:
            return 1.0, 0.0
    lo, hi = np.percentile(sample, [0.1, 99.9])
    if hi <= lo:
        lo, hi = float(sample.min()), float(sample.max())
    window = max(float(hi - lo), 1.0 if np.issubdtype(array.dtype, np.integer) else 1e-6)
    return window, float(lo + hi) / 2.0


def _vtk_compatible(array: np.ndarray) -> np.ndarray:
    """Voxels in a dtype VTK holds as is: native byte order (VTK reads raw memory, so big-endian
    voxels would be reinterpreted), bool as uint8, float16 as float32."""
    if array.dtype.kind not in "biuf":
        raise InvalidParameter(
            f"voxels of type {array.dtype.name} cannot be a volume; use integers or floats"
        )
    if array.dtype == np.bool_:
        return array.astype(np.uint8)
    if array.dtype.kind == "f" and array.dtype.itemsize < 4:
        return array.astype(np.float32)
    if not array.dtype.isnative:
        return array.astype(array.dtype.newbyteorder("="))
    return array


def allocate_voxels(shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """A numpy view of a new VTK array: a producer that fills it hands its voxels to
    `prepare_volume` without a copy (VTK owns the memory; the view keeps the array alive)."""
    from vtk.util import numpy_support

    dtype = np.dtype(dtype)
    count = int(np.prod(shape))
    if dtype.kind not in "iuf" or not dtype.isnative or count == 0:
        return np.empty(shape, dtype)
    scalars = numpy_support.create_vtk_array(numpy_support.get_vtk_array_type(dtype))
    scalars.SetNumberOfValues(count)
    return numpy_support.vtk_to_numpy(scalars).reshape(shape)


def _vtk_owner(array: np.ndarray) -> Any:
    """The VTK array whose whole memory `array` is, when nothing else uses that VTK array yet."""
    import vtk
    from vtk.util import numpy_support

    base: Any = array
    while isinstance(base, np.ndarray):
        base = base.base
    owner = base.obj if isinstance(base, memoryview) else None
    if (
        not isinstance(owner, vtk.vtkDataArray)
        or owner.GetReferenceCount() != 1  # already the scalars of an image: another node's voxels
        or owner.GetNumberOfComponents() != 1
        or owner.GetNumberOfValues() != array.size
        or numpy_support.get_vtk_array_type(array.dtype) != owner.GetDataType()
        or not array.flags.c_contiguous
        or array.ctypes.data != int(owner.GetVoidPointer(0).split("_")[1], 16)
    ):
        return None
    return owner


def _set_cached_range(scalars: Any, value_range: tuple[float, float]) -> None:
    """Store a known range where vtkDataArray::GetRange looks first (valid until the array changes)."""
    import vtk

    ranges = vtk.vtkInformationVector()
    ranges.SetNumberOfInformationObjects(1)
    ranges.GetInformationObject(0).Set(vtk.vtkDataArray.COMPONENT_RANGE(), value_range, 2)
    scalars.GetInformation().Set(vtk.vtkDataArray.PER_COMPONENT(), ranges)


def prepare_volume(volume: VolumeArray) -> PreparedVolume:
    """Validate and convert `volume` for the scene; any thread (VTK data objects, no scene access)."""
    import vtk
    from vtk.util import numpy_support

    array = np.asarray(volume.array)
    if array.ndim != 3 or 0 in array.shape:
        raise InvalidParameter(f"a volume needs a non-empty 3-D array [k, j, i], got shape {array.shape}")
    matrix = np.asarray(volume.ijk_to_ras, dtype=float)
    if (
        matrix.shape != (4, 4)
        or not np.all(np.isfinite(matrix))
        or abs(np.linalg.det(matrix[:3, :3])) < 1e-12
    ):
        raise InvalidParameter("ijk_to_ras must be an invertible 4x4 matrix")
    array = np.ascontiguousarray(_vtk_compatible(array))
    image = vtk.vtkImageData()
    image.SetDimensions(array.shape[2], array.shape[1], array.shape[0])
    scalars = _vtk_owner(array)
    if scalars is None:
        scalars = numpy_support.numpy_to_vtk(array.ravel(), deep=True)
    if volume.value_range is not None:
        _set_cached_range(scalars, volume.value_range)
    else:
        scalars.GetRange(0)  # computed here, cached on the array: node listings on the main thread reuse it
    image.GetPointData().SetScalars(scalars)
    m = vtk.vtkMatrix4x4()
    for r in range(4):
        for c in range(4):
            m.SetElement(r, c, float(matrix[r, c]))
    window_level = None
    if not volume.is_labelmap:
        window_level = volume.window_level or estimate_window_level(array)
    return PreparedVolume(volume, image, m, window_level)


def add_volume(app: Any, volume: VolumeArray | PreparedVolume) -> Any:
    """A scalar or labelmap volume node holding a copy of the voxels ([k, j, i]); main thread."""
    prepared = volume if isinstance(volume, PreparedVolume) else prepare_volume(volume)
    spec = prepared.volume
    class_name = "vtkMRMLLabelMapVolumeNode" if spec.is_labelmap else "vtkMRMLScalarVolumeNode"
    with rollback_on_failure(app.scene):
        node = app.scene.AddNewNodeByClass(class_name, spec.name or "Volume")
        node.SetIJKToRASMatrix(prepared.matrix)
        for key, value in spec.attributes.items():
            node.SetAttribute(str(key), str(value))
        if prepared.window_level is not None:
            # display first, with a fixed window: no full-volume histogram when the voxels arrive
            display = app.scene.AddNewNodeByClass("vtkMRMLScalarVolumeDisplayNode")
            display.SetDefaultColorMap()
            display.SetAutoWindowLevel(False)
            display.SetWindowLevel(*prepared.window_level)
            node.SetAndObserveDisplayNodeID(display.GetID())
        node.SetAndObserveImageData(prepared.image)
        node.CreateDefaultDisplayNodes()  # labelmaps; a no-op where the display exists
        _show_as_background(app, node)
    return node


def export_volume(node: Any) -> VolumeArray:
    import vtk
    from vtk.util import numpy_support

    image = node.GetImageData()
    if image is None or image.GetPointData().GetScalars() is None:
        raise InvalidParameter(
            f"volume {node.GetID()} has no voxels to export", details={"node_id": node.GetID()}
        )
    dims = image.GetDimensions()
    components = image.GetNumberOfScalarComponents()
    flat = numpy_support.vtk_to_numpy(image.GetPointData().GetScalars())
    shape = (dims[2], dims[1], dims[0]) + ((components,) if components > 1 else ())
    m = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(m)
    attributes = {
        a: node.GetAttribute(a) for a in (node.GetAttributeNames() or ()) if node.GetAttribute(a) is not None
    }
    return VolumeArray(
        array=flat.reshape(shape).copy(),
        ijk_to_ras=np.array([[m.GetElement(r, c) for c in range(4)] for r in range(4)]),
        name=node.GetName() or node.GetID(),
        attributes=attributes,
        is_labelmap=node.IsA("vtkMRMLLabelMapVolumeNode"),
    )


def clear_data(scene: Any) -> int:
    """Remove the user's data nodes with their display and storage nodes; returns how many data nodes went.

    Nodes hidden from editors (slice-plane models, presets) and singletons (views, colour
    tables) belong to the application and stay.
    """
    data = []
    for node in scene.GetNodes():
        if is_application_node(node):
            continue
        if node.IsA("vtkMRMLStorableNode"):
            data.append(node)
    doomed = {}
    for node in data:
        doomed[node.GetID()] = node
        helpers = [node.GetStorageNode()]
        if node.IsA("vtkMRMLDisplayableNode"):
            for d in range(node.GetNumberOfDisplayNodes()):
                display = node.GetNthDisplayNode(d)
                helpers.append(display)
                if display is not None:
                    helpers.extend(display.GetNodeReference(role) for role in ("volumeProperty", "roi"))
        for helper in helpers:
            if helper is not None and not helper.GetSingletonTag():
                doomed[helper.GetID()] = helper
    for node in orphan_display_nodes(scene):
        doomed[node.GetID()] = node
    scene.StartState(scene.BatchProcessState)
    try:
        for node in doomed.values():
            scene.RemoveNode(node)
    finally:
        scene.EndState(scene.BatchProcessState)
    return len(data)


def orphan_display_nodes(scene: Any) -> list[Any]:
    """Display nodes whose data node is gone (some logics leave them behind)."""
    return [
        node
        for node in scene.GetNodes()
        if node.IsA("vtkMRMLDisplayNode") and not node.GetSingletonTag() and node.GetDisplayableNode() is None
    ]


def reap_orphan_displays(scene: Any) -> int:
    """Remove the display nodes a removed data node leaves behind, from now on; returns the observer tag.

    A slice view's layer logic gives a shown volume a new default display node as soon as its own is
    removed (removing a node's display nodes first, then the node, is the usual order), and that one
    stays when the volume goes: an orphan whose pipeline still holds the volume's voxels. Installed
    with the first slice view (scene/rendering.py), on the main thread."""
    import vtk

    @vtk.calldata_type(vtk.VTK_OBJECT)
    def removed(_scene: Any, _event: str, node: Any) -> None:
        if node is None or not node.IsA("vtkMRMLDisplayableNode") or scene.IsClosing():
            return
        # only the removed node's own display nodes: a scan of the whole scene per removal made
        # removing N nodes one by one cost N x N
        for i in range(node.GetNumberOfDisplayNodes()):
            display = scene.GetNodeByID(node.GetNthDisplayNodeID(i) or "")
            if display is not None and not display.GetSingletonTag() and display.GetDisplayableNode() is None:
                scene.RemoveNode(display)

    return scene.AddObserver(scene.NodeRemovedEvent, removed)
