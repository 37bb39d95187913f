"""FHIR tools (filled in by the FHIR work; registered through `register`)."""

from __future__ import annotations

from mcp.server.mcpserver import MCPServer


def register(server: MCPServer) -> None:
    """No fhir tools yet."""
