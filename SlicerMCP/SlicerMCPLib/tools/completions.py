"""`completion/complete`: values for prompt and resource-template arguments, from the scene and the config.

The protocol completes arguments of prompts (`ref/prompt`) and resource templates
(`ref/resource`) only; tool arguments have no completion request, so a client offers the
enums of their input schemas instead (layout names, presets). Values are chosen by the
argument's name, so a later prompt with a `node_id`, `segment` or `fhir_server` argument
completes with no change here. Node names come from the scene's change notes
(`SceneBackend.scene_changes`), read without a scene call; segment names ask the backend.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable

from mcp.server.mcpserver import MCPServer
from mcp_types import (
    Completion,
    CompletionArgument,
    CompletionContext,
    PromptReference,
    ResourceTemplateReference,
)

from ..core.models import LAYOUT_NAMES
from ..core.scene_backend import NodeName
from ..core.services import Services
from ..scene.sampledata import SAMPLES

MAX_VALUES = 100  # the protocol's cap per answer
MODALITIES = ("CT", "MR", "CR", "DX", "US", "PT", "NM", "MG", "XA", "RF", "SEG", "SR")
VOLUME_CLASSES = ("vtkMRMLScalarVolumeNode", "vtkMRMLLabelMapVolumeNode", "vtkMRMLVectorVolumeNode")

Source = Callable[[Services, str, dict[str, str]], Awaitable[Iterable[str]]]


def ranked(values: Iterable[str], typed: str) -> list[str]:
    """Values that start with what was typed first, then those that contain it; case-insensitive."""
    low = typed.lower()
    starts, contains = [], []
    for value in dict.fromkeys(values):
        v = value.lower()
        if v.startswith(low):
            starts.append(value)
        elif low in v:
            contains.append(value)
    return starts + contains


async def scene_names(services: Services) -> list[NodeName]:
    """Every node's id, name and class: the backend's change notes, else one listing call."""
    changes = await services.backend.scene_changes()
    if changes is not None and changes.live():
        return changes.names()
    listing = await services.backend.list_nodes(None, None, 0, 1000)
    return [NodeName(n.id, n.name, n.class_name) for n in listing.nodes]


async def _node_ids(services: Services, typed: str, _: dict[str, str]) -> list[str]:
    """Node ids whose id or name matches (an assistant types either); data nodes only."""
    low = typed.lower()
    nodes = [n for n in await scene_names(services) if n.data]
    by_id = ranked((n.node_id for n in nodes), typed)
    by_name = [n.node_id for n in nodes if low in n.name.lower()]
    return list(dict.fromkeys(by_id + by_name))


async def _node_names(services: Services, typed: str, _: dict[str, str]) -> list[str]:
    return ranked((n.name for n in await scene_names(services) if n.data and n.name), typed)


async def _volumes(services: Services, typed: str, _: dict[str, str]) -> list[str]:
    """A volume in the scene (id or name) or a sample data set to load."""
    volumes = [n for n in await scene_names(services) if n.class_name in VOLUME_CLASSES]
    return ranked([n.node_id for n in volumes] + [n.name for n in volumes] + list(SAMPLES), typed)


async def _segments(services: Services, typed: str, context: dict[str, str]) -> list[str]:
    """Segment names of the segmentation named in `node_id` (or of every segmentation)."""
    listing = await services.backend.list_nodes("vtkMRMLSegmentationNode", None, 0, 1000)
    node_id = context.get("node_id") or context.get("segmentation_id")
    names = [s.name for n in listing.nodes if node_id in (None, n.id) for s in (n.segments or [])]
    return ranked(names, typed)


async def _dicom_nodes(services: Services, typed: str, _: dict[str, str]) -> list[str]:
    return ranked(services.config.nodes, typed)


async def _fhir_servers(services: Services, typed: str, _: dict[str, str]) -> list[str]:
    return ranked(services.config.fhir_servers, typed)


async def _samples(services: Services, typed: str, _: dict[str, str]) -> list[str]:
    return ranked(SAMPLES, typed)


async def _layouts(services: Services, typed: str, _: dict[str, str]) -> list[str]:
    return ranked(LAYOUT_NAMES, typed)


async def _modalities(services: Services, typed: str, _: dict[str, str]) -> list[str]:
    return ranked(MODALITIES, typed)


async def _station_aets(services: Services, typed: str, _: dict[str, str]) -> list[str]:
    config = services.config
    aets = [config.mini_ris.modality.ae_title] + [n.ae_title for n in config.nodes.values()]
    return ranked(aets, typed)


#: argument name -> where its values come from (prompts and resource templates alike)
SOURCES: dict[str, Source] = {
    "node_id": _node_ids,
    "segmentation_id": _node_ids,
    "node_name": _node_names,
    "volume": _volumes,
    "volume_node_id": _volumes,
    "segment": _segments,
    "segment_name": _segments,
    "destination_node": _dicom_nodes,
    "dicom_node": _dicom_nodes,
    "fhir_server": _fhir_servers,
    "dataset_name": _samples,
    "sample": _samples,
    "layout": _layouts,
    "modality": _modalities,
    "station_aet": _station_aets,
}


async def complete(
    services: Services,
    ref: PromptReference | ResourceTemplateReference,
    argument: CompletionArgument,
    context: CompletionContext | None,
) -> Completion | None:
    """The completion for one argument; None (no values) for an argument with no known source."""
    source = SOURCES.get(argument.name)
    if source is None:
        return None
    values = list(await source(services, argument.value or "", dict((context and context.arguments) or {})))
    return Completion(values=values[:MAX_VALUES], total=len(values), has_more=len(values) > MAX_VALUES)


def register_completions(server: MCPServer, services: Services) -> None:
    """Serve completion/complete (the SDK's handler gives no request context: services are closed over)."""

    @server.completion()
    async def handle(
        ref: PromptReference | ResourceTemplateReference,
        argument: CompletionArgument,
        context: CompletionContext | None,
    ) -> Completion | None:
        return await complete(services, ref, argument, context)
