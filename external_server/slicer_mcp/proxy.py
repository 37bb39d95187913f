"""The proxy backend: a stdio MCP server that forwards everything to the SlicerMCP server in Slicer.

The in-Slicer server announces itself in the endpoint file (`SlicerMCPLib.endpoint`): URL,
pid and token file. The proxy connects to it over streamable HTTP with the bearer token and
serves stdio with a low-level MCP server whose handlers pass every request through
unchanged: tools/list, tools/call (progress notifications relayed to the stdio client with
its own progress token), resources, resource templates, prompts, each with the client's own
request `_meta`; the upstream server's errors and log messages come back as they are. Nothing
is re-encoded, so images, structured content and tool errors reach the client exactly as
Slicer sent them. Also relayed: completion/complete, logging/setLevel, resources/subscribe and
unsubscribe (the proxy subscribes upstream; updates and list_changed come back), the 2026
wire's `subscriptions/listen` (the URIs a listen stream asks for are subscribed upstream and
upstream updates are published on the proxy's bus), and confirmation by a person
(allow.confirm_with_person, `confirm_relay.py`). A 2026-07-28 stdio client's tool calls go over
one of two upstream sessions on the 2026 wire, the one declaring elicitation or the one not, as
the client declared itself, so its per-request log level and elicitation reach the server as
they would directly (an InputRequiredResult and its retry pass through unchanged); everything
else, and every handshake-era client, uses the handshake session, whose `elicitation/create`
goes on to a handshake-era client that elicits.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import httpx2
import mcp_types as types
from mcp.client.session import ClientRequestContext, ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel.server import NotificationOptions, Server
from mcp.server.session import ServerSession
from mcp.server.subscriptions import (
    InMemorySubscriptionBus,
    ListenHandler,
    ResourcesListChanged,
    ResourceUpdated,
)
from mcp.shared.exceptions import MCPDeprecationWarning

from SlicerMCPLib.core.errors import SlicerConnectionError
from SlicerMCPLib.serving.endpoint import Endpoint
from SlicerMCPLib.serving.stdio import serve_stdio

from .confirm_relay import CALL_OR_INPUT, elicits, on_the_2026_wire, relay_elicitation

log = logging.getLogger(__name__)


class _Downstream:
    """The stdio client's session, learned from its first request, for relaying notifications."""

    def __init__(self) -> None:
        self.session: ServerSession | None = None
        self.bus = InMemorySubscriptionBus()  # the 2026 listen streams of the stdio client
        self.subscribed: set[str] = set()  # URIs the stdio client subscribed to (handshake era)
        #: the 2026-wire upstream sessions, by whether they declare elicitation (a 2026 client's calls)
        self.modern: dict[bool, ClientSession] = {}
        #: the execute_python namespace the server issued to this stdio client: over a sessionless
        #: 2026-wire upstream each call would get a fresh one, so the proxy (one stdio client, one
        #: connection) passes it back, as the server keys a connection's namespace itself
        self.namespace: str | None = None

    async def on_upstream_elicit(
        self, ctx: ClientRequestContext, params: types.ElicitRequestParams
    ) -> types.ElicitResult | types.ErrorData:
        return await relay_elicitation(self.session, params)

    async def on_upstream_log(self, params: types.LoggingMessageNotificationParams) -> None:
        if self.session is not None:
            await self.session.send_log_message(params.level, params.data, params.logger)

    async def on_upstream_message(self, message: Any) -> None:
        if self.session is None or isinstance(message, Exception):
            if isinstance(message, Exception):
                log.warning("upstream transport error: %s", message)
            return
        if isinstance(message, types.ToolListChangedNotification):
            await self.session.send_tool_list_changed()
        elif isinstance(message, types.ResourceListChangedNotification):
            await self.bus.publish(ResourcesListChanged())
            await self.session.send_resource_list_changed()
        elif isinstance(message, types.ResourceUpdatedNotification):
            uri = str(message.params.uri)
            await self.bus.publish(ResourceUpdated(uri=uri))
            if uri in self.subscribed:
                await self.session.send_resource_updated(uri)


#: `_meta` keys that describe one hop (this proxy's own session upstream sets them itself)
HOP_META_KEYS = frozenset(
    {
        "progress_token",  # as pydantic parses progressToken
        "progressToken",
        types.PROTOCOL_VERSION_META_KEY,
        types.CLIENT_INFO_META_KEY,
        types.CLIENT_CAPABILITIES_META_KEY,
    }
)


