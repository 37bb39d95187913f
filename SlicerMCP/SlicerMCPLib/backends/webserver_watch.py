"""Scene change notes for Slicer's WebServer, which sends no change events: polled while someone subscribes.

`WebServerWatcher` is the WebServer backend's `SceneChanges`. It looks at the scene only between
`watch` (a client subscribed to a scene resource or opened a listen stream for one) and `unwatch`
(the last one went away), every `webserver_poll_s` seconds, and turns what differs from its last
look into the same notes `scene.watch.SceneWatcher` takes from MRML observers: nodes added,
removed, renamed or modified, by our tools, the Slicer user or Python alike.

What one look costs Slicer (each request runs on Slicer's main thread and shows in the Web Server
module's log):
- with "Slicer API exec" on: one POST /slicer/exec that lists every node's id, name, class, MTime
  and whether it is a data node (`webserver_exec.nodes_source`);
- with exec off (Slicer's default): GET /slicer/mrml/ids and /slicer/mrml/names (added, removed,
  renamed), then /slicer/mrml/properties?id= for the MTime (vtkMRMLNode::PrintSelf prints it) of
  the data nodes a client subscribed to and of `POLL_CHECKS` more in turn, so a change to an
  unsubscribed node is seen within ceil(data nodes / POLL_CHECKS) looks. A node seen for the first
  time costs one properties request (its class, whether it is a data node) and the nine class
  queries of `WebServerBackend._application_ids`; every 30 s (`webserver.EXEC_RECHECK_S`) one
  /slicer/exec asks whether exec was turned on.
The MTime is what vtkObject::Modified() bumps, and vtkMRMLNode::Modified() calls it exactly when it
fires ModifiedEvent (Libs/MRML/Core/vtkMRMLNode.h at Slicer 583e9b3, lines 569-579; a batched
StartModify/EndModify fires once), the event the MRML observers report; vtkMRMLNode::PrintSelf
prints it (vtkMRMLNode.cxx, line 316), so /slicer/mrml/properties carries it as "MTime".
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection
from typing import Any

from ..core.scene_backend import ChangeNotes, NodeName
from ..scene.nodes import APPLICATION_CLASSES
from . import webserver_exec
from .webserver_props import class_of, is_listed

log = logging.getLogger(__name__)

POLL_CHECKS = 4  # data nodes not subscribed to whose MTime one exec-less look reads

Seen = dict[str, tuple[NodeName, int | None]]  # node id -> (id, name, class, data), MTime of data nodes


class WebServerWatcher(ChangeNotes):
    """Notes of what changed in Slicer's scene since the last `take`, by polling its WebServer."""

    def __init__(self, reader: Any, interval_s: float):
        # a WebServerBackend of its own, over an HTTP client that does not retry (typed Any:
        # webserver.py imports this module)
        super().__init__()
        self.reader = reader
        self.interval_s = interval_s
        self._seen: Seen = {}
        self._based = False  # a first look succeeded since watching started
        self._wanted: frozenset[str] = frozenset()
        self._turn = 0  # where the next round of MTime checks starts among the data nodes
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready: asyncio.Event | None = None
        self._failing = False
        self.looks = 0  # looks that reached Slicer (tests)

    # -- SceneChanges ------------------------------------------------------------------------------
    async def watch(self, node_ids: frozenset[str]) -> None:
        self._wanted = frozenset(node_ids)
        loop = asyncio.get_running_loop()
        if self._task is None or self._task.done() or self._loop is not loop:
            self.unwatch()
            self._loop, self._ready = loop, asyncio.Event()
            self._task = loop.create_task(self._run(self._ready), name="slicer-mcp-webserver-poll")
        assert self._ready is not None
        await self._ready.wait()  # the first look is the baseline: a change made after this is seen

    def unwatch(self) -> None:
        task, loop = self._task, self._loop
        self._task = self._loop = self._ready = None
        if task is not None and loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(task.cancel)
        with self._lock:
            self._seen, self._based = {}, False
            self._modified, self._set_changed = {}, False

    def live(self) -> bool:
        return self._task is not None and self._based

    def names(self) -> list[NodeName]:
        with self._lock:
            return [name for name, _ in self._seen.values()]

    # -- polling ------------------------------------------------------------------------------------
    async def _run(self, ready: asyncio.Event) -> None:
        try:
            await self._look()
        finally:
            ready.set()
        while True:
            await asyncio.sleep(self.interval_s)
            await self._look()

    async def _look(self) -> None:
        try:
            seen = await self._snapshot()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # Slicer busy, gone or not Slicer: say so once, try again next time
            if not self._failing:
                log.warning("cannot poll Slicer's WebServer for scene changes: %s", exc)
            self._failing = True
            return
        if self._failing:
            log.info("polling Slicer's WebServer for scene changes again")
        self._failing = False
        self.looks += 1
        if self._compare(seen):
            self._tell()

    def _compare(self, seen: Seen) -> bool:
        """Compare with the last look; returns whether there is something to report."""
        with self._lock:
            before, based = self._seen, self._based
            self._seen, self._based = seen, True
            if not based:
                return False
            for node_id in before.keys() - seen.keys():
                self._modified[node_id] = before[node_id][0].class_name
                self._set_changed = True
            for node_id, (name, mtime) in seen.items():
                old = before.get(node_id)
                if old is None:
                    self._modified[node_id] = name.class_name
                    self._set_changed = True
                elif name.data and old[0].name != name.name:
                    self._modified[node_id] = name.class_name
                    self._set_changed = True
                elif name.data and mtime is not None and old[1] is not None and mtime != old[1]:
                    self._modified[node_id] = name.class_name
            return bool(self._modified) or self._set_changed

    async def _snapshot(self) -> Seen:
        timeout = self.reader.config.timeouts.scene_s
        rows = await self.reader._exec_if_enabled(webserver_exec.nodes_source(APPLICATION_CLASSES), timeout)
        if isinstance(rows, list):
            return {
                str(r[0]): (
                    NodeName(str(r[0]), str(r[1]), str(r[2]), bool(r[4])),
                    int(r[3]) if r[4] else None,
                )
                for r in rows
            }
        return await self._snapshot_without_exec()

    async def _snapshot_without_exec(self) -> Seen:
        names = await self.reader._names()
        with self._lock:
            before = dict(self._seen)
        seen: Seen = {}
        new = [i for i in names if i not in before]
        application = await self.reader._application_ids() if new else set()
        for node_id in new:
            props = (await self.reader._properties(id=node_id)).get(node_id)
            if props is None:  # removed since the listing: the next look will not list it
                continue
            data = is_listed(props) and node_id not in application
            mtime = props.get("MTime") if data and isinstance(props.get("MTime"), int) else None
            seen[node_id] = (NodeName(node_id, names[node_id], class_of(node_id, props), data), mtime)
        for node_id, name in names.items():
            if node_id in before:
                old, mtime = before[node_id]
                seen[node_id] = (old._replace(name=name), mtime)
        for node_id in self._to_check(seen, set(new)):
            props = (await self.reader._properties(id=node_id)).get(node_id)
            mtime = props.get("MTime") if props is not None else None
            if isinstance(mtime, int):
                seen[node_id] = (seen[node_id][0], mtime)
        return {i: seen[i] for i in names if i in seen}  # the scene's order

    def _to_check(self, seen: Seen, fresh: Collection[str]) -> list[str]:
        """Data nodes whose MTime this look reads: every subscribed one, then POLL_CHECKS more in turn."""
        data = [i for i, (name, _) in seen.items() if name.data and i not in fresh]
        wanted = [i for i in data if i in self._wanted]
        rest = [i for i in data if i not in self._wanted]
        if not rest:
            return wanted
        start = self._turn % len(rest)
        turn = (rest[start:] + rest[:start])[:POLL_CHECKS]
        self._turn = start + len(turn)
        return wanted + turn

    async def close(self) -> None:
        self.unwatch()
        self._listeners.clear()
        await self.reader.close()
