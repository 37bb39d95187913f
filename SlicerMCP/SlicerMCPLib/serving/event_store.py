"""The SSE event store that lets a streamable HTTP client resume a stream it lost.

With an event store the SDK opens each POST's SSE stream with a priming event (an id, empty
data, and the `retry` field: how long the client waits before reconnecting) and stores every
message it sends; a client reconnecting with `Last-Event-ID` gets what it missed. The SDK
ships the interface only. This one keeps the last `keep` events in memory: a lost stream of a
long retrieve resumes; nothing is written to disk (events may carry results with PHI).
Handshake-era streams only: the 2026-07-28 wire has no resumption.
"""

from __future__ import annotations

import collections
import itertools
import threading

from mcp.server.streamable_http import EventCallback, EventId, EventMessage, EventStore, StreamId
from mcp_types import JSONRPCMessage

RETRY_MS = 1000  # the `retry` field of the priming event


class MemoryEventStore(EventStore):
    """The newest `keep` events of every stream, in order; older ones are forgotten."""

    def __init__(self, keep: int = 2000):
        self._events: collections.OrderedDict[int, tuple[StreamId, JSONRPCMessage | None]] = (
            collections.OrderedDict()
        )
        self._ids = itertools.count(1)
        self._keep = keep
        self._lock = threading.Lock()

    async def store_event(self, stream_id: StreamId, message: JSONRPCMessage | None) -> EventId:
        with self._lock:
            event_id = next(self._ids)
            self._events[event_id] = (stream_id, message)
            while len(self._events) > self._keep:
                self._events.popitem(last=False)
        return str(event_id)

    async def replay_events_after(
        self, last_event_id: EventId, send_callback: EventCallback
    ) -> StreamId | None:
        try:
            last = int(last_event_id)
        except ValueError:
            return None
        with self._lock:
            known = self._events.get(last)
            if known is None:
                return None
            stream_id = known[0]
            later = [
                (i, m) for i, (s, m) in self._events.items() if i > last and s == stream_id and m is not None
            ]
        for event_id, message in later:
            await send_callback(EventMessage(message, str(event_id)))
        return stream_id
