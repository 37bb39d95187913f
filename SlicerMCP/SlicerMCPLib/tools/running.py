"""Blocking work off the event loop, its progress sent to the client: one way for every tool.

A tool runs blocking work (network, disk, decoding, SQL) with `await run_blocking(ctx, work)`;
a domain's tools bind their service once, `_run = DomainRunner(DicomService)`, then
`await _run(ctx, lambda dicom, progress: dicom.move(target, node, progress))`. Work on the
scene's main thread (analysis) takes a `ProgressRelay` as its callback the same way. The relay
is the one bridge from worker or main thread to the client: reports are sent in order by a
task on the event loop, thinned to ~20 per operation, and mirrored as info log messages
(counts only: no PHI).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import anyio.to_thread
from mcp.server.mcpserver import Context

from ..core.config import Config
from ..core.progress import Progress
from ..core.services import services_of
from ..scene.edit_history import Workspace
from .client_log import ThrottledLog

T = TypeVar("T")
D = TypeVar("D")


class ProgressRelay:
    """A `Progress` callable from any thread; an async context manager that sends what it gets.

    A report that advances less than `min_step` of a known total since the last one sent is
    dropped, except the last; reports with no total are all sent. `label` names the operation
    when the report has no message (and prefixes those that do).
    """

    def __init__(self, ctx: Context, label: str = "", min_step: float = 0.05):
        self._ctx = ctx
        self._label = label
        self._min_step = min_step
        self._last = -1.0
        self._loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue[tuple[float, float | None, str] | None] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    def __call__(self, done: float, total: float | None = None, message: str = "") -> None:
        if total:
            fraction = done / total
            if fraction - self._last < self._min_step and done < total:
                return
            self._last = fraction
        text = f"{self._label}: {message}" if self._label and message and message != self._label else message
        self._loop.call_soon_threadsafe(self._queue.put_nowait, (done, total or None, text or self._label))

    async def _pump(self) -> None:
        tell = ThrottledLog(self._ctx)
        while (item := await self._queue.get()) is not None:
            done, total, message = item
            try:
                await self._ctx.report_progress(float(done), float(total) if total else None, message)
            except (ValueError, RuntimeError):  # no request to report to (a console call)
                pass
            await tell(message, last=bool(total) and done >= total)

    async def __aenter__(self) -> ProgressRelay:
        self._task = asyncio.create_task(self._pump())
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._queue.put_nowait(None)
        if self._task is not None:
            await self._task


async def run_blocking(ctx: Context, work: Callable[[Progress], T], label: str = "") -> T:
    """Run `work(progress)` in a worker thread; its progress reaches the client while it runs."""
    async with ProgressRelay(ctx, label) as relay:
        return await anyio.to_thread.run_sync(work, relay)


async def run_analysis(ctx: Context, work: Callable[[Workspace], T], label: str) -> T:
    """Run `work` on the scene's main thread (`SceneBackend.run_analysis`), relaying its progress."""
    async with ProgressRelay(ctx, label) as relay:
        return await services_of(ctx).backend.run_analysis(work, relay)


class DomainRunner(Generic[D]):
    """`_run(ctx, work)` of one domain's tools: `work(service, progress)` in a worker thread.

    `within(service, run)` wraps each call's work where the domain bounds a whole call (the FHIR
    tools' total deadline: `FhirService.within_call`)."""

    def __init__(
        self,
        kind: type[D],
        make: Callable[[Config], D] | None = None,
        within: Callable[[D, Callable[[], Any]], Any] | None = None,
    ):
        self.kind = kind
        self.make = make
        self.within = within

    async def __call__(self, ctx: Context, work: Callable[[D, Progress], T], label: str = "") -> T:
        service = services_of(ctx).domain(self.kind, self.make)
        within = self.within
        if within is None:
            return await run_blocking(ctx, lambda progress: work(service, progress), label)
        return await run_blocking(
            ctx, lambda progress: within(service, lambda: work(service, progress)), label
        )
