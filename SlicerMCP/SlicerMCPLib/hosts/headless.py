"""The headless host: a Slicer scene without Slicer, served over stdio or HTTP.

`run_headless` is what `slicer-mcp serve --headless` runs: it bootstraps the slicer-core
wheel's MRML scene on the main thread, serves stdio or HTTP from a worker thread, and drains
the gateway on the main thread until the transport ends or a signal arrives.

The wheel gives MRML, the module logics and the displayable managers, but no `slicer.app`,
no `slicer.mrmlScene` and no Qt IO manager. `HeadlessApp` wires up what the scene tools
need, in the order Slicer's application does it: application logic, colour tables,
module logics registered by name, slice orientation presets, layout (which creates the
Red/Yellow/Green slice nodes and the 3D view node). Everything here must run on the
gateway's main thread.
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

import anyio

from ..core.config import Config
from ..core.errors import ErrorCode, SlicerMCPError
from ..core.gateway import LoopDriver, MainThreadGateway
from ..core.services import Services, hosted
from ..serving.auth import load_or_create_token, token_path
from ..serving.http_transport import mcp_http_server
from ..serving.server import build_server
from ..serving.stdio import serve_stdio
from ..tools.sdk_internals import lowlevel_server

if TYPE_CHECKING:
    from ..backends.mrml import MrmlBackend

log = logging.getLogger(__name__)

CPU_RAY_CAST = "vtkMRMLCPURayCastVolumeRenderingDisplayNode"


def slicer_core_version() -> str | None:
    try:
        return importlib.metadata.version("slicer-core")
    except importlib.metadata.PackageNotFoundError:
        return None


class HeadlessApp:
    """The scene, its application logic and the module logics a headless scene needs."""

    kind = "headless"
    gui = False

    def __init__(self) -> None:
        os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")
        try:
            import slicer
            import vtk
        except ImportError as exc:  # the headless extra is missing
            raise SlicerMCPError(
                "the headless scene needs the slicer-core wheel: pip install 'slicer-mcp[headless]' "
                f"(import failed: {exc})",
                code=ErrorCode.CONFIG_ERROR,
            ) from exc

        vtk.vtkObject.GlobalWarningDisplayOff()
        self.slicer = slicer
        self.scene = slicer.vtkMRMLScene()
        crosshair = slicer.vtkMRMLCrosshairNode()
        crosshair.SetCrosshairName("default")
        self.scene.AddNode(crosshair)

        self.app_logic = slicer.vtkSlicerApplicationLogic()
        self.app_logic.SetMRMLScene(self.scene)
        colors = self.app_logic.GetColorLogic()
        colors.SetMRMLScene(self.scene)
        colors.AddDefaultColorNodes()
        self.app_logic.SetSliceLogics(vtk.vtkCollection())
        self.app_logic.SetViewLogics(vtk.vtkCollection())
        self.color_logic = colors
        self.app_logic.SetModuleLogic("Colors", colors)

        self.volumes_logic = self._register(slicer.vtkSlicerVolumesLogic(), "Volumes")
        self.segmentations_logic = self._register(slicer.vtkSlicerSegmentationsModuleLogic(), "Segmentations")
        self.volume_rendering_logic = self._register_volume_rendering(slicer)
        self.markups_logic = self._register(slicer.vtkSlicerMarkupsLogic(), "Markups")

        slicer.vtkMRMLSliceNode.AddDefaultSliceOrientationPresets(self.scene, True)
        self.layout_logic = slicer.vtkMRMLLayoutLogic()
        self.layout_logic.SetMRMLApplicationLogic(self.app_logic)
        self.layout_logic.SetMRMLScene(self.scene)
        self.layout_node = self.layout_logic.GetLayoutNode()
        self.layout_node.SetViewArrangement(slicer.vtkMRMLLayoutNode.SlicerLayoutFourUpView)
        self.version = slicer_core_version()
        # slicer.util's pure-MRML helpers (getNode, addVolumeFromArray...) look for slicer.mrmlScene;
        # a process holds one headless scene, so the first one becomes it.
        if getattr(slicer, "mrmlScene", None) is None:
            slicer.mrmlScene = self.scene

    def _register(self, logic: Any, name: str) -> Any:
        logic.SetMRMLScene(self.scene)
        logic.SetMRMLApplicationLogic(self.app_logic)
        self.app_logic.SetModuleLogic(name, logic)
        return logic

    def _register_volume_rendering(self, slicer: Any) -> Any:
        """CPU ray casting: the GPU ray caster on a software OpenGL takes seconds per frame.

        The default method must be set before any default node exists, or only existing nodes change.
        """
        logic = slicer.vtkSlicerVolumeRenderingLogic()
        logic.SetDefaultRenderingMethod(CPU_RAY_CAST)
        return self._register(logic, "VolumeRendering")


def create_headless_backend(gateway: MainThreadGateway, config: Config) -> MrmlBackend:
    """A `MrmlBackend` on a fresh headless scene; call it on the gateway's main thread."""
    from ..backends.mrml import MrmlBackend

    if gateway.main_thread_ident is not None and not gateway.on_main_thread():
        raise RuntimeError("create_headless_backend must run on the gateway's main thread")
    app = HeadlessApp()
    log.info("headless scene ready (slicer-core %s)", app.version)
    return MrmlBackend(gateway, config, app)


