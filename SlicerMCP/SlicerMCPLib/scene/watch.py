"""Watching a vtkMRMLScene for changes, whoever makes them: a tool, the Slicer user or Python.

`SceneWatcher` observes the scene's NodeAddedEvent / NodeRemovedEvent / EndCloseEvent /
EndImportEvent and each data node's ModifiedEvent. VTK calls the observers on the thread that
changed the scene, which is always the main thread. The callbacks only note what changed
(node ids, whether the set of nodes changed) under a lock and tell the listeners; they never
do work on the main thread. Readers on any thread take the notes (`take`) and a snapshot of
node ids, names and classes (`names`): completions read names here without a scene call.
Application nodes (views, cameras, colour tables, singletons) are not watched for
modification: a user rotating the 3D view would report the camera 60 times a second.
"""

from __future__ import annotations

from typing import Any

from ..core.scene_backend import ChangeNotes, NodeName
from .nodes import is_application_node


class SceneWatcher(ChangeNotes):
    """Notes of what changed in `scene` since the last `take`; create and close on the main thread."""

    _SET_EVENTS = ("EndImportEvent", "EndRestoreEvent", "EndCloseEvent")

    def __init__(self, scene: Any):
        import vtk

        super().__init__()
        self.scene = scene
        self._names: dict[str, NodeName] = {}
        self._watched: dict[str, tuple[Any, int]] = {}  # node id -> (node, ModifiedEvent tag)

        @vtk.calldata_type(vtk.VTK_OBJECT)
        def added(_scene: Any, _event: str, node: Any) -> None:
            if node is not None:
                self._add(node)
                self._note(node.GetID(), node.GetClassName(), set_changed=True)

        @vtk.calldata_type(vtk.VTK_OBJECT)
        def removed(_scene: Any, _event: str, node: Any) -> None:
            if node is None:
                return
            key = node.GetID()
            entry = self._watched.pop(key, None)
            if entry is not None:
                entry[0].RemoveObserver(entry[1])
            with self._lock:
                self._names.pop(key, None)
            self._note(key, node.GetClassName(), set_changed=True)

        self._tags = [
            scene.AddObserver(scene.NodeAddedEvent, added),
            scene.AddObserver(scene.NodeRemovedEvent, removed),
        ]
        self._tags += [scene.AddObserver(getattr(scene, e), self._resync) for e in self._SET_EVENTS]
        self._resync()

    # -- main thread -------------------------------------------------------------------------------
    def _add(self, node: Any) -> None:
        key = node.GetID()
        with self._lock:
            data = not is_application_node(node)
            self._names[key] = NodeName(key, node.GetName() or "", node.GetClassName(), data)
        if key not in self._watched and data:
            self._watched[key] = (node, node.AddObserver("ModifiedEvent", self._modified_event))

    def _modified_event(self, node: Any, _event: str) -> None:
        key = node.GetID()
        name = node.GetName() or ""
        with self._lock:
            known = self._names.get(key)
            if known is not None and known.name != name:
                self._names[key] = known._replace(name=name)
        self._note(key, node.GetClassName(), set_changed=known is not None and known.name != name)

    def _resync(self, *_: Any) -> None:
        """After a close, an import or a restore: rebuild the notes from the scene as it is."""
        present = {node.GetID(): node for node in self.scene.GetNodes()}
        for key in [k for k, (node, _) in self._watched.items() if present.get(k) is not node]:
            node, tag = self._watched.pop(key)
            node.RemoveObserver(tag)
        with self._lock:
            self._names = {}
        for node in present.values():
            self._add(node)
        self._note(None, None, set_changed=True)

    def close(self) -> None:
        for tag in self._tags:
            self.scene.RemoveObserver(tag)
        for node, tag in self._watched.values():
            node.RemoveObserver(tag)
        self._watched.clear()
        self._listeners.clear()

    # -- any thread --------------------------------------------------------------------------------
    def names(self) -> list[NodeName]:
        with self._lock:
            return list(self._names.values())
