"""The tool catalog: one module per domain (`scene`, `dicom`, `fhir`, `ris`, `results`, `reports`, `procedure`), plus the resources.

Each module's `register(server)` adds its tools; each tool is a short typed function that
finds its services with `core.services.services_of(ctx)`. The catalog may import `core`,
`scene`, `backends` and the domain packages; never `serving` or `hosts`, which import it.
"""

from __future__ import annotations

from mcp.server.mcpserver import MCPServer

from . import dicom, fhir, markups, procedure, reports, results, ris, scene, segments

DOMAINS = (scene, segments, markups, dicom, fhir, ris, results, reports, procedure)


def register_all(server: MCPServer) -> None:
    for module in DOMAINS:
        module.register(server)
