"""`WebServerBackend`: the scene tools over Slicer's own WebServer module (port 2016 by default).

Used by the `slicer-mcp` bridge when the SlicerMCP module isn't running in Slicer. Node
listing and properties come from `/slicer/mrml/properties` (parsed from each node's VTK
PrintSelf text by Slicer, which rounds numbers to 6 digits, converts text that looks like a
number or true/false and drops lines it can't convert), so names come from
`/slicer/mrml/names`, exact geometry from `/slicer/exec` or the NRRD header of
`/slicer/volume`, and attributes only from `/slicer/exec`; pictures from `/slicer/slice`, `/slicer/threeD` and
`/slicer/screenshot`, volumes from `/slicer/volume` (16-bit NRRD in LPS), loading from
`POST /slicer/mrml`, sample data from `/slicer/sampledata`, layout from `/slicer/gui`.
Measuring and Python run through `/slicer/exec`, which works only when "Slicer API exec"
is enabled in Slicer's Web Server module. HTTP details live in `webserver_http`; scene change
notes come from polling (`webserver_watch`) while a client subscribes.
"""

from __future__ import annotations

import functools
import inspect
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio.to_thread
import numpy as np

from ..core.breaker import CircuitBreaker
from ..core.config import Config
from ..core.errors import (
    CircuitOpen,
    ErrorCode,
    InvalidNodeId,
    NotSupported,
    PythonExecutionError,
    ScreenshotFailed,
    SlicerConnectionError,
    SlicerMCPError,
    SlicerTimeout,
)
from ..core.models import (
    ClearResult,
    GuiMode,
    LayoutResult,
    LoadedNodes,
    LookFromAxis,
    NodeDetails,
    NodeList,
    NodeSummary,
    PythonResult,
    SceneStatus,
    ScreenshotInfo,
    ViewType,
    VolumeMeasurement,
)
from ..core.scene_backend import SceneBackend, SceneChanges, Screenshot, VolumeArray
from ..scene.nodes import APPLICATION_CLASSES, printed_properties
from . import webserver_exec, webserver_http, webserver_nrrd
from .webserver_http import Response, WebServerHttp
from .webserver_props import (
    ALTERED_PROPERTIES,
    GEOMETRY_PRINTED,
    LAYERS,
    NO_EXEC_NOTE,
    NRRD_CLASSES,
    UNLISTED_PROPERTIES,
    exact_segments,
    is_listed,
    node_summary,
    unique_name,
    vec3,
)

SLICE_VIEWS = {"axial": ("red", "Axial"), "sagittal": ("yellow", "Sagittal"), "coronal": ("green", "Coronal")}
NO_MATCH = "No nodes matched"
GEOMETRY_CACHE_SIZE = 4096
EXEC_RECHECK_S = 30.0  # after "exec is off", ask again only after this long (the user may turn it on)


