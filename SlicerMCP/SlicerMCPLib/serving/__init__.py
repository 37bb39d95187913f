"""Serving MCP: the server with the project's error model, its HTTP endpoint, token and endpoint file.

`server` builds the MCP server from the catalog (`tools`) and turns failures into coded tool
errors; `http_transport` serves it over streamable HTTP; `auth` keeps the bearer token;
`endpoint` records where the in-Slicer server listens so `slicer-mcp` can proxy to it. It may
import `core` and `tools` (and through them everything below); never `hosts`.
"""
