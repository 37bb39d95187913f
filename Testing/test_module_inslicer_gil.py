"""The module's server as inside Slicer: the main thread keeps the GIL while Qt idles (PythonQt).

The same `ServerController`, `QtDriver` and HTTP server as the module runs, on a slicer-core
scene, with the test's thread sitting in the GIL-holding Qt loop (fixtures/pythonqt_gil.py).
Clients run in their own process (fixtures/client_process.py), as Claude Code does, so they
never compete for this process's GIL. Without the driver's GIL lending these tests hang: the
server thread never gets to read the request.
"""

from __future__ import annotations

import socket
import threading
import time

import anyio
import numpy as np
import pytest

from fixtures.client_process import run_client_process
from fixtures.core import free_port
from fixtures.pythonqt_gil import hold_gil_in_c
from SlicerMCPLib.core.scene_backend import VolumeArray
from SlicerMCPLib.hosts.qt_driver import pyside6_api
from SlicerMCPLib.hosts.selftest import (
    SelfTestFailure,
    call_tools_over_http,
    check_module,
    panel_on_recording_view,
)

VOLUME = "GilLoopVolume"


def _add_volume(controller) -> str:
    volume = VolumeArray(
        np.arange(8 * 16 * 16, dtype=np.int16).reshape(8, 16, 16), np.diag([0.5, 0.5, 2.0, 1.0]), VOLUME
    )
    return anyio.run(controller.services.backend.add_volume, volume).id  # main thread: runs directly


def _record_scene_threads(gateway) -> set[int]:
    """The threads gateway work runs on, from now on."""
    seen: set[int] = set()
    original = gateway.drain

    def drain(budget_s: float = 0.005) -> int:
        seen.add(threading.get_ident())
        return original(budget_s)

    gateway.drain = drain
    return seen


def test_tool_calls_over_http_answer_while_the_main_thread_idles(gil_loop, qt_controller) -> None:
    status = qt_controller.start(port=0)
    node_id = _add_volume(qt_controller)
    seen = _record_scene_threads(qt_controller.gateway)
    plan = {
        "calls": [["list_scene_nodes", {"limit": 20}], ["capture_screenshot", {"view_type": "axial"}]],
        "warmup": 0,
    }
    out = gil_loop.run(lambda: run_client_process(status.url, status.token_file, plan), timeout_s=120)
    listed, shot = out["results"]
    assert not listed["is_error"], listed["text"]
    assert node_id in [n["id"] for n in listed["structured"]["nodes"]]
    assert not shot["is_error"], shot["text"]
    assert "image" in shot["content_types"]
    assert seen == {threading.get_ident()}, "scene work ran off the main thread"
    assert qt_controller._core.driver.stats.lends > 0  # the server thread ran because the driver lent the GIL


def test_a_call_sent_while_the_main_thread_is_busy_in_c_answers_after_it(gil_loop, qt_controller) -> None:
    status = qt_controller.start(port=0)
    node_id = _add_volume(qt_controller)
    busy: dict[str, float] = {}

    def block_two_seconds() -> None:  # scene work on the main thread that holds the GIL in C for 2 s
        busy["start"] = time.time()
        hold_gil_in_c(2.0)
        busy["end"] = time.time()

    blocker = threading.Thread(target=lambda: qt_controller.gateway.call(block_two_seconds, timeout=60))
    plan = {"calls": [["get_node", {"node_id": node_id}]], "warmup": 1, "delay_s": 0.3}
    out = gil_loop.run(
        lambda: run_client_process(status.url, status.token_file, plan, on_ready=blocker.start), timeout_s=120
    )
    blocker.join(30)
    (result,) = out["results"]
    assert busy["start"] < result["sent_at"] < busy["end"], (busy, result["sent_at"])  # sent during the block
    assert not result["is_error"], result["text"]
    assert result["structured"]["name"] == VOLUME  # and answered after it: nothing lost


def test_fifty_concurrent_calls_all_answer(gil_loop, qt_controller) -> None:
    status = qt_controller.start(port=0)
    node_id = _add_volume(qt_controller)
    calls = [
        ["list_scene_nodes", {"name": VOLUME}] if i % 2 else ["get_node", {"node_id": node_id}]
        for i in range(50)
    ]
    plan = {"calls": calls, "concurrency": 50, "warmup": 1}
    served_before = qt_controller.status().calls_served
    out = gil_loop.run(lambda: run_client_process(status.url, status.token_file, plan), timeout_s=180)
    results = out["results"]
    assert len(results) == 50
    assert all(not r["is_error"] for r in results), [r["text"] for r in results if r["is_error"]][:3]
    assert sum("nodes" in r["structured"] for r in results) == 25
    assert all(r["structured"]["name"] == VOLUME for r in results if "nodes" not in r["structured"])
    assert qt_controller.status().calls_served - served_before == 51  # the warm-up call and the 50


def test_start_stop_restart_under_the_gil_loop(gil_loop, qt_controller) -> None:
    plan = {"calls": [["list_scene_nodes", {"limit": 20}]]}
    first = qt_controller.start(port=free_port())
    out = gil_loop.run(lambda: run_client_process(first.url, first.token_file, plan), timeout_s=120)
    assert not out["results"][0]["is_error"]

    second = qt_controller.restart()
    assert second.running and second.port == first.port
    out = gil_loop.run(lambda: run_client_process(second.url, second.token_file, plan), timeout_s=120)
    assert not out["results"][0]["is_error"]

    qt_controller.stop()
    assert not qt_controller.status().running
    with socket.socket() as s:  # the port is free again
        s.bind(("127.0.0.1", second.port))
    driver = qt_controller._core.driver if qt_controller._core else None
    assert driver is None  # the driver stopped with the scene side


