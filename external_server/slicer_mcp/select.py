"""Which backend `slicer-mcp serve` uses, and hosting the two that need no scene of their own.

Without `--backend` or `--headless`: (a) the SlicerMCP server inside Slicer when its endpoint file
names a live process, (b) else Slicer's WebServer when `/slicer/system/version` at `--webserver-url`
answers with Slicer's version record, (c) else nothing: a message saying how to start one, and exit
code 2. `--headless` means a headless scene of our own, whatever answers on the WebServer port: it
must never receive execute_python source or file paths it was not chosen for.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import anyio

from SlicerMCPLib.core.config import Config
from SlicerMCPLib.serving.endpoint import Endpoint, read_endpoint

log = logging.getLogger(__name__)

BackendName = Literal["proxy", "webserver", "headless"]
EXIT_NO_BACKEND = 2

NO_BACKEND_MESSAGE = """\
slicer-mcp: found no Slicer to connect to.
  - In 3D Slicer, open the SlicerMCP module and click Start (best: every tool, images, progress); or
  - In 3D Slicer, open the Web Server module (Modules > Servers > Web Server) and click
    'Start server' (listens on {url}; for measure_volume and execute_python also check
    Advanced > 'Slicer API exec' before starting); or
  - run 'slicer-mcp --headless' for a scene of its own, without Slicer.
Use --backend proxy|webserver|headless to force one, --webserver-url URL for another WebServer port."""


@dataclass
class Choice:
    backend: BackendName | None
    reason: str
    endpoint: Endpoint | None = None


def choose_backend(forced: BackendName | None, headless_flag: bool, webserver_url: str) -> Choice:
    """Apply the selection order; a forced backend is returned even when it looks unavailable."""
    from SlicerMCPLib.backends.webserver_http import probe_version

    if forced == "headless":
        return Choice("headless", "forced with --backend headless")
    if forced is None and headless_flag:
        # --headless means headless: never hand execute_python source or file paths to whatever answers
        # on the WebServer port.
        return Choice("headless", "--headless")
    if forced in (None, "proxy"):
        endpoint = read_endpoint()
        if endpoint is not None:
            return Choice(
                "proxy", f"SlicerMCP server in Slicer (pid {endpoint.pid}) at {endpoint.url}", endpoint
            )
        if forced == "proxy":
            return Choice(None, "--backend proxy: no running SlicerMCP server (no live endpoint file)")
    if forced == "webserver":
        return Choice("webserver", f"forced with --backend webserver ({webserver_url})")
    if forced is None:
        version = probe_version(webserver_url)
        if version is not None and isinstance(version.get("applicationVersion"), str):
            found = f"Slicer {version.get('applicationVersion', '?')} WebServer at {webserver_url}"
            return Choice("webserver", found)
    return Choice(None, "no SlicerMCP server, no WebServer, no --headless")


def _reasons(exc: BaseException) -> str:
    """What went wrong, from the leaves of exception groups (anyio wraps failures in task groups)."""
    if isinstance(exc, BaseExceptionGroup):
        return "; ".join(dict.fromkeys(_reasons(e) for e in exc.exceptions))
    return str(exc) or type(exc).__name__


def _until_signal(
    run: Callable[[Callable[[], None]], object], failed: str = "bridge stopped", grace_s: float = 5.0
) -> int:
    """Run `run(stop_soon)` (an anyio entry point) on a worker thread; SIGTERM/SIGINT end the process
    cleanly, and so does `stop_soon()` (stdin closed), by force `2 * grace_s` later at the latest.

    A failure is reported on stderr as `failed` followed by its reasons; the exit code is then 1."""
    done = threading.Event()
    failure: list[BaseException] = []

    def target() -> None:
        try:
            run(stop_soon)
        except BaseException as exc:  # reported on the main thread
            failure.append(exc)
        finally:
            done.set()

    def stop(signum: int, _frame: object) -> None:
        log.info("signal %d: stopping", signum)
        done.set()

    def stop_soon() -> None:
        """stdin closed: the cancelled calls get `grace_s` to end (one blocking a thread cannot be
        cancelled), then the clean stop as long again (closing a backend waits for its request)."""

        def force() -> None:
            log.error(
                "still running %.1f s after stdin closed (a call that cannot be cancelled): exiting now",
                2 * grace_s,
            )
            logging.shutdown()
            os._exit(1)

        for delay, then in ((grace_s, done.set), (2 * grace_s, force)):
            timer = threading.Timer(delay, then)
            timer.daemon = True
            timer.start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    worker = threading.Thread(target=target, name="slicer-mcp-bridge", daemon=True)
    worker.start()
    while not done.wait(0.5):
        pass
    if failure:
        reasons = _reasons(failure[0])
        log.error("%s: %s", failed, reasons)
        print(f"slicer-mcp: {failed}: {reasons}", file=sys.stderr)
        return 1
    return 0


def run_proxy(endpoint: Endpoint) -> int:
    from .proxy import serve_proxy_stdio

    failed = (
        f"the SlicerMCP server in Slicer at {endpoint.url} (pid {endpoint.pid}) did not answer or went away; "
        "restart it in the SlicerMCP module, then restart this client's connection"
    )
    return _until_signal(lambda stop_soon: anyio.run(serve_proxy_stdio, endpoint, stop_soon), failed)


def run_webserver(config: Config, transport: Literal["stdio", "http"], url: str) -> int:
    """Serve the tool catalog with the WebServer backend; no scene here, so no main-thread gateway."""
    from SlicerMCPLib.backends.webserver import WebServerBackend
    from SlicerMCPLib.core.services import Services, hosted
    from SlicerMCPLib.serving.auth import load_or_create_token, token_path
    from SlicerMCPLib.serving.http_transport import mcp_http_server
    from SlicerMCPLib.serving.server import build_server
    from SlicerMCPLib.serving.stdio import serve_stdio
    from SlicerMCPLib.tools.sdk_internals import lowlevel_server

    with hosted(Services(config=config, backend=WebServerBackend(config, url))) as services:
        server = build_server(services)
        if transport == "stdio":
            lowlevel = lowlevel_server(server)
            options = lowlevel.create_initialization_options()
            return _until_signal(
                lambda stop_soon: anyio.run(serve_stdio, lowlevel, options, stop_soon),
                grace_s=config.limits.python_stop_grace_s,
            )
        path = token_path(config.server)
        http = mcp_http_server(server, config.server, load_or_create_token(path)).start()
        print(
            f"slicer-mcp: serving MCP at {http.url} (Slicer WebServer {url}); token in {path}",
            file=sys.stderr,
        )
        try:
            return _until_signal(lambda _: threading.Event().wait())
        finally:
            http.stop()
