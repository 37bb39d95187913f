"""Scene tools: look at, measure and change the MRML scene through the active SceneBackend."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Annotated

from mcp.server.mcpserver import Context, MCPServer
from mcp_types import CallToolResult, ImageContent, TextContent
from pydantic import Field

from ..core.errors import InvalidParameter
from ..core.localhost import absolute_user_path
from ..core.models import (
    ClearResult,
    GuiMode,
    LayoutName,
    LayoutResult,
    LoadedNodes,
    LookFromAxis,
    NodeDetails,
    NodeList,
    PythonResult,
    SampleDataList,
    ScreenshotInfo,
    ViewType,
    VolumeMeasurement,
)
from ..core.render_queue import RenderQueue
from ..core.services import Services, services_of
from ..scene.image_fit import fit_image
from ..scene.sampledata import SAMPLES, SampleDataCache
from .annotations import ADDS, ADDS_FROM_REMOTE, READS, REMOVES, RUNS_CODE, SETS
from .client_log import client_log
from .clients import PythonNamespaces, client_label
from .confirm import asks_person
from .running import run_blocking

VOLUME_SUFFIXES = (".nrrd", ".nhdr", ".nii", ".nii.gz", ".mha", ".mhd")

NodeId = Annotated[
    str, Field(min_length=1, max_length=256, description="MRML node ID, e.g. vtkMRMLScalarVolumeNode1")
]


PythonPerson = asks_person("execute_python", lambda services, code: _shown_code(services, code))


def sample_cache(services: Services) -> SampleDataCache:
    return services.domain(SampleDataCache, lambda config: SampleDataCache(config.sample_data))


async def list_scene_nodes(
    ctx: Context,
    class_name: Annotated[
        str | None,
        Field(description="only nodes of this MRML class or a subclass, e.g. vtkMRMLScalarVolumeNode"),
    ] = None,
    name: Annotated[
        str | None, Field(description="only nodes whose name contains this text (case-insensitive)")
    ] = None,
    offset: Annotated[int, Field(ge=0, description="skip this many matching nodes (paging)")] = 0,
    limit: Annotated[int, Field(ge=1, le=1000, description="at most this many nodes")] = 100,
) -> NodeList:
    """List the nodes in the scene with id, name, class and visibility; volumes add dimensions,
    spacing, origin and scalar range, segmentations their segments. Use has_more/offset to page."""
    return await services_of(ctx).backend.list_nodes(class_name, name, offset, limit)


async def get_node(ctx: Context, node_id: NodeId) -> NodeDetails:
    """All properties of one node: geometry, attributes, display settings, references, storage file."""
    return await services_of(ctx).backend.get_node(node_id)


async def capture_screenshot(
    ctx: Context,
    view_type: Annotated[
        ViewType,
        Field(description="axial (red), sagittal (yellow), coronal (green), 3d, or full (the whole layout)"),
    ] = "axial",
    scroll_position: Annotated[
        float | None,
        Field(
            ge=0.0, le=1.0, description="slice views: 0..1 through the volume's extent along the view normal"
        ),
    ] = None,
    look_from_axis: Annotated[
        LookFromAxis | None, Field(description="3d view: look at the scene from this side")
    ] = None,
    size: Annotated[int | None, Field(ge=64, le=2048, description="image width and height in pixels")] = None,
) -> Annotated[CallToolResult, ScreenshotInfo]:
    """Take a picture of a view as it is rendered (window/level, segmentation overlays, 3D).
    Returns the image (PNG; JPEG, maybe scaled down, when a PNG would not fit in one message: notes
    say so) and its metadata (view, size, slice offset in mm). Renders run one at a time; a client
    with 2 already queued gets BUSY at once: wait for them, then capture again."""
    services = services_of(ctx)
    queue = services.domain(RenderQueue, lambda config: RenderQueue(config.rendering.queue_per_client))
    async with queue.turn(client_label(ctx)):
        shot = await services.backend.capture_screenshot(view_type, scroll_position, look_from_axis, size)
    limit = services.config.rendering.max_image_bytes
    if len(shot.png) <= limit:  # the usual case: the PNG as it is, no trip to a worker thread
        fitted = fit_image(shot.png, limit)
    else:
        fitted = await run_blocking(ctx, lambda _: fit_image(shot.png, limit))
    info = shot.info
    if fitted.mime_type != "image/png":
        info = info.model_copy(
            update={
                "width": fitted.width,
                "height": fitted.height,
                "image_format": "jpeg",
                "notes": [*info.notes, *fitted.notes],
            }
        )
    return CallToolResult(
        content=[
            ImageContent(
                type="image", data=base64.b64encode(fitted.data).decode("ascii"), mime_type=fitted.mime_type
            ),
            TextContent(type="text", text=info.model_dump_json()),
        ],
        structured_content=info.model_dump(mode="json"),
    )


async def measure_volume(
    ctx: Context,
    node_id: NodeId,
    segment: Annotated[
        str | None,
        Field(description="segment name or ID (segmentation) or label value (labelmap); all when omitted"),
    ] = None,
    segment_name: Annotated[
        str | None, Field(description="the same as segment (its name in the MCP Slicer Bridge spec)")
    ] = None,
) -> VolumeMeasurement:
    """Volume of segments of a segmentation node, or of labels of a labelmap volume, in mm³ and mL
    with voxel counts."""
    chosen = _one_of("segment", segment, "segment_name", segment_name)
    return await services_of(ctx).backend.measure_volume(node_id, chosen)


def _one_of(name: str, value: str | None, alias: str, alias_value: str | None) -> str | None:
    """A parameter that another spec names differently: either name, not two different values."""
    if value is not None and alias_value is not None and value != alias_value:
        raise InvalidParameter(
            f"give {name} or {alias} (the same parameter), not two different values",
            details={name: value, alias: alias_value},
        )
    return value if value is not None else alias_value


async def list_sample_data(ctx: Context) -> SampleDataList:
    """The sample data sets load_sample_data can load, and whether each is already cached."""
    return sample_cache(services_of(ctx)).list_samples()


async def load_sample_data(
    ctx: Context,
    name: Annotated[str | None, Field(description=f"one of: {', '.join(SAMPLES)}")] = None,
    dataset_name: Annotated[
        str | None, Field(description="the same as name (its name in the MCP Slicer Bridge spec)")
    ] = None,
) -> LoadedNodes:
    """Download (checksum-verified, cached) and load one of Slicer's sample data sets into the scene."""
    name = _one_of("name", name, "dataset_name", dataset_name)
    if name is None:
        raise InvalidParameter(
            f"name is required: one of {', '.join(SAMPLES)}", details={"parameter": "name"}
        )
    services = services_of(ctx)
    cache = sample_cache(services)
    cache.spec(name)  # unknown names fail before anything is touched

    async def fetch_local() -> Path:
        return await run_blocking(ctx, lambda progress: cache.ensure(name, progress), f"downloading {name}")

    await client_log(ctx, "info", f"loading sample data {name}")
    loaded = await services.backend.load_sample_data(name, fetch_local)
    await client_log(ctx, "info", f"sample data {name} loaded: {len(loaded.nodes)} node(s)")
    return loaded