def test_selftest_client_runs_while_the_main_thread_processes_events_like_pythonqt(
    gil_loop, qt_controller
) -> None:
    """What SlicerMCPTest does in Slicer: an in-process client, the main thread calling processEvents()
    (which keeps the GIL under PythonQt) between short waits."""
    status = qt_controller.start(port=0)
    _add_volume(qt_controller)
    token = open(status.token_file).read().strip()
    (listed,) = call_tools_over_http(
        status.url, token, [("list_scene_nodes", {"name": VOLUME})], process_events=gil_loop.process_events
    )
    assert not listed.is_error
    assert listed.structured_content["nodes"][0]["name"] == VOLUME


def test_module_self_test_steps_pass_under_the_gil_loop(gil_loop, qt_controller, tmp_path) -> None:
    """SlicerMCPTest's first-run check (start, call over HTTP, panel refresh, stop), with the panel
    the test builds when the widget was never opened, and processEvents as PythonQt runs it."""
    from PySide6.QtCore import QSettings, QTimer

    store = QSettings(str(tmp_path / "slicer.ini"), QSettings.Format.IniFormat)
    presenter, shown = panel_on_recording_view(qt_controller, store, QTimer(), pyside6_api().connect_timeout)
    try:
        steps = check_module(qt_controller, presenter, shown, gil_loop.process_events)
    finally:
        presenter.close()
    assert [step.split(":")[0] for step in steps] == ["start", "tool call over HTTP", "panel refresh", "stop"]
    assert shown() == (False, "list_scene_nodes")


def test_module_self_test_names_the_failing_step(gil_loop, qt_controller, tmp_path) -> None:
    from PySide6.QtCore import QSettings, QTimer

    store = QSettings(str(tmp_path / "slicer.ini"), QSettings.Format.IniFormat)
    presenter, shown = panel_on_recording_view(qt_controller, store, QTimer(), pyside6_api().connect_timeout)
    try:
        with pytest.raises(SelfTestFailure, match="^tool call over HTTP: get_node failed"):
            check_module(
                qt_controller,
                presenter,
                shown,
                gil_loop.process_events,
                call=("get_node", {"node_id": "nope"}),
            )
    finally:
        presenter.close()


def test_http_server_says_when_its_thread_needs_to_run() -> None:
    """The probe the driver lends the GIL on: true while a request is handled or bytes wait unread,
    false when idle, and an open event stream alone does not count."""
    import asyncio

    import httpx

    from SlicerMCPLib.core.config import ServerSettings
    from SlicerMCPLib.core.http_server import HttpServer

    release = threading.Event()

    async def app(scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        stream = scope["method"] == "GET"
        await send({"type": "http.response.start", "status": 200, "headers": []})
        if stream:  # an event stream that stays open while idle
            await send({"type": "http.response.body", "body": b"data: x\n\n", "more_body": True})
        while not release.is_set():
            await asyncio.sleep(0.01)
        await send({"type": "http.response.body", "body": b"done"})

    server = HttpServer(app, ServerSettings(port=0)).start()
    try:
        assert not server.needs_to_run()
        with httpx.Client(timeout=30) as client:
            with client.stream(
                "GET", f"http://127.0.0.1:{server.port}/", headers={"Accept": "text/event-stream"}
            ):
                deadline = time.monotonic() + 10
                while server.open_connections < 1 and time.monotonic() < deadline:
                    time.sleep(0.01)
                time.sleep(0.1)
                assert not server.needs_to_run()  # the idle stream is not work
                poster = threading.Thread(
                    target=lambda: httpx.post(f"http://127.0.0.1:{server.port}/", timeout=30)
                )
                poster.start()
                deadline = time.monotonic() + 10
                while not server.needs_to_run() and time.monotonic() < deadline:
                    time.sleep(0.01)
                assert server.needs_to_run()  # a request being handled
                release.set()
                poster.join(10)
        deadline = time.monotonic() + 10
        while server.needs_to_run() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not server.needs_to_run()
    finally:
        release.set()
        server.stop()


def test_analysis_tools_run_on_the_main_thread_under_the_gil_loop(gil_loop, qt_controller) -> None:
    status = qt_controller.start(port=0)
    volume_id = _add_volume(qt_controller)
    seen = _record_scene_threads(qt_controller.gateway)
    seg_id = "vtkMRMLSegmentationNode1"  # the scene's first segmentation
    plan = {
        "calls": [
            ["create_segmentation", {"volume_id": volume_id, "segments": ["bright"]}],
            [
                "segment_threshold",
                {"segmentation_id": seg_id, "segment": "bright", "lower": 1000, "upper": 5000},
            ],
            ["segment_statistics", {"segmentation_id": seg_id, "surface": False}],
            ["place_markup", {"type": "line", "points": [[0, 0, 0], [0, 3, 4]]}],
            ["undo_last_edit", {}],
        ],
        "warmup": 0,
    }
    out = gil_loop.run(lambda: run_client_process(status.url, status.token_file, plan), timeout_s=120)
    for result in out["results"]:
        assert not result["is_error"], result["text"]
    created, threshold, stats, line, undo = (r["structured"] for r in out["results"])
    assert created["segmentation_id"] == seg_id
    assert threshold["changes"][0]["voxels_after"] == 8 * 16 * 16 - 1000  # the voxels holding 1000..2047
    assert stats["segments"][0]["min"] == 1000 and stats["segments"][0]["max"] == 8 * 16 * 16 - 1
    assert line["length_mm"] == 5.0
    assert undo["undone"] == "place_markup"
    assert seen == {threading.get_ident()}, "scene work ran off the main thread"
