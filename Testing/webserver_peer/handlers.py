"""The `/slicer/...` handlers of the test WebServer, written to answer like Slicer's
SlicerRequestHandler (Slicer main, Modules/Scripted/WebServer/WebServerLib/SlicerRequestHandler.py):
same routes (prefix-matched in the same order, `handleRequest`), parameters, defaults,
content types and quirks (e.g. `scrollTo=0` and `offset=0` are ignored, `size` is ignored,
POST /volume answers `{'status': 'success'}`, which is not JSON). Each method names the
handler function it stands in for.
"""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from urllib.request import url2pathname

import numpy as np

from SlicerMCPLib.core.config import load_config
from SlicerMCPLib.core.gateway import MainThreadGateway
from SlicerMCPLib.core.scene_backend import VolumeArray
from SlicerMCPLib.hosts.headless import create_headless_backend, slicer_core_version
from SlicerMCPLib.scene.sampledata import SampleDataCache

from .properties import node_properties

Query = dict[str, list[str]]
_SHORT_TYPES = (b"short", b"short int", b"signed short", b"signed short int", b"int16", b"int16_t")
_SLICE_DEFAULT_VIEW = {"red": "axial", "yellow": "sagittal", "green": "coronal"}
_AXES = {"r": "right", "l": "left", "s": "superior", "i": "inferior", "a": "anterior", "p": "posterior"}


def _first(q: Query, key: str) -> str | None:
    return q[key][0].strip() if key in q else None


def _float(q: Query, key: str) -> float | None:
    try:
        return float(q[key][0].strip())
    except (KeyError, ValueError):
        return None


