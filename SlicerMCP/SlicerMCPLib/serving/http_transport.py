"""The MCP streamable HTTP endpoint: the SDK's app behind the token and Origin checks.

`mcp_http_server(server, settings, token).start()` serves it at `/mcp` through
`core.http_server.HttpServer` (loopback, worker thread, TCP_NODELAY). Used headless, by the
WebServer bridge and inside Slicer.
"""

from __future__ import annotations

import logging

from mcp.server.mcpserver import MCPServer
from mcp.server.transport_security import TransportSecuritySettings
from starlette.requests import ClientDisconnect

from ..core.config import ServerSettings
from ..core.http_server import DISCONNECT_LINE, ASGIApp, AuthMiddleware, HttpServer
from ..core.localhost import served_host_names
from .event_store import RETRY_MS, MemoryEventStore

log = logging.getLogger(__name__)

MCP_PATH = "/mcp"


class OneLineDisconnects(logging.Filter):
    """The SDK logs a client gone mid-body (starlette's ClientDisconnect) with its traceback; keep the
    fact, in the same words as core.http_server, and drop the traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, ClientDisconnect):
            record.msg, record.args = DISCONNECT_LINE, ("POST", MCP_PATH)
            record.exc_info = record.exc_text = None
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


_SDK_HTTP_LOG = logging.getLogger("mcp.server.streamable_http")


def build_app(server: MCPServer, settings: ServerSettings, token: str) -> ASGIApp:
    """The MCP app wrapped in token and Origin checks; the SDK also validates Host and Origin."""
    if not any(isinstance(f, OneLineDisconnects) for f in _SDK_HTTP_LOG.filters):
        _SDK_HTTP_LOG.addFilter(OneLineDisconnects())
    patterns = ["127.0.0.1:*", "localhost:*", "[::1]:*"]
    served = sorted(f"[{h}]:*" if ":" in h else f"{h}:*" for h in served_host_names(settings.host))
    security = TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=served,  # loopback; with allow_remote also this machine's own names
        allowed_origins=[f"http://{p}" for p in patterns] + list(settings.allowed_origins),
    )
    app = server.streamable_http_app(
        streamable_http_path=MCP_PATH,
        transport_security=security,
        host=settings.host,
        event_store=MemoryEventStore(),  # priming event + retry field on every SSE stream; resumable
        retry_interval=RETRY_MS,
    )
    return AuthMiddleware(app, token, list(settings.allowed_origins))


def mcp_http_server(server: MCPServer, settings: ServerSettings, token: str) -> HttpServer:
    """An HttpServer for `server` at `/mcp`; call `.start()` to bind and serve."""
    return HttpServer(build_app(server, settings, token), settings, path=MCP_PATH)
