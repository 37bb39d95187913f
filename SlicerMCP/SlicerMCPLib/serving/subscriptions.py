"""Live resources: scene changes become `notifications/resources/updated` and `list_changed`.

Handshake-era clients subscribe with `resources/subscribe` (served here; the SDK's MCPServer
has no handler for it) and get notifications on their connection's standalone stream.
2026-07-28 clients open `subscriptions/listen` (served by the SDK's ListenHandler) and get
the same events through the server's subscription bus. The scene's changes come from the
backend's change notes (`SceneBackend.scene_changes`: MRML observers on the main thread, or
polling Slicer's WebServer, so changes by a tool, by the Slicer user or by Python all count).
A source that polls is told when someone subscribes (`SceneChanges.watch`, with the node ids
subscribed to) and when no one does any more (`unwatch`); while it does not poll, only what our
own tools changed is reported, from the call log. Changes are coalesced: one round of
notifications, then at least `min_interval_s` before the next, so a burst of thousands of node
events sends a handful of messages.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel.server import NotificationOptions
from mcp.server.subscriptions import ResourcesListChanged, ResourceUpdated, SubscriptionBus
from mcp_types import (
    EmptyResult,
    Resource,
    SubscribeRequestParams,
    SubscriptionsListenRequestParams,
    UnsubscribeRequestParams,
)
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from ..core.scene_backend import SceneChanges
from ..core.services import CallRecord, Services
from ..tools.client_log import connection_of
from ..tools.sdk_internals import lowlevel_server

log = logging.getLogger(__name__)

SCENE, VOLUMES, STATUS = "slicer://scene", "slicer://volumes", "slicer://status"
NODE_PREFIX = "slicer://node/"
#: requests after which a client may want change notifications: watching starts with the first
WATCH_METHODS = frozenset({"resources/subscribe", "subscriptions/listen", "resources/list", "resources/read"})


class LiveResources:
    """Subscriptions per connection, the scene's change notes, and the task that sends notifications."""

    def __init__(
        self,
        services: Services,
        bus: SubscriptionBus,
        read_only_tools: set[str],
        min_interval_s: float = 0.25,
    ):
        self.services = services
        self.bus = bus
        self.read_only_tools = read_only_tools
        self.min_interval_s = min_interval_s
        self._subscribers: dict[str, dict[int, Any]] = {}  # uri -> {id(connection): connection}
        self._listing: dict[int, Any] = {}  # handshake-era connections that listed resources
        self._listens: dict[object, frozenset[str]] = {}  # open listen streams for resources -> their URIs
        self._changes: SceneChanges | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._unlisten: Callable[[], None] | None = None
        self._tool_changed = False
        self.rounds = 0  # notification rounds sent (for tests and benchmarks)

    # -- wiring ------------------------------------------------------------------------------------
    def install(self, server: Any) -> None:
        low = lowlevel_server(server)  # MCPServer has no subscribe API; the low-level one does
        low.add_request_handler("resources/subscribe", SubscribeRequestParams, self._subscribe)
        low.add_request_handler("resources/unsubscribe", UnsubscribeRequestParams, self._unsubscribe)
        low.middleware.append(self._middleware)
        plain = low.create_initialization_options

        def with_list_changed(
            notification_options: NotificationOptions | None = None, *args: Any, **kw: Any
        ) -> Any:
            # the runner asks with no options; the handshake must say resources.listChanged
            return plain(notification_options or NotificationOptions(resources_changed=True), *args, **kw)

        low.create_initialization_options = with_list_changed
        self.services.call_log.listeners.append(self._tool_called)

    async def _middleware(
        self, ctx: ServerRequestContext[Any], call_next: Callable[..., Awaitable[Any]]
    ) -> Any:
        if ctx.method in WATCH_METHODS:
            await self._start()
            if (
                ctx.method == "resources/list"
                and ctx.session.protocol_version not in MODERN_PROTOCOL_VERSIONS
            ):
                self._remember(self._listing, connection_of(ctx.session))
        uris = listened_uris(ctx.params) if ctx.method == "subscriptions/listen" else None
        if uris is None:
            return await call_next(ctx)
        token = object()  # the listen request runs as long as its stream is open
        self._listens[token] = uris
        try:
            await self._watch()
            return await call_next(ctx)
        finally:
            self._listens.pop(token, None)
            self._unwatch_if_unwanted()

    def _remember(self, table: dict[int, Any], connection: Any) -> None:
        key = id(connection)
        if key in table:
            return
        table[key] = connection
        stack = getattr(connection, "exit_stack", None)
        if stack is not None:  # forget the connection when it closes
            stack.callback(self._forget, table, key)

    def _forget(self, table: dict[int, Any], key: int) -> None:
        table.pop(key, None)
        self._unwatch_if_unwanted()

    def wanted_uris(self) -> set[str]:
        """The URIs some connection or listen stream subscribes to now."""
        uris = {uri for uri, connections in self._subscribers.items() if connections}
        for listened in self._listens.values():
            uris |= listened
        return uris

    async def _watch(self) -> None:
        """Someone subscribes: a polling change source polls (its first look done before we answer)."""
        if self._changes is not None:
            nodes = frozenset(u[len(NODE_PREFIX) :] for u in self.wanted_uris() if u.startswith(NODE_PREFIX))
            await self._changes.watch(nodes)

    def _unwatch_if_unwanted(self) -> None:
        if self._changes is not None and not self.wanted_uris() and not self._listens:
            self._changes.unwatch()

    async def _subscribe(self, ctx: ServerRequestContext[Any], params: SubscribeRequestParams) -> EmptyResult:
        await self._start()
        connection = connection_of(ctx.session)
        self._remember(self._subscribers.setdefault(str(params.uri), {}), connection)
        self._remember(self._listing, connection)
        await self._watch()
        return EmptyResult()

    async def _unsubscribe(
        self, ctx: ServerRequestContext[Any], params: UnsubscribeRequestParams
    ) -> EmptyResult:
        self._subscribers.get(str(params.uri), {}).pop(id(connection_of(ctx.session)), None)
        self._unwatch_if_unwanted()
        return EmptyResult()

    # -- watching ----------------------------------------------------------------------------------
    async def _start(self) -> None:
        """Watch the scene from the loop serving requests (again if that loop changed)."""
        loop = asyncio.get_running_loop()
        if self._loop is loop:
            return
        self.stop()
        self._loop, self._wake = loop, asyncio.Event()
        if self._changes is None:
            try:
                self._changes = await self.services.backend.scene_changes()
            except Exception as exc:  # Slicer unreachable: only our own tools' changes are seen
                log.warning("cannot watch the scene: %s", exc)
        if self._changes is not None:
            self._unlisten = self._changes.add_listener(self._poke)
        self._task = loop.create_task(self._pump(), name="slicer-mcp-live-resources")

    def _poke(self) -> None:
        """From the thread that changed the scene: wake the pump (nothing else happens here)."""
        loop, wake = self._loop, self._wake
        if loop is None or wake is None:
            return
        try:
            loop.call_soon_threadsafe(wake.set)
        except RuntimeError:  # the loop is closed (its server has stopped): stop listening
            self.stop()

    def _tool_called(self, record: CallRecord) -> None:
        """A tool that changes the scene ran: while the backend does not watch, that is all we see."""
        watching = self._changes is not None and self._changes.live()
        if not watching and record.ok and record.tool not in self.read_only_tools:
            self._tool_changed = True
            self._poke()

    def stop(self) -> None:
        if self._changes is not None:
            self._changes.unwatch()
        if self._unlisten is not None:
            self._unlisten()
            self._unlisten = None
        if self._task is not None and self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._task.cancel)
        self._task = self._loop = self._wake = None

    async def _pump(self) -> None:
        wake = self._wake
        assert wake is not None
        while True:
            await wake.wait()
            wake.clear()
            try:
                await self._send_round()
            except Exception:  # a failing round must not end notifications for good
                log.exception("sending resource notifications failed")
            await asyncio.sleep(self.min_interval_s)

    def pending_uris(self) -> tuple[list[str], bool]:
        """The URIs to report as updated now and whether the resource list changed."""
        modified, set_changed = self._changes.take() if self._changes is not None else ({}, False)
        everything, self._tool_changed = self._tool_changed, False
        uris: list[str] = []
        if modified or set_changed or everything:
            uris.append(SCENE)
        if set_changed or everything:
            uris.append(STATUS)
        if everything or any("VolumeNode" in kind for kind in modified.values()):
            uris.append(VOLUMES)
        uris += [NODE_PREFIX + node_id for node_id in modified]
        return uris, set_changed or everything

    async def _send_round(self) -> None:
        uris, list_changed = self.pending_uris()
        if not uris and not list_changed:
            return
        self.rounds += 1
        for uri in uris:
            await self.bus.publish(ResourceUpdated(uri=uri))
            for connection in list(self._subscribers.get(uri, {}).values()):
                await connection.send_resource_updated(uri)
        if list_changed:
            await self.bus.publish(ResourcesListChanged())
            for connection in list(self._listing.values()):
                await connection.send_resource_list_changed()

    # -- the resource list -------------------------------------------------------------------------
    def node_resources(self) -> list[Resource]:
        """One resource per data node, so the list (and list_changed) follows the scene (with a polling
        backend: while it polls)."""
        if self._changes is None or not self._changes.live():
            return []
        return [
            Resource(
                uri=NODE_PREFIX + n.node_id,
                name=n.node_id,
                title=f"{n.name} ({n.class_name})",
                mime_type="application/json",
            )
            for n in self._changes.names()
            if n.data
        ]


def listened_uris(params: Any) -> frozenset[str] | None:
    """The resource URIs a `subscriptions/listen` request asks for (empty for list changes only);
    None when it asks for no resource events."""
    try:
        wanted = SubscriptionsListenRequestParams.model_validate(params or {}).notifications
    except ValueError:
        return None  # the SDK's handler answers the malformed request
    uris = frozenset(str(u) for u in wanted.resource_subscriptions or ())
    return uris if uris or wanted.resources_list_changed else None
