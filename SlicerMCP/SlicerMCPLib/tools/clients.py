"""Who a call comes from: a label for fair shares, and the execute_python namespace the server issued.

A client's declared name (`clientInfo.name`) is its own choice: every Claude Code says
"claude-code". Variables one client left in an `execute_python` namespace must never be another's,
so a namespace is keyed by what the client cannot choose:

- an MCP session (streamable HTTP, handshake era): the session id the SDK issued;
- a duplex connection (stdio, in-memory; either era): that connection, to which the server gives a
  random key on its first call;
- a sessionless request (HTTP, 2026-07-28): nothing lasts past the request, so the server issues a
  new random key, returns it as `namespace`, and the client passes it back to keep its variables.

A key passed as `namespace` must be one this server issued and still keeps; anything else is
INVALID_PARAMETER. At most `MAX_NAMESPACES` are kept (least recently used dropped first, as the
backends drop the namespaces themselves).
"""

from __future__ import annotations

import secrets
import threading
import weakref
from collections import OrderedDict
from collections.abc import MutableMapping
from dataclasses import dataclass
from typing import Any

from mcp.server.mcpserver import Context

from ..core.errors import InvalidParameter
from ..scene.python_exec import MAX_NAMESPACES
from .sdk_internals import request_connection

CONSOLE = "console"  # calls without an MCP request: the Slicer Python console, in-process tests


def client_label(ctx: Context) -> str:
    """Which client a call counts against for fair shares (render turns): its MCP session id when
    it has one, else its declared name. Not an identity: never key anything private by it."""
    try:
        sid = request_connection(ctx).session_id
        params = ctx.request_context.session.client_params
    except ValueError:  # no request
        return CONSOLE
    if sid:
        return f"session-{sid}"
    if params is not None and params.client_info is not None:
        return f"client-{params.client_info.name}"
    return "default"


@dataclass(frozen=True)
class NamespaceChoice:
    key: str
    new: bool  # created for this call
    lasting: bool  # found again by the next call without `namespace` (session or connection)


class PythonNamespaces:
    """The execute_python namespace keys this server issued, and which session or connection owns each."""

    def __init__(self, limit: int = MAX_NAMESPACES):
        self.limit = limit
        self._issued: OrderedDict[str, None] = OrderedDict()  # least recently used first
        self._by_session: dict[str, str] = {}
        self._by_connection: weakref.WeakKeyDictionary[object, str] = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()

    def choose(self, ctx: Context, requested: str | None = None) -> NamespaceChoice:
        """The namespace for this call: `requested` (issued here), else the caller's session's or
        connection's, else a new one."""
        with self._lock:
            if requested is not None:
                if requested not in self._issued:
                    raise InvalidParameter(
                        "unknown execute_python namespace: pass back a 'namespace' a previous execute_python "
                        f"call returned (this server keeps the last {self.limit}), or leave it out to start "
                        "with a fresh one",
                        details={"parameter": "namespace"},
                    )
                self._issued.move_to_end(requested)
                return NamespaceChoice(requested, new=False, lasting=False)
            try:
                connection = request_connection(ctx)
            except ValueError:  # no request
                return NamespaceChoice(CONSOLE, new=False, lasting=True)
            table, handle = self._owner_table(connection)
            key = table.get(handle) if table is not None else None
            if key is not None and key in self._issued:
                self._issued.move_to_end(key)
                return NamespaceChoice(key, new=False, lasting=True)
            key = self._issue()
            if table is not None:
                table[handle] = key
            return NamespaceChoice(key, new=True, lasting=table is not None)

    def _owner_table(self, connection: Any) -> tuple[MutableMapping[Any, str] | None, Any]:
        """Where the caller's lasting key is kept and under what; (None, None) for a sessionless request."""
        if connection.session_id:
            return self._by_session, connection.session_id
        if connection.has_standalone_channel:
            # stdio and in-memory: the channel lives as long as the connection (on the 2026-07-28 wire
            # each request gets a new Connection object, but they share the connection's channel)
            return self._by_connection, connection.outbound
        return None, None

    def _issue(self) -> str:
        key = "ns-" + secrets.token_urlsafe(16)
        self._issued[key] = None
        while len(self._issued) > self.limit:
            dropped, _ = self._issued.popitem(last=False)
            for sid in [s for s, k in self._by_session.items() if k == dropped]:
                del self._by_session[sid]
        return key