_watchdog_sockets: list[socket.socket] = []
STDIN_CLOSED = b"\x00"  # not a signal number: what `stop_soon` writes to the watchdog


def exit_after_grace_on_signal(grace_s: float) -> Callable[[], None]:
    """After SIGTERM/SIGINT the process ends within `grace_s`, whatever the main thread is doing.

    The Python-level handler (a clean stop) runs only when the main thread next runs bytecode,
    which code stuck in one C call (a `time.sleep` in execute_python, a C loop) never does. CPython's
    C-level handler writes the signal number to the wakeup fd at once, though: a watchdog thread
    reading it gives the clean stop `grace_s` seconds, then exits with os._exit. Main thread only.
    Returns `stop_soon()`, which arms the same watchdog for a stop that is not a signal (stdin closed).
    """
    reader, writer = socket.socketpair()
    writer.setblocking(False)
    signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
    _watchdog_sockets[:] = [reader, writer]  # kept open for the life of the process

    def watch() -> None:
        got = reader.recv(1)
        signum = got[0] if got else signal.SIGTERM
        time.sleep(grace_s)
        what = f"signal {signum}" if signum else "stdin closed"
        log.error("still running %.1f s after %s (code stuck in a C call?): exiting now", grace_s, what)
        logging.shutdown()
        os._exit(128 + signum if signum else 1)

    def stop_soon() -> None:
        try:
            writer.send(STDIN_CLOSED)
        except OSError:  # the buffer is full: a signal is already pending
            pass

    threading.Thread(target=watch, name="slicer-mcp-signal-watchdog", daemon=True).start()
    return stop_soon


def run_headless(config: Config, transport: Literal["stdio", "http"], demo: bool = False) -> int:
    gateway = MainThreadGateway()
    driver = LoopDriver(gateway)
    driver.start()  # this (main) thread is now the scene thread
    backend = create_headless_backend(gateway, config)
    if demo:
        from ..scene.demo import load_demo_scene

        gateway.call(lambda: load_demo_scene(backend))

    def stop(signum: int, _frame: object) -> None:
        log.info("signal %d: stopping", signum)
        driver.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    stop_soon = exit_after_grace_on_signal(config.limits.python_stop_grace_s)
    # on this (the scene's) thread: closing the backend's helpers runs inline here
    with hosted(Services(config=config, backend=backend)) as services:
        server = build_server(services)
        if transport == "stdio":
            return _serve_stdio(server, driver, stop_soon)
        return _serve_http(server, config, driver)


def _serve_stdio(server, driver: LoopDriver, stop_soon: Callable[[], None]) -> int:
    """Serve stdio on a worker thread; when stdin ends, the scene loop stops and the process
    exits within `limits.python_stop_grace_s` even if the main thread is stuck in a call."""
    failure: list[BaseException] = []
    lowlevel = lowlevel_server(server)

    def client_gone() -> None:
        stop_soon()
        driver.stop()

    def run() -> None:
        try:
            anyio.run(serve_stdio, lowlevel, lowlevel.create_initialization_options(), client_gone)
        except BaseException as exc:  # reported on the main thread
            failure.append(exc)
        finally:
            driver.wake()

    worker = threading.Thread(target=run, name="slicer-mcp-stdio", daemon=True)
    worker.start()
    driver.run(until=lambda: not worker.is_alive())
    if failure:
        log.error("stdio transport failed: %s", failure[0])
        return 1
    return 0


def _serve_http(server, config: Config, driver: LoopDriver) -> int:
    path = token_path(config.server)
    token = load_or_create_token(path)
    http = mcp_http_server(server, config.server, token).start()
    print(
        f"slicer-mcp: serving MCP at {http.url}\n"
        f"slicer-mcp: bearer token in {path} (send 'Authorization: Bearer <token>')\n"
        "slicer-mcp: press Ctrl+C to stop",
        file=sys.stderr,
        flush=True,
    )
    try:
        driver.run()
    finally:
        http.stop()
    return 0
