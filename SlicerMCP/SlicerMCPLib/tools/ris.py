"""RIS tools (filled in by the RIS work; registered through `register`)."""

from __future__ import annotations

from mcp.server.mcpserver import MCPServer


def register(server: MCPServer) -> None:
    """No ris tools yet."""