async def load_volume(
    ctx: Context,
    path: Annotated[
        str, Field(min_length=1, description="absolute path of a .nrrd, .nii(.gz) or .mha/.mhd file")
    ],
    labelmap: Annotated[
        bool, Field(description="load as a labelmap (integer labels) instead of a scalar volume")
    ] = False,
    name: Annotated[
        str | None, Field(max_length=256, description="node name (default: from the file name)")
    ] = None,
) -> LoadedNodes:
    """Load a volume file into the scene. A *.seg.nrrd file loads as a segmentation."""
    file = absolute_user_path(path)
    if not file.is_file():
        raise InvalidParameter(f"no such file: {file}", details={"path": str(file)})
    if not file.name.lower().endswith(VOLUME_SUFFIXES):
        raise InvalidParameter(
            f"unsupported file type {file.name!r}; use one of {', '.join(VOLUME_SUFFIXES)}",
            details={"path": str(file)},
        )
    await client_log(ctx, "debug", "loading a volume file", path=str(file))  # a file name may hold PHI
    return await services_of(ctx).backend.load_volume(file, labelmap, name)


async def set_layout(
    ctx: Context,
    layout: Annotated[LayoutName, Field(description="view layout, e.g. FourUp, OneUp3D, OneUpRedSlice")],
    gui_mode: Annotated[
        GuiMode | None, Field(description="full: the whole application; viewers: only the view layout")
    ] = None,
) -> LayoutResult:
    """Change the view layout (and optionally hide the application chrome). Headless, it reports
    what it could not do."""
    return await services_of(ctx).backend.set_layout(layout, gui_mode)


def _shown_code(services: Services, code: str) -> str:
    return f"Run this Python code inside Slicer ({services.backend.kind} scene):\n\n{code}"


async def execute_python(
    ctx: Context,
    code: Annotated[
        str, Field(min_length=1, max_length=200_000, description="Python source to run in Slicer")
    ],
    namespace: Annotated[
        str | None,
        Field(
            max_length=64,
            description="run in this namespace: the 'namespace' an earlier execute_python call returned",
        ),
    ] = None,
    person: PythonPerson = None,
) -> PythonResult:
    """Run Python inside Slicer. Returns stdout, stderr, the value of the last expression, the
    traceback on error, and the `namespace` it ran in: variables stay there for this client's
    session or connection; pass `namespace` back to reach them from a request without a session.
    Names left bound to nodes removed from the scene are dropped after the call (they would keep the
    node's voxels alive). Off unless allow.execute_python is true."""
    services = services_of(ctx)
    services.require_allowed("execute_python", "execute_python", person)
    chosen = services.domain(PythonNamespaces, lambda _: PythonNamespaces()).choose(ctx, namespace)
    result = await services.backend.execute_python(code, chosen.key, services.config.timeouts.python_s)
    notes = list(result.notes)
    if chosen.new and not chosen.lasting:
        notes.append(
            "this request has no MCP session, so a new namespace was made for it: pass "
            f"namespace={chosen.key!r} to the next execute_python call to keep these variables"
        )
    return result.model_copy(update={"namespace": chosen.key, "notes": notes})


async def clear_scene(ctx: Context) -> ClearResult:
    """Remove every data node from the scene (volumes, segmentations, models...). Cannot be undone."""
    return await services_of(ctx).backend.clear_scene()


def register(server: MCPServer) -> None:
    server.add_tool(list_scene_nodes, title="List scene nodes", annotations=READS)
    server.add_tool(get_node, title="Get node", annotations=READS)
    server.add_tool(capture_screenshot, title="Capture screenshot", annotations=READS)
    server.add_tool(measure_volume, title="Measure volume", annotations=READS)
    server.add_tool(list_sample_data, title="List sample data", annotations=READS)
    server.add_tool(
        load_sample_data,
        title="Load sample data",
        annotations=ADDS_FROM_REMOTE,
    )
    server.add_tool(load_volume, title="Load volume file", annotations=ADDS)
    server.add_tool(
        set_layout,
        title="Set layout",
        annotations=SETS,
    )
    server.add_tool(
        execute_python,
        title="Execute Python in Slicer",
        annotations=RUNS_CODE,
    )
    server.add_tool(
        clear_scene,
        title="Clear scene",
        annotations=REMOVES,
    )