class SlicerApi:
    """Holds the headless scene; every method runs on the thread that created it."""

    def __init__(self, enable_exec: bool, config_path: str | None = None):
        import slicer

        self.enable_exec = enable_exec
        self.config = load_config(config_path)
        self.gateway = MainThreadGateway()
        self.gateway.bind()
        self.backend = create_headless_backend(self.gateway, self.config)
        self.scene = self.backend.scene
        slicer.mrmlScene = self.scene  # what code sent to /exec expects, as in Slicer
        self.exec_globals: dict[str, Any] = {"slicer": slicer, "json": json, "np": np, "numpy": np}
        self.run: Callable[[Any], Any] = lambda coro: None  # set by the server to its event loop
        # Slicer's layout manager makes the Red, Yellow and Green slice views (and their
        # vtkMRMLSliceCompositeNode<Color> singletons) at startup; the headless renderer makes them here
        renderer = self.backend._headless_renderer()
        self._slice_views = {color: renderer.slice_view(kind) for color, kind in _SLICE_DEFAULT_VIEW.items()}
        # the last PNG each view's blend produced: slice() hands it out again when the view shows nothing
        self._last_slice_png: dict[str, bytes] = {}

    async def close(self) -> None:
        await self.backend.close()

    # -- routing -----------------------------------------------------------------------------------
    def handle(self, method: str, request: str, q: Query, body: bytes) -> tuple[bytes, bytes]:
        routes: list[tuple[str, Callable[[], tuple[bytes, bytes]]]] = [
            ("/system", lambda: self.system(method, request)),
            ("/gui", lambda: self.gui(q)),
            (
                "/screenshot",
                lambda: self._png(self.run(self.backend.capture_screenshot("full", None, None, None))),
            ),
            ("/slice", lambda: self.slice(q)),
            ("/threeD", lambda: self.three_d(q)),
            ("/mrml", lambda: self.mrml(method, request, q)),
            ("/sampledata", lambda: self.sampledata(q)),
            ("/volumes", self.volumes),
            ("/volume", lambda: self.volume(q, body)),
        ]
        if self.enable_exec:
            routes.insert(0, ("/exec", lambda: self.exec(q, body)))
        for prefix, handler in routes:
            if request.startswith(prefix):
                return handler()
        raise RuntimeError(f'unknown command "{request.encode()!r}"')

    @staticmethod
    def _json(value: Any) -> tuple[bytes, bytes]:
        return b"application/json", json.dumps(value).encode()

    @staticmethod
    def _png(shot: Any) -> tuple[bytes, bytes]:
        return b"image/png", shot.png

    # -- nodes -------------------------------------------------------------------------------------
    def _filtered(self, q: Query) -> list[Any]:
        if "id" in q:
            node = self.scene.GetNodeByID(_first(q, "id"))
            return [node] if node is not None else []
        collection = self.scene.GetNodesByClass(_first(q, "class") or "vtkMRMLNode")
        nodes = [collection.GetItemAsObject(i) for i in range(collection.GetNumberOfItems())]
        if "name" in q:
            nodes = [n for n in nodes if n.GetName() == _first(q, "name")]
        return nodes

    def _get_node(self, pattern: str) -> Any:
        """slicer.util.getNode (Base/Python/slicer/util.py, getNode and getNodes): every node whose name
        or id matches the shell-style pattern, kept in a dict keyed by *name* (a later node with the
        same name replaces the earlier one in place), then the first entry; none raises."""
        matches: dict[str, Any] = {}
        for i in range(self.scene.GetNumberOfNodes()):
            n = self.scene.GetNthNode(i)
            name, node_id = n.GetName(), n.GetID()
            if fnmatch.fnmatchcase(name, pattern) or fnmatch.fnmatchcase(node_id, pattern):
                matches[name] = n
        if not matches:
            raise RuntimeError(f"could not find nodes in the scene by name or id '{pattern}'")
        return next(iter(matches.values()))

    def _show(self, node: Any) -> None:
        """What Slicer does after loading a volume (qSlicerVolumesReader::load, SlicerRequestHandler.postNRRD,
        SampleData): make it the active (label) volume and propagate it to every slice view."""
        for view in self._slice_views.values():
            composite = view.logic.GetSliceCompositeNode()
            if node.IsA("vtkMRMLLabelMapVolumeNode"):
                composite.SetLabelVolumeID(node.GetID())
            elif node.IsA("vtkMRMLScalarVolumeNode"):
                composite.SetBackgroundVolumeID(node.GetID())

    def mrml(self, method: str, request: str, q: Query) -> tuple[bytes, bytes]:
        path = urlsplit(request).path
        if method == "GET":
            nodes = self._filtered(q)
            if path in ("/mrml", "/mrml/names"):
                return self._json([n.GetName() for n in nodes])
            if path == "/mrml/ids":
                return self._json([n.GetID() for n in nodes])
            if path == "/mrml/properties":
                if not nodes:
                    raise RuntimeError("No nodes matched the filter criteria")
                return self._json({n.GetID(): node_properties(n) for n in nodes})
            raise RuntimeError(f"Invalid path: {path}")
        if method == "POST":
            return self._load(q)
        if method == "DELETE":
            if any(k in q for k in ("class", "name", "id")):
                nodes = self._filtered(q)
                if not nodes:
                    raise RuntimeError("No nodes matched the filter criteria")
                for node in nodes:
                    self.scene.RemoveNode(node)
            else:
                self.run(self.backend.clear_scene())
            return b"application/json", b'{"success": true}'
        raise RuntimeError(f"unsupported method {method}")

    def _load(self, q: Query) -> tuple[bytes, bytes]:
        properties = {k: v[0].strip() for k, v in q.items() if k not in ("url", "localfile")}
        if "url" in q:
            local = url2pathname(urlsplit(_first(q, "url") or "").path)
        elif "localfile" in q:
            local = _first(q, "localfile") or ""
        else:
            raise RuntimeError("Required `url` or `localfile` query parameter is missing in `mrml` request")
        file_type = properties["filetype"]
        if file_type not in ("VolumeFile", "SegmentationFile"):
            raise RuntimeError(f"Failed to load node from file: {local}")
        labelmap = properties.get("labelmap", "").lower() in ("true", "1")
        try:
            loaded = self.run(self.backend.load_volume(Path(local), labelmap, properties.get("name")))
        except Exception as exc:
            raise RuntimeError(f"Failed to load node from file: {local}") from exc
        if properties.get("show", "true").lower() not in ("false", "0"):
            for summary in loaded.nodes:
                self._show(self.scene.GetNodeByID(summary.id))
        return self._json({"success": True, "loadedNodeIDs": [n.id for n in loaded.nodes]})

    # -- views -------------------------------------------------------------------------------------
    def slice(self, q: Query) -> tuple[bytes, bytes]:
        """SlicerRequestHandler.slice: the PNG of the view's slice blend.

        With no volume in any layer of the view, Slicer's blend yields no new image: a view that
        was drawn before (e.g. before DELETE /slicer/mrml) returns its last PNG byte for byte,
        and one never drawn makes vtkImageDataToPNG hand None to vtk_to_numpy, which fails
        with `'NoneType' object has no attribute 'GetDataType'` (a 500 "Server error: ...").
        """
        view = (_first(q, "view") or "red").lower()
        if view not in _SLICE_DEFAULT_VIEW:
            view = "red"
        composite = self._slice_views[view].logic.GetSliceCompositeNode()
        layers = (
            composite.GetBackgroundVolumeID(),
            composite.GetForegroundVolumeID(),
            composite.GetLabelVolumeID(),
        )
        if not any(self.scene.GetNodeByID(i) is not None for i in layers if i):
            if view in self._last_slice_png:
                return b"image/png", self._last_slice_png[view]
            raise AttributeError("'NoneType' object has no attribute 'GetDataType'")
        orientation = (_first(q, "orientation") or "").lower()
        view_type = (
            orientation if orientation in ("axial", "sagittal", "coronal") else _SLICE_DEFAULT_VIEW[view]
        )
        scroll_to = _float(q, "scrollTo")
        shot = self.run(self.backend.capture_screenshot(view_type, scroll_to or None, None, None))
        self._last_slice_png[view] = shot.png
        return self._png(shot)

    def three_d(self, q: Query) -> tuple[bytes, bytes]:
        axis = (_first(q, "lookFromAxis") or "").lower()
        look = _AXES.get(axis[:1]) if axis else None
        return self._png(self.run(self.backend.capture_screenshot("3d", None, look, None)))

    def gui(self, q: Query) -> tuple[bytes, bytes]:
        import slicer

        contents = (_first(q, "contents") or "").lower() or None
        if contents not in (None, "viewers", "full"):
            raise RuntimeError("contents must be 'viewers' or 'full'")
        layout = _first(q, "viewersLayout")
        if layout is not None:
            for attr in dir(slicer.vtkMRMLLayoutNode):
                if (
                    attr.startswith("SlicerLayout")
                    and attr.endswith("View")
                    and attr[12:-4].lower() == layout.lower()
                ):
                    self.backend.app.layout_node.SetViewArrangement(getattr(slicer.vtkMRMLLayoutNode, attr))
                    break
            else:
                raise RuntimeError("Unknown layout name: " + layout)
        return b"application/json", b'{"success": true}'

    # -- system, data ------------------------------------------------------------------------------
    def system(self, method: str, request: str) -> tuple[bytes, bytes]:
        if method == "DELETE":
            return b"application/json", b'{"success": true}'
        if urlsplit(request).path == "/system/version":
            version = slicer_core_version() or "0.0.0"
            major, minor = (version.split(".") + ["0", "0"])[:2]
            return self._json(
                {
                    "applicationName": "Slicer",
                    "applicationDisplayName": "3D Slicer (test WebServer peer)",
                    "applicationVersion": version,
                    "releaseType": "Experimental",
                    "majorVersion": int(major),
                    "minorVersion": int(minor),
                    "os": "linux",
                    "arch": "amd64",
                }
            )
        return b"text/plain", b""

    def sampledata(self, q: Query) -> tuple[bytes, bytes]:
        name = _first(q, "name")
        if not name:
            raise RuntimeError("sampledata name was not specified")
        cache = SampleDataCache(self.config.sample_data)
        try:
            cache.spec(name)
        except Exception as exc:
            raise RuntimeError(f"sampledata {name} was not found") from exc

        async def fetch_local() -> Path:
            return cache.ensure(name)

        loaded = self.run(self.backend.load_sample_data(name, fetch_local))
        for summary in loaded.nodes:  # SampleData shows what it loads
            self._show(self.scene.GetNodeByID(summary.id))
        return b"text/plain", f"Sample data {name} loaded".encode()

    def volumes(self) -> tuple[bytes, bytes]:
        out = []
        for cls in ("vtkMRMLScalarVolumeNode", "vtkMRMLLabelMapVolumeNode"):
            collection = self.scene.GetNodesByClass(cls)
            for i in range(collection.GetNumberOfItems()):
                node = collection.GetItemAsObject(i)
                if node.GetClassName() == cls:
                    out.append({"name": node.GetName(), "id": node.GetID()})
        return self._json(out)

    def volume(self, q: Query, body: bytes) -> tuple[bytes, bytes]:
        volume_id = _first(q, "id") or "vtkMRMLScalarVolumeNode*"
        if body:
            return self._post_nrrd(volume_id, body)
        return self._get_nrrd(volume_id)

    def _get_nrrd(self, volume_id: str) -> tuple[bytes, bytes]:
        from vtk.util import numpy_support

        node = self._get_node(volume_id)  # getNRRD: slicer.util.getNode raises when nothing matches
        if node.GetClassName() not in ("vtkMRMLScalarVolumeNode", "vtkMRMLLabelMapVolumeNode"):
            return b"text/plain", b""
        image = node.GetImageData()
        dims = image.GetDimensions()
        array = numpy_support.vtk_to_numpy(image.GetPointData().GetScalars()).reshape(
            dims[2], dims[1], dims[0]
        )
        scalar_type = image.GetScalarTypeAsString()
        if scalar_type not in ("short", "double"):
            array, scalar_type = array.astype("int16"), "short"
        import vtk

        m = vtk.vtkMatrix4x4()
        node.GetIJKToRASMatrix(m)
        flip = (-1, -1, 1)
        origin = [m.GetElement(r, 3) * flip[r] for r in range(3)]
        directions = " ".join(
            "(" + ",".join(str(m.GetElement(r, c) * flip[r]) for r in range(3)) + ")" for c in range(3)
        )
        header = (
            "NRRD0004\n# Complete NRRD file format specification at:\n# http://teem.sourceforge.net/nrrd/format.html\n"
            f"type: {scalar_type}\ndimension: 3\nspace: left-posterior-superior\n"
            f"sizes: {dims[0]} {dims[1]} {dims[2]}\nspace directions: {directions}\n"
            "kinds: domain domain domain\nendian: little\nencoding: raw\n"
            f"space origin: ({','.join(map(str, origin))})\n\n"
        )
        return b"application/octet-stream", header.encode() + np.ascontiguousarray(array).tobytes()

    def _post_nrrd(self, volume_id: str, body: bytes) -> tuple[bytes, bytes]:
        if body[:4] != b"NRRD":
            raise RuntimeError(f"Cannot load non-nrrd file (magic is {body[:4]!r})")
        end = body.find(b"\n\n")
        fields: dict[bytes, bytes] = {}
        for line in body[:end].split(b"\n"):
            colon = line.find(b":")
            if colon != -1:
                fields[line[:colon]] = line[colon + 2 :]
        if fields[b"type"] not in _SHORT_TYPES:
            raise RuntimeError("Can only read short volumes")
        if fields[b"dimension"] != b"3":
            raise RuntimeError("Can only read 3D, 1 component volumes")
        if fields[b"endian"] != b"little":
            raise RuntimeError("Can only read little endian")
        if fields[b"encoding"] != b"raw":
            raise RuntimeError("Can only read raw encoding")
        if fields[b"space"] != b"left-posterior-superior":
            raise RuntimeError("Can only read space in LPS")
        sizes = [int(v) for v in fields[b"sizes"].split(b" ")]
        origin = [float(v) for v in fields[b"space origin"].replace(b"(", b"").replace(b")", b"").split(b",")]
        directions = [
            [float(v) for v in part.replace(b"(", b"").split(b",")]
            for part in fields[b"space directions"].split(b")")[:3]
        ]
        ijk_to_ras = np.eye(4)
        for row in range(3):
            ijk_to_ras[row, 3] = origin[row] * (-1 if row < 2 else 1)
            for col in range(3):
                ijk_to_ras[row, col] = directions[col][row] * (-1 if row < 2 else 1)
        voxels = np.frombuffer(body[end + 2 :], dtype="<i2").reshape(sizes[2], sizes[1], sizes[0])
        try:
            existing = self._get_node(volume_id)
        except RuntimeError:  # postNRRD catches MRMLNodeNotFoundException and makes a new node
            existing = None
        if existing is None:
            added = self.run(
                self.backend.add_volume(
                    VolumeArray(array=voxels.copy(), ijk_to_ras=ijk_to_ras, name=volume_id)
                )
            )
            node = self.scene.GetNodeByID(added.id)
        else:
            node = existing
            self._overwrite(node, voxels, ijk_to_ras)
        self._show(node)  # postNRRD: SetReferenceActiveVolumeID + Propagate
        return b"application/json", b"{'status': 'success'}"

    @staticmethod
    def _overwrite(node: Any, voxels: np.ndarray, ijk_to_ras: np.ndarray) -> None:
        """postNRRD on a node getNode found (SlicerRequestHandler.py at 583e9b3, lines 415-430): the same
        node, id kept, gets new image data and IJK->RAS (node.SetAndObserveImageData(imageData),
        node.SetIJKToRASMatrix(ijkToRAS), the voxels copied in); a node without image data (not a
        volume) fails on the first call, a 500 as in Slicer."""
        import vtk
        from vtk.util import numpy_support

        image = vtk.vtkImageData()
        image.SetDimensions(voxels.shape[2], voxels.shape[1], voxels.shape[0])
        image.AllocateScalars(vtk.VTK_SHORT, 1)
        node.SetAndObserveImageData(image)
        matrix = vtk.vtkMatrix4x4()
        for row in range(4):
            for col in range(4):
                matrix.SetElement(row, col, float(ijk_to_ras[row, col]))
        node.SetIJKToRASMatrix(matrix)
        numpy_support.vtk_to_numpy(image.GetPointData().GetScalars())[:] = voxels.ravel()
        image.GetPointData().GetScalars().Modified()

    def exec(self, q: Query, body: bytes) -> tuple[bytes, bytes]:
        if body:
            source: str | bytes = body
        elif "source" in q:
            source = q["source"][0]
        else:
            return b"text/plain", b""
        exec("__execResult = {}", self.exec_globals)
        exec(source, self.exec_globals)
        return self._json(eval("__execResult", self.exec_globals))
