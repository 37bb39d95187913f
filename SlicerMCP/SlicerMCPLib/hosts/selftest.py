"""What the module's self-test (`SlicerMCPTest`) does, kept here so pytest runs it too.

`check_module` is the first-run check: start, one tool call through a real MCP client over
HTTP, the panel's refresh, stop. The client runs on a worker thread with its own event loop,
as a client process would; the calling (main) thread processes Qt events between short waits
that release the GIL (inside Slicer `processEvents()` keeps the GIL, as PythonQt does), so the
gateway driver and the server thread both get their turn.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

from .inslicer import run_while_pumping


def call_tools_over_http(
    url: str,
    token: str,
    calls: Sequence[tuple[str, dict[str, Any]]],
    *,
    process_events: Callable[[], Any],
    timeout_s: float = 120.0,
) -> list[Any]:
    """Call each (tool, arguments) in one MCP session over streamable HTTP; the CallToolResults."""

    async def session() -> list[Any]:
        import httpx2
        from mcp import Client
        from mcp.client.streamable_http import streamable_http_client

        http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=timeout_s)
        async with Client(streamable_http_client(url, http_client=http)) as client:
            return [await client.call_tool(name, arguments) for name, arguments in calls]

    return run_while_pumping(lambda: asyncio.run(session()), process_events, timeout_s)


class SelfTestFailure(AssertionError):
    """A self-test step failed; the message says which step and what was seen."""


class RecordingView:
    """A PanelView that keeps what the presenter told it to show (the self-test's panel when
    the module's widget was never created)."""

    def __init__(self) -> None:
        self.running: bool | None = None
        self.status: dict[str, str] = {}
        self.rows: list[tuple[str, str, str, str]] = []
        self.warning = ""

    def showRunning(self, running: bool) -> None:
        self.running = running

    def showStatus(self, lines: dict[str, str]) -> None:
        self.status = dict(lines)

    def addCallRows(self, rows: list[tuple[str, str, str, str]]) -> None:
        self.rows.extend(rows)

    def showAllowWarning(self, text: str) -> None:
        self.warning = text


def panel_on_recording_view(
    controller: Any, store: Any, timer: Any, connect_timeout: Callable[[Any, Callable[[], None]], None]
) -> tuple[Any, Callable[[], tuple[bool | None, str]]]:
    """A PanelPresenter on a RecordingView (for when the module's widget was never created),
    and the `shown()` that `check_module` reads from it. Close the presenter after use."""
    from .panel import PanelPresenter

    view = RecordingView()
    presenter = PanelPresenter(controller, store, view, timer, connect_timeout)
    return presenter, lambda: (view.running, " ".join(row[1] for row in view.rows))


def check_module(
    controller: Any,
    presenter: Any,
    shown: Callable[[], tuple[bool | None, str]],
    process_events: Callable[[], Any],
    call: tuple[str, dict[str, Any]] = ("list_scene_nodes", {"limit": 20}),
) -> list[str]:
    """Start, one tool call through a real MCP client over HTTP, panel refresh, stop: what a
    first run in a real Slicer must show working. Returns the steps passed; a failing step
    raises SelfTestFailure naming it.

    `presenter` is the panel's PanelPresenter (the widget's, or one on a RecordingView);
    `shown()` returns (running as the panel shows it, the recent calls' tool names joined).
    """
    from ..serving.endpoint import read_endpoint

    steps: list[str] = []
    status = controller.start(port=0)
    endpoint = read_endpoint()
    if not status.running or endpoint is None or endpoint.url != status.url:
        raise SelfTestFailure(f"start: not serving, or no endpoint file for it ({status}, {endpoint})")
    presenter.refresh()  # the panel follows the new server's call log from here on
    steps.append(f"start: serving at {status.url}")

    (result,) = call_tools_over_http(status.url, endpoint.read_token(), [call], process_events=process_events)
    if result.is_error:
        raise SelfTestFailure(f"tool call over HTTP: {call[0]} failed: {result.content[0].text}")
    steps.append(f"tool call over HTTP: {call[0]} answered")

    presenter.refresh()
    running, tools = shown()
    if not running:
        raise SelfTestFailure("panel refresh: the panel does not show the server as running")
    if call[0] not in tools:
        raise SelfTestFailure(f"panel refresh: the recent calls do not list {call[0]} ({tools!r})")
    steps.append("panel refresh: running, the call listed")

    controller.stop()
    presenter.refresh()
    if controller.status().running or read_endpoint() is not None:
        raise SelfTestFailure("stop: the server still runs, or its endpoint file is still there")
    if shown()[0]:
        raise SelfTestFailure("stop: the panel still shows the server as running")
    steps.append("stop: stopped, endpoint file removed, panel updated")
    return steps
