"""Hosting the server outside Slicer: the main thread drives the scene, MCP runs on a worker.

`run_headless` is what `slicer-mcp serve --headless` runs: it bootstraps the slicer-core
scene on the main thread, serves stdio or HTTP from a worker thread, and drains the
gateway on the main thread until the transport ends or a signal arrives.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from typing import Literal

import anyio

from .auth import load_or_create_token, token_path
from .config import Config
from .gateway import LoopDriver, MainThreadGateway
from .http_transport import HttpServer
from .server import build_server
from .services import Services

log = logging.getLogger(__name__)


def run_headless(config: Config, transport: Literal["stdio", "http"], demo: bool = False) -> int:
    from .headless import create_headless_backend

    gateway = MainThreadGateway()
    driver = LoopDriver(gateway)
    driver.start()  # this (main) thread is now the scene thread
    backend = create_headless_backend(gateway, config)
    if demo:
        from .demo import load_demo_scene

        gateway.call(lambda: load_demo_scene(backend))
    services = Services(config=config, backend=backend)
    server = build_server(services)

    def stop(signum: int, _frame: object) -> None:
        log.info("signal %d: stopping", signum)
        driver.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        if transport == "stdio":
            return _serve_stdio(server, driver)
        return _serve_http(server, config, driver)
    finally:
        gateway.call(lambda: anyio.run(services.close))


def _serve_stdio(server, driver: LoopDriver) -> int:
    failure: list[BaseException] = []

    def run() -> None:
        try:
            anyio.run(server.run_stdio_async)
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
    http = HttpServer(server, config.server, token).start()
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
