"""Renders take turns, so one client's screenshots cannot starve everyone's scene calls.

A 2048-pixel render holds the main thread for a second or more. Queued straight into the
gateway, 60 of them from one client put 60 s of work ahead of another client's
`list_scene_nodes`, which then timed out. Here renders enter the gateway one at a time (scene
calls from others wait for at most one render), and each client may have `per_client` renders
queued or running: more are refused at once with BUSY instead of waiting.

Waiters may sit on different event loops (an HTTP server, a stdio server, a test), so the turn
is handed over with `call_soon_threadsafe` under a threading lock, not an asyncio primitive.
"""

from __future__ import annotations

import asyncio
import collections
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from .errors import Busy


class RenderQueue:
    """One render at a time, at most `per_client` per client queued or running."""

    def __init__(self, per_client: int = 2):
        self.per_client = per_client
        self._lock = threading.Lock()
        self._busy = False
        self._waiters: collections.deque[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = (
            collections.deque()
        )
        self._per_client: dict[str, int] = {}
        self.refused = 0

    def queued(self) -> int:
        """Renders waiting for their turn (not counting the one running)."""
        with self._lock:
            return len(self._waiters)

    @asynccontextmanager
    async def turn(self, client: str) -> AsyncIterator[None]:
        """Wait for this render's turn; BUSY at once when `client` already has enough queued."""
        waiter: tuple[asyncio.AbstractEventLoop, asyncio.Future[None]] | None = None
        with self._lock:
            mine = self._per_client.get(client, 0)
            if mine >= self.per_client:
                self.refused += 1
                raise Busy(
                    f"this client already has {mine} screenshots queued or rendering; wait for them to "
                    "return, then capture again (renders run one at a time so other clients' calls are served)",
                    details={
                        "queued_for_client": mine,
                        "limit": self.per_client,
                        "waiting": len(self._waiters),
                    },
                )
            self._per_client[client] = mine + 1
            if self._busy:
                loop = asyncio.get_running_loop()
                waiter = (loop, loop.create_future())
                self._waiters.append(waiter)
            else:
                self._busy = True
        has_turn = waiter is None
        try:
            if waiter is not None:
                try:
                    await waiter[1]
                    has_turn = True
                except asyncio.CancelledError:
                    with self._lock:
                        if waiter in self._waiters:
                            self._waiters.remove(waiter)
                        else:  # the turn was handed over as we were cancelled: pass it on
                            has_turn = True
                    raise
            yield
        finally:
            if has_turn:
                self._release()
            with self._lock:
                left = self._per_client[client] - 1
                if left:
                    self._per_client[client] = left
                else:
                    del self._per_client[client]

    def _release(self) -> None:
        """Hand the turn to the next waiter whose loop is still running, or mark the lane free."""
        while True:
            with self._lock:
                if not self._waiters:
                    self._busy = False
                    return
                loop, future = self._waiters.popleft()
            try:
                loop.call_soon_threadsafe(_wake, future)
                return
            except RuntimeError:  # its event loop has closed: skip it
                continue


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
