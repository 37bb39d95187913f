"""All scene work runs on ONE thread; a busy scene thread gives SLICER_TIMEOUT and no change."""

from __future__ import annotations

import asyncio
import threading
import time

from mcp import Client

from fixtures.scene import call_tool, error_of, make_labelmap, make_phantom_volume, scene_busy
from SlicerMCPLib.core.errors import ErrorCode
from SlicerMCPLib.scene import data_io, rendering
from SlicerMCPLib.scene import measure as mrml_measure
from SlicerMCPLib.scene import nodes as mrml_nodes


def test_scene_work_runs_on_one_thread(mcp_server, tmp_path, scene_thread, monkeypatch) -> None:
    seen: list[tuple[str, int]] = []

    def record(module, name):
        original = getattr(module, name)

        def wrapper(*args, **kwargs):
            seen.append((name, threading.get_ident()))
            return original(*args, **kwargs)

        monkeypatch.setattr(module, name, wrapper)

    record(mrml_nodes, "list_nodes")
    record(mrml_nodes, "details")
    record(data_io, "load_file")
    record(mrml_measure, "measure")
    record(rendering.SceneRenderer, "capture")

    volume = make_phantom_volume(tmp_path)
    labels = make_labelmap(tmp_path)

    async def main():
        async with Client(mcp_server) as client:
            loaded = await asyncio.gather(
                client.call_tool("load_volume", {"path": str(volume)}),
                client.call_tool("load_volume", {"path": str(labels), "labelmap": True}),
            )
            ids = [r.structured_content["nodes"][0]["id"] for r in loaded]
            calls = [client.call_tool("list_scene_nodes", {}) for _ in range(10)]
            calls += [client.call_tool("get_node", {"node_id": i}) for i in ids]
            calls += [client.call_tool("measure_volume", {"node_id": ids[1]})]
            calls += [
                client.call_tool("capture_screenshot", {"view_type": v}) for v in ("axial", "coronal", "3d")
            ]
            return await asyncio.gather(*calls)

    results = asyncio.run(main())
    assert not any(r.is_error for r in results), [r.content[0].text for r in results if r.is_error]
    assert {name for name, _ in seen} == {"list_nodes", "details", "load_file", "measure", "capture"}
    assert {ident for _, ident in seen} == {scene_thread.ident}
    assert scene_thread.ident != threading.get_ident()


def test_busy_scene_times_out_and_changes_nothing(mcp_server, tmp_path, scene_config, scene_thread) -> None:
    """A fault the real scene can't produce on demand: the scene thread is kept busy on purpose."""
    call_tool(mcp_server, "load_volume", {"path": str(make_phantom_volume(tmp_path))})
    scene_config.timeouts.scene_s = 0.3
    with scene_busy(scene_thread.gateway):
        started = time.perf_counter()
        body = error_of(call_tool(mcp_server, "clear_scene"))
        elapsed = time.perf_counter() - started
    assert body["code"] == ErrorCode.SLICER_TIMEOUT and body["details"]["started"] is False
    assert elapsed < 5
    scene_config.timeouts.scene_s = 30
    time.sleep(0.1)
    assert call_tool(mcp_server, "list_scene_nodes").structured_content["total"] == 1, (
        "the withdrawn clear never ran"
    )
