"""The tool catalog: one module per domain, each with a `register(server)` function."""

from __future__ import annotations

from mcp.server.mcpserver import MCPServer

from . import dicom, fhir, ris, scene

DOMAINS = (scene, dicom, fhir, ris)


def register_all(server: MCPServer) -> None:
    for module in DOMAINS:
        module.register(server)
