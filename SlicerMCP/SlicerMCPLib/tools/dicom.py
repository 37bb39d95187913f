"""DICOM tools (filled in by the DICOM work; registered through `register`)."""

from __future__ import annotations

from mcp.server.mcpserver import MCPServer


def register(server: MCPServer) -> None:
    """No dicom tools yet."""
