"""MCP resources: read-only views of the scene (and of the server's audit log and peers) for
clients that browse rather than call tools.

The SDK gives static resources no Context, so each handler closes over the services.
A failed read carries the same JSON error body as a failed tool (code, message, details).
"""

from __future__ import annotations

from collections.abc import Awaitable

import anyio
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ResourceError, ResourceNotFoundError
from pydantic import BaseModel

from ..core.audit import audit_of
from ..core.errors import CircuitOpen, ErrorCode, SlicerConnectionError, SlicerMCPError, SlicerTimeout
from ..core.models import SceneStatus
from ..core.services import Services


async def _json_of(read: Awaitable[BaseModel]) -> str:
    """The model as JSON; a SlicerMCPError becomes a resource error holding its JSON body."""
    try:
        return (await read).model_dump_json()
    except SlicerMCPError as exc:
        if exc.code == ErrorCode.INVALID_NODE_ID:
            raise ResourceNotFoundError(exc.to_json()) from exc
        raise ResourceError(exc.to_json()) from exc


def register_resources(server: MCPServer, services: Services) -> None:
    backend = services.backend

    @server.resource("slicer://status", name="status", title="Slicer status", mime_type="application/json")
    async def status() -> str:
        """Backend, Slicer version, node counts and what this host can render; "unreachable" and why
        when Slicer doesn't answer (a status that can't be read is itself the answer); where each
        setting that is not at its default came from; the circuit breaker state of each peer called so far."""
        try:
            found = await backend.status()
        except (SlicerConnectionError, SlicerTimeout, CircuitOpen) as exc:
            found = SceneStatus(
                backend=backend.kind,
                connection="unreachable",
                error=exc.to_dict()["error"],
                notes=[f"Slicer is unreachable: {exc.message}"],
            )
        except SlicerMCPError as exc:
            raise ResourceError(exc.to_json()) from exc
        found.settings = services.config.sources()
        found.peers = services.peer_states()
        return found.model_dump_json()

    @server.resource("slicer://audit", name="audit", title="Audit log", mime_type="application/json")
    async def audit() -> str:
        """The newest tool calls from the audit log (audit.recent_lines of them, oldest first): time,
        client, tool, a SHA-256 of the arguments (never the arguments), result code, duration, bytes."""
        log = audit_of(services)
        return (await anyio.to_thread.run_sync(log.tail)).model_dump_json()

    @server.resource("slicer://scene", name="scene", title="Scene nodes", mime_type="application/json")
    async def scene() -> str:
        """Every node in the scene (first 1000), with the same fields as list_scene_nodes."""
        return await _json_of(backend.list_nodes(None, None, 0, 1000))

    @server.resource("slicer://volumes", name="volumes", title="Volumes", mime_type="application/json")
    async def volumes() -> str:
        """Volume nodes with dimensions, spacing, origin and scalar range."""
        return await _json_of(backend.list_nodes("vtkMRMLVolumeNode", None, 0, 1000))

    @server.resource("slicer://node/{node_id}", name="node", title="One node", mime_type="application/json")
    async def node(node_id: str) -> str:
        """All properties of one node, as get_node returns them."""
        return await _json_of(backend.get_node(node_id))
