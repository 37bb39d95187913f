"""Log messages to the MCP client (`notifications/message`) while long work runs, and `logging/setLevel`.

Handshake-era clients (2025-11-25 and before) choose the lowest level with `logging/setLevel`
(per connection; `info` until they do). 2026-07-28 clients opt in per request through `_meta`
and the SDK drops what they did not ask for. No PHI: messages say what is happening and how
far it got; identifiers (UIDs, node ids, AE titles) ride only `debug` entries, and no entry
ever carries a patient name.
"""

from __future__ import annotations

import logging
import time
import warnings
from typing import Any, get_args

from mcp.server.context import ServerRequestContext
from mcp.server.mcpserver import Context, MCPServer
from mcp.shared.exceptions import MCPDeprecationWarning
from mcp_types import EmptyResult, LoggingLevel, SetLevelRequestParams
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from .sdk_internals import lowlevel_server

log = logging.getLogger(__name__)

LEVELS: tuple[str, ...] = get_args(LoggingLevel)  # severity ascending (RFC 5424)
DEFAULT_LEVEL = "info"
_STATE_KEY = "slicer-mcp/log-level"


def connection_of(session: Any) -> Any:
    """The connection behind a per-request `ServerSession` (one per client for the connection's life).

    The SDK hands handlers a new session proxy per request and keeps the connection private;
    per-connection state (log level, resource subscriptions) must hang on the connection."""
    return getattr(session, "_connection", session)


def level_of(session: Any) -> str:
    state = getattr(connection_of(session), "state", None)
    return state.get(_STATE_KEY, DEFAULT_LEVEL) if isinstance(state, dict) else DEFAULT_LEVEL


async def client_log(ctx: Context, level: LoggingLevel, message: str, **identifiers: Any) -> None:
    """Tell the client what a long operation is doing; `identifiers` are sent at debug level only."""
    try:
        session = ctx.request_context.session
    except ValueError:  # no request: a call from the Slicer Python console
        return
    if session.protocol_version not in MODERN_PROTOCOL_VERSIONS:
        if LEVELS.index(level) < LEVELS.index(level_of(session)):
            return
    data: dict[str, Any] = {"message": message}
    if level == "debug":
        data.update({k: v for k, v in identifiers.items() if v is not None})
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", MCPDeprecationWarning)  # logging is deprecated at 2026-07-28 only
            await session.send_log_message(
                level, data, logger="slicer-mcp", related_request_id=ctx.request_id
            )
    except Exception as exc:  # a client gone mid-operation must not fail the operation
        log.debug("log message not delivered: %s", exc)


async def set_level(ctx: ServerRequestContext[Any], params: SetLevelRequestParams) -> EmptyResult:
    state = getattr(connection_of(ctx.session), "state", None)
    if isinstance(state, dict):
        state[_STATE_KEY] = params.level
    log.debug("client log level set to %s", params.level)
    return EmptyResult()


def register_logging(server: MCPServer) -> None:
    """Serve `logging/setLevel` (the SDK derives the `logging` capability from the handler)."""
    lowlevel_server(server).add_request_handler("logging/setLevel", SetLevelRequestParams, set_level)


class ThrottledLog:
    """Progress as info log entries: the first, then at most one every `every_s` seconds, and the last."""

    def __init__(self, ctx: Context, every_s: float = 2.0):
        self._ctx = ctx
        self._every_s = every_s
        self._last = -1e9

    async def __call__(self, message: str, *, last: bool = False) -> None:
        now = time.monotonic()
        if last or now - self._last >= self._every_s:
            self._last = now
            await client_log(self._ctx, "info", message)