def forwarded_meta(meta: types.RequestParamsMeta | None) -> dict[str, Any] | None:
    """The stdio client's request `_meta` for the upstream request: its own keys (and its log-level
    opt-in) go on; the progress token and the session-describing keys are the upstream hop's."""
    kept = {k: v for k, v in (meta or {}).items() if k not in HOP_META_KEYS}
    return kept or None


def build_proxy_server(upstream: ClientSession, downstream: _Downstream) -> Server[Any]:
    """A low-level server whose handlers forward to `upstream` (an initialised ClientSession)."""
    info = upstream.server_info
    caps = upstream.server_capabilities or types.ServerCapabilities()

    def seen(ctx: ServerRequestContext[Any]) -> None:
        downstream.session = ctx.session

    def listing(fetch: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        """A list handler (tools, resources, templates, prompts) asking upstream for the same page."""

        async def handler(ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None) -> Any:
            seen(ctx)
            return await fetch(params=params)

        return handler

    async def call_tool(ctx: ServerRequestContext[Any], params: types.CallToolRequestParams) -> Any:
        seen(ctx)

        async def relay(progress: float, total: float | None, message: str | None) -> None:
            # on the request-scoped session: sent with the stdio client's own token, a no-op without one
            await ctx.session.report_progress(progress, total, message)

        arguments = params.arguments
        if params.name == "execute_python" and downstream.namespace and "namespace" not in (arguments or {}):
            arguments = {**(arguments or {}), "namespace": downstream.namespace}
        # send_request, not call_tool: the result goes on as it came; the stdio client validates it
        request = types.CallToolRequest(
            params=types.CallToolRequestParams(
                name=params.name,
                arguments=arguments,
                input_responses=params.input_responses,  # a 2026 retry: the person's answer...
                request_state=params.request_state,  # ...and the state the server sealed, as they came
                _meta=forwarded_meta(params.meta),
            )
        )
        modern = downstream.modern.get(elicits(ctx.session)) if on_the_2026_wire(ctx.session) else None
        if modern is not None:  # as the client declared itself: log opt-in and elicitation per request
            result = await modern.send_request(request, CALL_OR_INPUT, progress_callback=relay)
        else:
            result = await upstream.send_request(request, types.CallToolResult, progress_callback=relay)
        if params.name == "execute_python":
            issued = (getattr(result, "structured_content", None) or {}).get("namespace")
            downstream.namespace = issued or downstream.namespace
        return result

    async def read_resource(ctx: ServerRequestContext[Any], params: types.ReadResourceRequestParams) -> Any:
        seen(ctx)
        return await upstream.read_resource(params.uri, meta=forwarded_meta(params.meta))

    async def get_prompt(ctx: ServerRequestContext[Any], params: types.GetPromptRequestParams) -> Any:
        seen(ctx)
        return await upstream.get_prompt(params.name, params.arguments, meta=forwarded_meta(params.meta))

    async def complete(ctx: ServerRequestContext[Any], params: types.CompleteRequestParams) -> Any:
        seen(ctx)
        argument = {"name": params.argument.name, "value": params.argument.value}
        context = params.context.arguments if params.context is not None else None
        return await upstream.complete(params.ref, argument, context)

    async def subscribe(ctx: ServerRequestContext[Any], params: types.SubscribeRequestParams) -> Any:
        seen(ctx)
        downstream.subscribed.add(str(params.uri))
        return await upstream.subscribe_resource(str(params.uri))

    async def unsubscribe(ctx: ServerRequestContext[Any], params: types.UnsubscribeRequestParams) -> Any:
        seen(ctx)
        downstream.subscribed.discard(str(params.uri))
        return types.EmptyResult()  # upstream stays subscribed: a listen stream may still want it

    listen_handler = ListenHandler(downstream.bus)

    async def listen(ctx: ServerRequestContext[Any], params: types.SubscriptionsListenRequestParams) -> Any:
        seen(ctx)
        for uri in params.notifications.resource_subscriptions or ():
            await upstream.subscribe_resource(uri)
        return await listen_handler(ctx, params)

    handlers: dict[str, Any] = {}
    if caps.tools is not None:
        handlers.update(on_list_tools=listing(upstream.list_tools), on_call_tool=call_tool)
    if caps.resources is not None:
        handlers.update(
            on_list_resources=listing(upstream.list_resources),
            on_list_resource_templates=listing(upstream.list_resource_templates),
            on_read_resource=read_resource,
        )
    if caps.prompts is not None:
        handlers.update(on_list_prompts=listing(upstream.list_prompts), on_get_prompt=get_prompt)
    if caps.completions is not None:
        handlers.update(on_completion=complete)
    if caps.resources is not None and caps.resources.subscribe:
        handlers.update(on_subscribe_resource=subscribe, on_unsubscribe_resource=unsubscribe)
        handlers.update(on_subscriptions_listen=listen)
    server = Server(
        info.name if info else "slicer-mcp",
        version=info.version if info else "",
        title=getattr(info, "title", None) if info else None,
        instructions=upstream.instructions,
        **handlers,
    )
    if caps.logging is not None:

        async def set_level(ctx: ServerRequestContext[Any], params: types.SetLevelRequestParams) -> Any:
            seen(ctx)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", MCPDeprecationWarning)
                return await upstream.set_logging_level(params.level)

        server.add_request_handler("logging/setLevel", types.SetLevelRequestParams, set_level)
    return server


def initialization_options(server: Server[Any], upstream: ClientSession) -> Any:
    """The handshake answer: the upstream server's list_changed flags, with our own handlers."""
    caps = upstream.server_capabilities or types.ServerCapabilities()
    changed = bool(caps.resources and caps.resources.list_changed)
    return server.create_initialization_options(NotificationOptions(resources_changed=changed))


@asynccontextmanager
async def upstream_session(
    endpoint: Endpoint, downstream: _Downstream | None = None, *, modern: bool = False, asks: bool = True
) -> AsyncIterator[ClientSession]:
    """An initialised client session with the in-Slicer server named by `endpoint`.

    `modern`: negotiated with server/discover (the 2026 wire) instead of the initialize handshake.
    `asks`: declares elicitation (the questions go to `downstream`, see `confirm_relay`).
    """
    try:
        token = endpoint.read_token()
    except OSError as exc:
        raise SlicerConnectionError(
            f"cannot read the SlicerMCP token file {endpoint.token_file}: {exc.strerror}",
            details={"token_file": endpoint.token_file},
        ) from exc
    downstream = downstream or _Downstream()
    headers = {"Authorization": f"Bearer {token}"}
    async with (
        httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30.0, read=None)) as http,
        streamable_http_client(endpoint.url, http_client=http) as (read, write),
        ClientSession(
            read,
            write,
            logging_callback=downstream.on_upstream_log,
            message_handler=None if modern else downstream.on_upstream_message,
            elicitation_callback=downstream.on_upstream_elicit if asks else None,
        ) as session,
    ):
        if modern:
            await session.discover()
        else:
            await session.initialize()
        yield session