class WebServerBackend(SceneBackend):
    kind = "webserver"

    def __init__(self, config: Config, url: str | None = None, http: WebServerHttp | None = None):
        self.config = config
        self.http = http or WebServerHttp(url or config.webserver_url, breaker=config.breaker)
        self._timeouts = config.timeouts
        self._exec_off_since: float | None = None  # when Slicer last said exec is off
        # exact (spacing, origin) by (node id, node MTime): a node's MTime changes with its geometry
        self._geometry: dict[tuple[str, Any], tuple[Any, Any]] = {}
        self._watcher: Any = None  # webserver_watch.WebServerWatcher, made on first use

    # -- plumbing ----------------------------------------------------------------------------------
    async def _get(
        self, path: str, params: dict[str, Any] | None = None, timeout: float | None = None
    ) -> Response:
        t = timeout or self._timeouts.scene_s
        return await anyio.to_thread.run_sync(lambda: self.http.get(path, params, timeout=t))

    async def _change(
        self, method: str, path: str, params: dict[str, Any] | None, body: bytes | None, timeout: float
    ) -> Response:
        return await anyio.to_thread.run_sync(
            lambda: self.http.request(method, path, params, body, timeout=timeout, changes_state=True)
        )

    async def _properties(self, **query: str) -> dict[str, dict[str, Any]]:
        """Properties of the nodes matching `query` (id, class, name); empty when none match."""
        try:
            response = await self._get(webserver_http.MRML_PROPERTIES, query)
        except SlicerMCPError as exc:
            if NO_MATCH in str(exc.details.get("slicer_message", "")):
                return {}
            raise
        data = response.json(webserver_http.MRML_PROPERTIES) if response.status == 200 else {}
        if not isinstance(data, dict):
            raise SlicerMCPError(
                "Slicer's WebServer answered /slicer/mrml/properties with something other than an object",
                code=ErrorCode.SLICER_WEBSERVER_ERROR,
            )
        return data

    async def _node_properties(self, node_id: str) -> dict[str, Any]:
        found = await self._properties(id=node_id)
        if node_id not in found:
            raise InvalidNodeId(
                f"no node with id {node_id!r} in the scene; call list_scene_nodes to see the node ids",
                details={"node_id": node_id},
            )
        return found[node_id]

    async def _ids(self, **query: str) -> list[str]:
        response = await self._get(webserver_http.MRML_IDS, query)
        data = response.json(webserver_http.MRML_IDS) if response.status == 200 else []
        return [str(i) for i in data] if isinstance(data, list) else []

    async def _names(self, **query: str) -> dict[str, str]:
        """Node id -> name as in the scene. /mrml/ids and /mrml/names list the same nodes in the same
        order (getNodesFilteredByQuery) and names come back untouched, unlike /mrml/properties."""
        for _ in range(3):
            ids = await self._ids(**query)
            response = await self._get(webserver_http.MRML_NAMES, query)
            names = response.json(webserver_http.MRML_NAMES) if response.status == 200 else []
            if isinstance(names, list) and len(names) == len(ids):
                return {i: "" if n is None else str(n) for i, n in zip(ids, names, strict=True)}
        raise SlicerMCPError(
            "the scene kept changing while it was listed through Slicer's WebServer; try again",
            code=ErrorCode.SLICER_WEBSERVER_ERROR,
        )

    async def _application_ids(self) -> set[str]:
        """Ids of the nodes the headless backend hides too (scene.nodes.APPLICATION_CLASSES): /mrml/ids?class=
        uses GetNodesByClass, which matches subclasses as IsA does."""
        found: set[str] = set()
        for class_name in APPLICATION_CLASSES:
            found.update(await self._ids(**{"class": class_name}))
        return found

    async def _exec_if_enabled(self, source: str, timeout: float) -> Any | None:
        """The result of read-only code run by /slicer/exec, or None while "Slicer API exec" is off."""
        if self._exec_off_since is not None and time.monotonic() - self._exec_off_since < EXEC_RECHECK_S:
            return None
        try:
            result = await self._exec(source, timeout)
        except SlicerMCPError as exc:
            if exc.code != ErrorCode.OPERATION_DISABLED:
                raise
            self._exec_off_since = time.monotonic()
            return None
        self._exec_off_since = None
        return result

    async def _exact_volumes(
        self, summaries: list[NodeSummary], props: dict[str, dict[str, Any]]
    ) -> list[str]:
        """Put exact spacing and origin into the volume summaries (the printout has 6 digits): from
        /slicer/exec when enabled, else the NRRD header of /slicer/volume (Slicer then builds the whole
        volume's bytes, so results are kept per node id and MTime, which VTK never reuses). Returns what
        stayed rounded."""
        volumes = []
        for summary in (s for s in summaries if s.volume is not None):
            known = self._geometry.get((summary.id, props.get(summary.id, {}).get("MTime")))
            if known is None:
                volumes.append(summary)
            else:
                summary.volume.spacing, summary.volume.origin = known  # type: ignore[union-attr]
        segmented = [
            s for s in summaries if s.segments is not None or s.class_name.endswith("SegmentationNode")
        ]
        if not volumes and not segmented:
            return []
        exact = await self._exec_if_enabled(
            webserver_exec.details_source([s.id for s in volumes + segmented], False), self._timeouts.scene_s
        )
        for summary in segmented:  # segment names and colours: exact only through exec
            exact_segments(summary, exact.get(summary.id) if isinstance(exact, dict) else None)
        notes = []
        for summary in volumes:
            assert summary.volume is not None
            found = exact.get(summary.id) if isinstance(exact, dict) else None
            if isinstance(found, dict) and isinstance(found.get("volume"), dict):
                summary.volume.spacing = vec3(found["volume"]["spacing"]) or summary.volume.spacing
                summary.volume.origin = vec3(found["volume"]["origin"]) or summary.volume.origin
            else:
                ijk_to_ras = (
                    await anyio.to_thread.run_sync(
                        webserver_nrrd.read_ijk_to_ras, self.http, summary.id, self._timeouts.load_s
                    )
                    if summary.class_name in NRRD_CLASSES
                    else None
                )
                if ijk_to_ras is None:
                    notes.append(
                        f"{summary.id}: spacing and origin as Slicer's WebServer printed them "
                        "(6 significant digits)"
                    )
                    continue
                # axis-aligned columns give the spacing exactly (sqrt(x*x) == |x| in IEEE doubles)
                summary.volume.spacing = vec3([float(np.linalg.norm(ijk_to_ras[:3, a])) for a in range(3)])
                summary.volume.origin = vec3([float(v) for v in ijk_to_ras[:3, 3]])
            mtime = props.get(summary.id, {}).get("MTime")
            if isinstance(mtime, int):
                if len(self._geometry) >= GEOMETRY_CACHE_SIZE:
                    self._geometry.clear()
                self._geometry[(summary.id, mtime)] = (summary.volume.spacing, summary.volume.origin)
        return notes

    async def _exec(self, source: str, timeout: float) -> Any:
        response = await self._change("POST", webserver_http.EXEC, None, source.encode("utf-8"), timeout)
        if response.status == 404:
            raise PythonExecutionError("Slicer's WebServer returned no result for the code it ran")
        return response.json(webserver_http.EXEC)

    async def _summaries(self, ids: list[str]) -> list[NodeSummary]:
        out = []
        found: dict[str, dict[str, Any]] = {}
        for node_id in ids:
            props = await self._properties(id=node_id)
            if node_id in props:
                found[node_id] = props[node_id]
                names = await self._names(id=node_id)
                out.append(node_summary(node_id, props[node_id], names.get(node_id)))
        await self._exact_volumes(out, found)
        return out

    # -- SceneBackend ------------------------------------------------------------------------------
    def breakers(self) -> list[CircuitBreaker]:
        """The WebServer's breaker (`slicer://status`)."""
        return [self.http.breaker]

    async def status(self) -> SceneStatus:
        try:
            return await self._status()
        except (SlicerConnectionError, SlicerTimeout, CircuitOpen) as exc:
            return SceneStatus(
                backend=self.kind,
                connection="unreachable",
                error=exc.to_dict()["error"],
                gui=True,
                notes=[f"Slicer's WebServer at {self.http.base_url} is unreachable: {exc.message}"],
            )

    async def _status(self) -> SceneStatus:
        try:
            version = (await self._get(webserver_http.VERSION)).json(webserver_http.VERSION)
        except SlicerMCPError as exc:
            if exc.code != ErrorCode.SLICER_WEBSERVER_ERROR:
                raise
            version = None
        if not (isinstance(version, dict) and isinstance(version.get("applicationVersion"), str)):
            raise SlicerConnectionError(
                f"{self.http.base_url} answered {webserver_http.VERSION} without Slicer's version record: it is "
                "not Slicer's WebServer. Check --webserver-url, or run 'slicer-mcp --headless'.",
                details={"url": self.http.base_url},
            )
        return SceneStatus(
            backend=self.kind,
            slicer_version=version["applicationVersion"],
            node_count=len(await self._ids()),
            volume_count=len(await self._ids(**{"class": "vtkMRMLVolumeNode"})),
            segmentation_count=len(await self._ids(**{"class": "vtkMRMLSegmentationNode"})),
            gui=True,
            notes=[f"through Slicer's WebServer at {self.http.base_url}"],
        )

    async def list_nodes(self, class_name: str | None, name: str | None, offset: int, limit: int) -> NodeList:
        query = {"class": class_name or "vtkMRMLNode"}
        props = await self._properties(**query)
        names = await self._names(**query)
        hidden = set() if class_name else await self._application_ids()
        needle = name.lower() if name else None
        matches = [
            (node_id, p)
            for node_id, p in props.items()
            if (class_name or (is_listed(p) and node_id not in hidden))
            and (needle is None or needle in names.get(node_id, str(p.get("Name", ""))).lower())
        ]
        page = matches[offset : offset + limit]
        nodes = [node_summary(node_id, p, names.get(node_id)) for node_id, p in page]
        await self._exact_volumes(nodes, props)
        return NodeList(
            nodes=nodes,
            total=len(matches),
            offset=offset,
            limit=limit,
            has_more=offset + len(page) < len(matches),
        )

    async def get_node(self, node_id: str) -> NodeDetails:
        props = await self._node_properties(node_id)
        names = await self._names(id=node_id)
        summary = node_summary(node_id, props, names.get(node_id))
        references: dict[str, list[str]] = {}
        refs = props.get("Node references")
        for role, value in refs.items() if isinstance(refs, dict) else []:
            if value is not None and value != "":
                references[str(role).split(" [")[0]] = [str(v) for v in str(value).split()]
        found = await self._exec_if_enabled(
            webserver_exec.details_source([node_id], True), self._timeouts.scene_s
        )
        exact = found.get(node_id) if isinstance(found, dict) else None
        if not isinstance(exact, dict):
            # exec is off: nothing the WebServer altered is reported; the note says what is missing
            notes = await self._exact_volumes([summary], {node_id: props})
            return NodeDetails(
                **summary.model_dump(),
                properties={
                    k: v
                    for k, v in props.items()
                    if k not in UNLISTED_PROPERTIES and k not in ALTERED_PROPERTIES
                },
                references=references,
                notes=[NO_EXEC_NOTE, *notes],
            )
        properties: dict[str, Any] = {
            k: v
            for k, v in printed_properties(str(exact.get("printout", ""))).items()
            if k not in GEOMETRY_PRINTED
        }
        properties["description"] = exact.get("description") or ""
        exact_segments(summary, exact)
        volume = exact.get("volume")
        if summary.volume is not None and isinstance(volume, dict):
            summary.volume.spacing = vec3(volume["spacing"]) or summary.volume.spacing
            summary.volume.origin = vec3(volume["origin"]) or summary.volume.origin
            properties["ijk_to_ras"] = volume["ijk_to_ras"]
        attributes = exact.get("attributes")
        return NodeDetails(
            **summary.model_dump(),
            attributes={str(k): str(v) for k, v in attributes.items()}
            if isinstance(attributes, dict)
            else {},
            properties=properties,
            references=references,
            storage_file=str(exact["storage_file"]) if exact.get("storage_file") else None,
        )

    async def capture_screenshot(
        self,
        view_type: ViewType,
        scroll_position: float | None,
        look_from_axis: LookFromAxis | None,
        size: int | None,
    ) -> Screenshot:
        notes = []
        if size is not None:
            notes.append("Slicer's WebServer ignores size: the image has the view's size on screen")
        timeout = self._timeouts.screenshot_s
        if view_type in SLICE_VIEWS:
            view, orientation = SLICE_VIEWS[view_type]
            # Slicer answers a view without a volume with a 500, or with the view's last picture
            # (stale after a scene clear): ask only when the view's layers hold a volume
            await self._require_slice_content(view_type, view)
            params: dict[str, Any] = {"view": view, "orientation": orientation}
            if scroll_position is not None:
                # the WebServer skips scrollTo=0 (it tests truthiness): nudge 0 to the first slice
                params["scrollTo"] = max(scroll_position, 1e-6)
            try:
                response = await self._get(webserver_http.SLICE, params, timeout)
            except SlicerMCPError as exc:
                if exc.code != ErrorCode.SLICER_WEBSERVER_ERROR:
                    raise
                raise ScreenshotFailed(
                    f"Slicer could not draw the {view_type} view ({exc.details.get('slicer_message')}); "
                    "load a volume first (load_volume or load_sample_data)",
                    details={"view_type": view_type, **exc.details},
                ) from exc
        elif view_type == "3d":
            params = {"lookFromAxis": look_from_axis} if look_from_axis else None
            response = await self._get(webserver_http.THREE_D, params, timeout)
        else:
            response = await self._get(webserver_http.SCREENSHOT, None, timeout)
        if response.status == 404 or not response.body:
            raise ScreenshotFailed(
                f"Slicer's WebServer returned no image for the {view_type} view; the view may be hidden by "
                "the layout (try set_layout FourUp) or show nothing yet (load a volume first)",
                details={"view_type": view_type},
            )
        width, height = webserver_http.png_size(response.body)
        info = ScreenshotInfo(
            view_type=view_type,
            width=width,
            height=height,
            scroll_position=scroll_position if view_type in SLICE_VIEWS else None,
            look_from_axis=look_from_axis if view_type == "3d" else None,
            renderer="webserver",
            notes=notes,
        )
        return Screenshot(png=response.body, info=info)

    async def _require_slice_content(self, view_type: str, view: str) -> None:
        """SCREENSHOT_FAILED unless the view's slice composite node (vtkMRMLSliceCompositeNode<Color>, a
        singleton of Slicer's layout) shows a volume that is in the scene."""
        composite_id = f"vtkMRMLSliceCompositeNode{view.capitalize()}"
        composite = (await self._properties(id=composite_id)).get(composite_id)
        volumes = set(await self._ids(**{"class": "vtkMRMLVolumeNode"}))
        if composite is None:  # no such view node: the scene must at least hold a volume
            shown = volumes
        else:
            shown = {str(composite[k]) for k in LAYERS if isinstance(composite.get(k), str)} & volumes
        if not shown:
            raise ScreenshotFailed(
                f"the {view_type} view shows no volume: load a volume first (load_volume or load_sample_data). "
                "Slicer's WebServer would answer with an error, or with the view's last picture from before "
                "the scene changed.",
                details={"view_type": view_type, "view": view},
            )

    async def measure_volume(self, node_id: str, segment: str | None) -> VolumeMeasurement:
        result = await self._exec(webserver_exec.measure_source(node_id, segment), self._timeouts.python_s)
        return webserver_exec.measurement(result, node_id, segment)

    async def load_volume(self, path: Path, labelmap: bool, name: str | None) -> LoadedNodes:
        segmentation = path.name.lower().endswith(".seg.nrrd")
        params: dict[str, Any] = {
            "localfile": str(path),
            "filetype": "SegmentationFile" if segmentation else "VolumeFile",
            "name": name,
            "labelmap": "true" if labelmap and not segmentation else None,
        }
        try:
            response = await self._change("POST", webserver_http.MRML, params, b"", self._timeouts.load_s)
        except SlicerMCPError as exc:
            if exc.code != ErrorCode.SLICER_WEBSERVER_ERROR:
                raise
            raise SlicerMCPError(
                f"Slicer could not load {path.name}: {exc.details.get('slicer_message')}. The file must be "
                "readable by Slicer on Slicer's machine.",
                code=ErrorCode.LOAD_FAILED,
                details={"path": str(path)},
            ) from exc
        data = response.json(webserver_http.MRML)
        ids = [str(i) for i in data.get("loadedNodeIDs", [])] if isinstance(data, dict) else []
        return LoadedNodes(nodes=await self._summaries(ids), source=str(path))

    async def load_sample_data(self, name: str, fetch_local: Callable[[], Awaitable[Path]]) -> LoadedNodes:
        before = set(await self._ids())
        await self._change("GET", webserver_http.SAMPLEDATA, {"name": name}, None, self._timeouts.load_s)
        new = [i for i in await self._ids() if i not in before]
        hidden = await self._application_ids()
        props = {}
        for node_id in new:
            if node_id not in hidden:
                props.update(await self._properties(id=node_id))
        nodes = await self._summaries([i for i, p in props.items() if is_listed(p)])
        return LoadedNodes(nodes=nodes, source=f"Slicer SampleData {name}")

    async def set_layout(self, layout: str, gui_mode: GuiMode | None) -> LayoutResult:
        # /slicer/gui matches vtkMRMLLayoutNode.SlicerLayout<Name>View names, case-insensitively
        name = layout[: -len("View")] if layout.endswith("View") else layout
        await self._change(
            "GET",
            webserver_http.GUI,
            {"viewersLayout": name, "contents": gui_mode},
            None,
            self._timeouts.scene_s,
        )
        return LayoutResult(layout=layout, gui_mode=gui_mode, applied=True)

    async def execute_python(self, code: str, session_key: str, timeout_s: float) -> PythonResult:
        try:
            result = await self._exec(webserver_exec.run_source(code, session_key), timeout_s)
        except SlicerMCPError as exc:
            if exc.code != ErrorCode.SLICER_WEBSERVER_ERROR:
                raise
            raise PythonExecutionError(
                f"Slicer failed to run the code: {exc.details.get('slicer_message')}", details=exc.details
            ) from exc
        if not isinstance(result, dict):
            raise PythonExecutionError("Slicer returned an unexpected result", details={"result": result})
        return PythonResult(**{k: v for k, v in result.items() if k in PythonResult.model_fields})

    async def clear_scene(self) -> ClearResult:
        before = await self._properties(**{"class": "vtkMRMLNode"})
        hidden = await self._application_ids()
        await self._change("DELETE", webserver_http.MRML, None, None, self._timeouts.scene_s)
        after = set(await self._ids())
        removed = [i for i, p in before.items() if is_listed(p) and i not in hidden and i not in after]
        return ClearResult(removed_nodes=len(removed))

    async def add_volume(self, volume: VolumeArray) -> NodeSummary:
        body = webserver_nrrd.encode(volume.array, volume.ijk_to_ras)
        names = await self._get(webserver_http.MRML_NAMES)
        taken = set(map(str, names.json(webserver_http.MRML_NAMES))) if names.status == 200 else set()
        unique = unique_name(volume.name, taken)
        await self._change("POST", webserver_http.VOLUME, {"id": unique}, body, self._timeouts.load_s)
        ids = await self._ids(name=unique)
        if not ids:
            raise SlicerMCPError(
                f"Slicer's WebServer accepted the volume {unique!r} but it is not in the scene",
                code=ErrorCode.SLICER_WEBSERVER_ERROR,
            )
        node_id = ids[-1]
        if volume.attributes:
            try:
                await self._exec(
                    webserver_exec.attributes_source(node_id, volume.attributes), self._timeouts.scene_s
                )
            except SlicerMCPError as exc:
                if exc.code != ErrorCode.OPERATION_DISABLED:
                    raise
        return (await self._summaries([node_id]))[0]

    async def export_volume(self, node_id: str) -> VolumeArray:
        props = await self._node_properties(node_id)
        if props.get("ClassName") not in ("vtkMRMLScalarVolumeNode", "vtkMRMLLabelMapVolumeNode"):
            raise NotSupported(
                f"node {node_id} is a {props.get('ClassName')}; Slicer's WebServer exports only scalar and "
                "labelmap volumes",
                details={"node_id": node_id},
            )
        try:
            response = await self._get(webserver_http.VOLUME, {"id": node_id}, self._timeouts.load_s)
        except SlicerMCPError as exc:
            if exc.code != ErrorCode.SLICER_WEBSERVER_ERROR:
                raise
            raise NotSupported(
                f"Slicer's WebServer could not export {node_id}: {exc.details.get('slicer_message')}",
                details={"node_id": node_id},
            ) from exc
        array, ijk_to_ras = webserver_nrrd.decode(response.body)
        names = await self._names(id=node_id)
        # attributes (DICOM UIDs) only exactly, through exec; /mrml/properties alters or drops them
        found = await self._exec_if_enabled(
            webserver_exec.details_source([node_id], False), self._timeouts.scene_s
        )
        exact = found.get(node_id) if isinstance(found, dict) else None
        attributes = exact.get("attributes") if isinstance(exact, dict) else None
        return VolumeArray(
            array=np.asarray(array),
            ijk_to_ras=ijk_to_ras,
            name=names.get(node_id, node_id),
            attributes={str(k): str(v) for k, v in attributes.items()}
            if isinstance(attributes, dict)
            else {},
            is_labelmap=props.get("ClassName") == "vtkMRMLLabelMapVolumeNode",
        )

    async def scene_changes(self) -> SceneChanges:
        """Notes from polling the WebServer (webserver_watch), which runs only while a client subscribes."""
        if self._watcher is None:
            from .webserver_watch import WebServerWatcher

            reader = WebServerHttp(
                self.http.base_url, backoff_s=(), connect_timeout_s=self.http.connect_timeout_s
            )
            self._watcher = WebServerWatcher(
                WebServerBackend(self.config, http=reader), self.config.webserver_poll_s
            )
        return self._watcher

    async def close(self) -> None:
        if self._watcher is not None:
            await self._watcher.close()
        self.http.close()

    def describe(self) -> dict[str, Any]:
        return {"backend": self.kind, "webserver_url": self.http.base_url}


def _replies_checked(method: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    """A reply missing what Slicer always sends (a key, a list, a number) is not Slicer's: say so, coded."""

    @functools.wraps(method)
    async def checked(self: WebServerBackend, *args: Any, **kwargs: Any) -> Any:
        try:
            return await method(self, *args, **kwargs)
        except SlicerMCPError:
            raise
        except (KeyError, TypeError, IndexError, AttributeError, ValueError) as exc:
            raise SlicerMCPError(
                f"The reply from {self.http.base_url} is not what Slicer's WebServer sends "
                f"({type(exc).__name__}: {exc}). Is another program listening on that port? Check "
                "--webserver-url, or run 'slicer-mcp --headless' for a scene of its own.",
                code=ErrorCode.SLICER_CONNECTION_ERROR,
                details={"url": self.http.base_url, "operation": method.__name__},
            ) from None

    return checked


for _name, _method in list(vars(WebServerBackend).items()):
    if not _name.startswith("_") and inspect.iscoroutinefunction(_method) and _name != "close":
        setattr(WebServerBackend, _name, _replies_checked(_method))