async def open_modern_upstreams(stack: AsyncExitStack, endpoint: Endpoint, downstream: _Downstream) -> None:
    """The 2026-wire upstream sessions (with and without elicitation) for the 2026 clients' tool calls.

    Without them (a server that does not speak the 2026 wire) those calls go over the handshake
    session: they work, but the person can't be asked and log levels are the connection's.
    """
    for asks in (True, False):
        try:
            session = upstream_session(endpoint, downstream, modern=True, asks=asks)
            downstream.modern[asks] = await stack.enter_async_context(session)
        except Exception as exc:
            log.warning(
                "no 2026-wire session with the SlicerMCP server (%s): 2026 clients can't confirm", exc
            )
            downstream.modern.clear()
            return


async def serve_proxy_stdio(endpoint: Endpoint, on_eof: Callable[[], None] | None = None) -> None:
    """Serve MCP on stdio, forwarding to the SlicerMCP server inside Slicer until stdin closes
    (then the forwarded calls in progress are cancelled: nobody is left to read their answers)."""
    downstream = _Downstream()
    async with upstream_session(endpoint, downstream) as upstream, AsyncExitStack() as stack:
        await open_modern_upstreams(stack, endpoint, downstream)
        server = build_proxy_server(upstream, downstream)
        log.info("proxying stdio to the SlicerMCP server at %s (Slicer pid %d)", endpoint.url, endpoint.pid)
        await serve_stdio(server, initialization_options(server, upstream), on_eof)
