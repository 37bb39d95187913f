"""The MCP server inside Slicer: one controller the module logic and the Python console share.

`ServerController.start()` (on Slicer's main thread) builds the services on the MRML
scene, the tool catalog, the Qt gateway driver and the HTTP transport on a worker
thread, then writes the endpoint file for the stdio bridge. `stop()` undoes all of it,
so start/stop/restart leave no thread, port or file behind. `call_tool()` runs any tool
from the console without a client; while it waits, the calling (main) thread keeps
draining the gateway, so tools that hand scene work back to the main thread still finish.

Nothing here imports Slicer: the scene backend and the driver are injected, which is
how the tests run it with a slicer-core scene and PySide6.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import anyio
from pydantic import ValidationError

from ..core.config import ALLOW_KEYS, Config, ServerSettings, load_config
from ..core.errors import ConfigError, ErrorCode, SlicerMCPError
from ..core.gateway import Driver, MainThreadGateway
from ..core.http_server import HttpServer
from ..core.localhost import user_config_dir, write_private_file
from ..core.scene_backend import SceneBackend
from ..core.services import Services, hosted
from ..dicom.phi import keep_phi_out_of_logs
from ..serving.auth import load_or_create_token, token_path
from ..serving.endpoint import endpoint_path, remove_endpoint, write_endpoint
from ..serving.http_transport import mcp_http_server
from ..serving.server import SlicerMCPServer, build_server
from ..tools.sdk_internals import open_session_count

log = logging.getLogger(__name__)

BackendFactory = Callable[[MainThreadGateway, Config], SceneBackend]
DriverFactory = Callable[[MainThreadGateway], Driver]
SESSION_TOKEN_FILE = "session-token"
STDIO_COMMAND = "claude mcp add slicer -- slicer-mcp"


def slicer_backend(gateway: MainThreadGateway, config: Config) -> SceneBackend:
    """The MRML backend on the running Slicer's scene (`slicer.mrmlScene`)."""
    from ..backends.mrml import MrmlBackend
    from ..scene.app import SlicerGuiApp

    return MrmlBackend(gateway, config, SlicerGuiApp())


def qt_driver(gateway: MainThreadGateway) -> Driver:
    from .qt_driver import QtDriver

    return QtDriver(gateway)


def http_command(url: str, token: str) -> str:
    """The Claude Code command that connects straight to this server over HTTP."""
    return f'claude mcp add --transport http slicer {url} --header "Authorization: Bearer {token}"'


@dataclass(frozen=True)
class ServerStatus:
    """What the panel and `logic.status()` show."""

    running: bool
    url: str | None = None
    port: int | None = None
    clients: int = 0
    calls_served: int = 0
    started_at: float | None = None
    token_file: str | None = None
    endpoint_file: str | None = None
    config_path: str | None = None
    allow: dict[str, bool] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class RisStatus:
    """The mini-RIS services this Slicer serves (worklist/MPPS over DICOM, REST API)."""

    running: bool
    ae_title: str | None = None
    mwl_host: str | None = None
    mwl_port: int | None = None
    api_url: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Core:
    """Everything that lives while the scene side is up (with or without HTTP)."""

    config: Config
    config_path: str | None
    gateway: MainThreadGateway
    driver: Driver
    services: Services
    server: SlicerMCPServer
    exit: ExitStack  # leaving it closes the services (entered once, in _ensure_core)


class ServerController:
    """Start, stop and inspect the in-Slicer MCP server; call its tools directly."""

    def __init__(
        self,
        backend_factory: BackendFactory = slicer_backend,
        driver_factory: DriverFactory = qt_driver,
    ):
        self._backend_factory = backend_factory
        self._driver_factory = driver_factory
        self._core: _Core | None = None
        self._http: HttpServer | None = None
        self._token: str | None = None
        self._token_file: Path | None = None
        self._session_token_file: Path | None = None
        self._started_at: float | None = None
        self._last_start: dict[str, Any] = {}
        self._ris_api: HttpServer | None = None
        self._lock = threading.RLock()

    # -- lifecycle (main thread) -------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._http is not None and self._http.running

    def start(
        self,
        port: int | None = None,
        token: str | None = None,
        config_path: str | os.PathLike[str] | None = None,
        allow: Mapping[str, bool] | None = None,
    ) -> ServerStatus:
        """Serve MCP over HTTP on 127.0.0.1 (`port` 0 = any free port); returns the status.

        `token` replaces the token file's token for this run only; `allow` overrides the
        config's allow switches (the panel's toggles).
        """
        with self._lock:
            if self.running:
                return self.status()
            self._last_start = {"port": port, "token": token, "config_path": config_path, "allow": allow}
            core = self._ensure_core(config_path, port=port, allow=allow)
            settings = core.config.server
            if token is not None:
                if len(token) < 16:
                    raise ConfigError("the token must be at least 16 characters long")
                self._session_token_file = user_config_dir() / SESSION_TOKEN_FILE
                write_private_file(self._session_token_file, token)
                self._token, self._token_file = token, self._session_token_file
            else:
                self._token_file = token_path(settings)
                self._token = load_or_create_token(self._token_file)
            try:
                self._http = mcp_http_server(core.server, settings, self._token).start()
            except SlicerMCPError as exc:
                self._drop_session_token()
                raise _in_slicer_words(exc) from exc
            except BaseException:
                self._drop_session_token()
                raise
            self._started_at = time.time()
            _watch(core.driver, self._http)
            try:
                write_endpoint(self._http.url, self._http.port or 0, self._token_file)
            except OSError as exc:  # a server nobody can discover is still a server: say so, keep it
                log.warning(
                    "could not write the endpoint file (the stdio bridge will not find Slicer): %s", exc
                )
            log.info("SlicerMCP serving at %s", self._http.url)
            return self.status()

    def stop(self) -> None:
        """Stop serving and release the scene side; safe to call when already stopped."""
        with self._lock:
            self.stop_ris()
            http, self._http = self._http, None
            if http is not None:
                remove_endpoint()
                if self._core is not None:
                    _unwatch(self._core.driver, http)
                self._while_draining(http.stop)
                log.info("SlicerMCP stopped")
            self._drop_session_token()
            self._started_at = None
            core, self._core = self._core, None
            if core is not None:
                try:
                    core.exit.close()
                finally:
                    core.driver.stop()

    def restart(self, **changes: Any) -> ServerStatus:
        """Stop, then start again with the last start's arguments updated by `changes`."""
        with self._lock:
            args = {**self._last_start, **changes}
            self.stop()
            return self.start(**args)

    def shutdown_at_exit(self) -> None:
        """Last-resort cleanup when the interpreter exits without `stop()`: no Qt, no scene."""
        http, self._http = self._http, None
        if http is not None:
            remove_endpoint()
            http.stop(timeout=2.0)
        self._drop_session_token()

    # -- what the panel shows ----------------------------------------------------------------------
    def status(self) -> ServerStatus:
        core, http = self._core, self._http
        running = http is not None and http.running
        return ServerStatus(
            running=running,
            url=http.url if running and http else None,
            port=http.port if running and http else None,
            clients=self._client_count() if running else 0,
            calls_served=core.services.call_log.calls_served if core else 0,
            started_at=self._started_at,
            token_file=str(self._token_file) if running and self._token_file else None,
            endpoint_file=str(endpoint_path()) if running else None,
            config_path=core.config_path if core else None,
            allow=core.config.allow.model_dump() if core else {},
        )

    @property
    def services(self) -> Services | None:
        return self._core.services if self._core else None

    @property
    def gateway(self) -> MainThreadGateway | None:
        return self._core.gateway if self._core else None

    def http_command(self) -> str:
        """`claude mcp add --transport http ...` for the running server (with its token)."""
        if not self.running or self._http is None or self._token is None:
            raise SlicerMCPError(
                "start the server first; the command needs its URL and token", code=ErrorCode.CONFIG_ERROR
            )
        return http_command(self._http.url, self._token)

    @staticmethod
    def stdio_command() -> str:
        """The stdio bridge: `slicer-mcp` finds the running Slicer through the endpoint file."""
        return STDIO_COMMAND

    def set_allowed(self, operation: str, enabled: bool) -> None:
        """Turn a gated operation on or off for the running server (the panel's toggles)."""
        if operation not in ALLOW_KEYS:
            raise SlicerMCPError(
                f"unknown operation {operation!r}; one of {', '.join(ALLOW_KEYS)}",
                code=ErrorCode.INVALID_PARAMETER,
            )
        if self._core is not None:
            setattr(self._core.config.allow, operation, bool(enabled))
        allow = dict(self._last_start.get("allow") or {})
        allow[operation] = bool(enabled)
        self._last_start["allow"] = allow

    # -- mini-RIS services -------------------------------------------------------------------------
    def start_ris(
        self, mwl_port: int | None = None, api_port: int | None = None, api: bool = True
    ) -> RisStatus:
        """Serve the mini-RIS worklist (MWL) and MPPS over DICOM, and its REST API, from this Slicer.

        The same RIS the MCP tools use (one store); pynetdicom and uvicorn run on their own threads,
        never on the main thread. Ports default to mini_ris.mwl_port / api_port (0 = any free port);
        the API takes the MCP server's bearer token.
        """
        from ..ris.api import serve_api
        from ..ris.service import RisService

        with self._lock:
            core = self._ensure_core(self._last_start.get("config_path"), allow=self._last_start.get("allow"))
            service = core.services.domain(RisService)
            service.start_scp(mwl_port)
            if api and self._ris_api is None:
                token = self._token or load_or_create_token(token_path(core.config.server))
                self._ris_api = serve_api(service, core.config, token, api_port)
                _watch(core.driver, self._ris_api)
            return self.ris_status()

    def stop_ris(self) -> None:
        """Stop the worklist/MPPS SCP and the REST API; the RIS data stay in their database."""
        from ..ris.service import RisService

        with self._lock:
            api, self._ris_api = self._ris_api, None
            if api is not None:
                if self._core is not None:
                    _unwatch(self._core.driver, api)
                api.stop()
            if self._core is not None and self.ris_status().running:
                self._core.services.domain(RisService).close()

    def ris_status(self) -> RisStatus:
        from ..ris.service import RisService

        core = self._core
        scp = core.services.domain(RisService).scp if core else None
        if scp is None:
            return RisStatus(running=False)
        api = self._ris_api
        return RisStatus(
            running=True,
            ae_title=scp.ae_title,
            mwl_host=scp.host,
            mwl_port=scp.port,
            api_url=f"http://{api.settings.host}:{api.port}/ris/api/worklist" if api else None,
        )

    # -- console API -------------------------------------------------------------------------------
    def call_tool(self, name: str, arguments: Mapping[str, Any] | None = None) -> Any:
        """Run tool `name` as a client would; returns its structured result (or its content).

        A tool error is raised as SlicerMCPError with the tool's code, message and details.
        Works whether or not the HTTP server is running.
        """
        core = self._ensure_core(self._last_start.get("config_path"), allow=self._last_start.get("allow"))
        result = _while_draining(
            core.gateway, lambda: anyio.run(core.server.call_tool, name, dict(arguments or {}))
        )
        return tool_output(result)

    # -- internals ---------------------------------------------------------------------------------
    def _ensure_core(
        self,
        config_path: str | os.PathLike[str] | None,
        port: int | None = None,
        allow: Mapping[str, bool] | None = None,
    ) -> _Core:
        with self._lock:
            overrides: dict[str, Any] = {}
            if port is not None:
                overrides["server"] = {"port": int(port)}
            if allow:
                overrides["allow"] = {k: bool(v) for k, v in allow.items()}
            path = str(config_path) if config_path else None
            if self._core is not None and self._core.config_path == path:
                if port is not None:
                    self._core.config.server = _with_port(self._core.config.server, int(port))
                for key, value in (allow or {}).items():
                    self.set_allowed(key, value)
                return self._core
            if self._core is not None:  # another config file: rebuild the scene side
                self.stop()
            keep_phi_out_of_logs()
            config = load_config(path, overrides=overrides)
            gateway = MainThreadGateway()
            driver = self._driver_factory(gateway)
            driver.start()  # binds this (main) thread
            try:
                backend = self._backend_factory(gateway, config)
            except BaseException:
                driver.stop()
                raise
            exit = ExitStack()
            services = exit.enter_context(
                hosted(Services(config=config, backend=backend), _async_runner(gateway))
            )
            self._core = _Core(config, path, gateway, driver, services, build_server(services), exit)
            return self._core

    def _while_draining(self, fn: Callable[[], Any]) -> Any:
        core = self._core
        return _while_draining(core.gateway if core else None, fn)

    def _client_count(self) -> int:
        """Connected MCP clients: sessions of the 2025 protocol, else open HTTP connections.

        Clients of the 2026 protocol hold no session (each request stands alone), so the
        connections they keep open are the only sign of them.
        """
        if self._core is None or self._http is None:
            return 0
        try:
            sessions = open_session_count(self._core.server.session_manager)
        except (RuntimeError, AttributeError):
            sessions = 0
        return sessions or self._http.open_connections

    def _drop_session_token(self) -> None:
        if self._session_token_file is not None:
            self._session_token_file.unlink(missing_ok=True)
            self._session_token_file = None


def _while_draining(gateway: MainThreadGateway | None, fn: Callable[[], Any]) -> Any:
    """Run `fn` on a helper thread; if this is the gateway's main thread, keep draining
    the gateway meanwhile, so work `fn` queues for the main thread is not deadlocked."""
    if gateway is None or not gateway.on_main_thread():
        return fn()
    return run_while_pumping(fn, lambda: gateway.drain(0.005))


def _async_runner(gateway: MainThreadGateway) -> Callable[[Callable[[], Awaitable[Any]]], Any]:
    """Run a coroutine function to its end from Slicer's main thread, which keeps draining meanwhile."""
    return lambda fn: _while_draining(gateway, lambda: anyio.run(fn))


def _watch(driver: Driver, http: HttpServer) -> None:
    """Let the driver lend the GIL to `http`'s thread when it has work (Slicer's main thread keeps
    the GIL while idle); drivers that never hold it (headless loops) have no `watch`."""
    watch = getattr(driver, "watch", None)
    if watch is not None:
        watch(http.needs_to_run)
        http.notify_when_idle(driver.wake)  # ends a lend as soon as the server is done


def _unwatch(driver: Driver, http: HttpServer) -> None:
    unwatch = getattr(driver, "unwatch", None)
    if unwatch is not None:
        http.notify_when_idle(None)
        unwatch(http.needs_to_run)


def run_while_pumping(fn: Callable[[], Any], pump: Callable[[], Any], timeout_s: float | None = None) -> Any:
    """Run `fn` on a helper thread while this thread calls `pump` (drain the gateway, process Qt
    events) between short waits that release the GIL; `fn`'s result, or its exception re-raised."""
    outcome: dict[str, Any] = {}
    done = threading.Event()

    def run() -> None:
        try:
            outcome["value"] = fn()
        except BaseException as exc:  # re-raised on the calling thread
            outcome["error"] = exc
        finally:
            done.set()

    helper = threading.Thread(target=run, name="slicer-mcp-call", daemon=True)
    helper.start()
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while not done.wait(0.002):
        if deadline is not None and time.monotonic() >= deadline:
            raise TimeoutError(f"the call did not finish within {timeout_s:g} s")
        pump()
    helper.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")


def _in_slicer_words(exc: SlicerMCPError) -> SlicerMCPError:
    """The transport's 'port in use' advice speaks of --port; inside Slicer the port is set elsewhere."""
    port = exc.details.get("port")
    if exc.code != ErrorCode.CONFIG_ERROR or "already in use" not in exc.message or port is None:
        return exc
    return SlicerMCPError(
        f"port {port} on 127.0.0.1 is already in use (another Slicer, or another program). Stop it, or "
        f"choose another port in the SlicerMCP panel or with logic.start(port=...): e.g. {int(port) + 1}, "
        "or 0 for any free port.",
        code=exc.code,
        details=exc.details,
    )


def _with_port(settings: ServerSettings, port: int) -> ServerSettings:
    """`settings` with another port, checked like the config's own (an assignment is not)."""
    try:
        return ServerSettings.model_validate({**settings.model_dump(), "port": port})
    except ValidationError as exc:
        raise ConfigError(
            f"config key server.port: {exc.errors()[0]['msg']}", details={"key": "server.port", "port": port}
        ) from exc


def tool_output(result: Any) -> Any:
    """A tool result as console-friendly Python: structured content, text, or the content list."""
    content = getattr(result, "content", None)
    if getattr(result, "is_error", False):
        text = content[0].text if content else "{}"
        try:
            err = json.loads(text)["error"]
            raise SlicerMCPError(
                err["message"], code=ErrorCode(err["code"]), details=err.get("details") or {}
            )
        except (ValueError, KeyError, TypeError):
            raise SlicerMCPError(text, code=ErrorCode.INTERNAL_ERROR) from None
    structured = getattr(result, "structured_content", None)
    if structured is not None:
        return structured
    if content is not None and len(content) == 1 and getattr(content[0], "type", None) == "text":
        return content[0].text
    return content if content is not None else result


_controller: ServerController | None = None


def controller() -> ServerController:
    """The process-wide controller (the panel and every `SlicerMCPLogic()` share it)."""
    global _controller
    if _controller is None:
        import atexit

        _controller = ServerController()
        atexit.register(_controller.shutdown_at_exit)
    return _controller


def existing_controller() -> ServerController | None:
    """The controller if one was created (application exit stops it; it never creates one)."""
    return _controller


def start_if_asked(store: Any, testing: bool = False) -> bool:
    """At Slicer start-up: start the server when the user ticked 'start with Slicer' (never prompts).

    A busy port or a broken config is logged, never raised: it must not break Slicer's start-up.
    """
    from .panel import auto_start

    try:
        started = auto_start(controller(), store, testing)
    except Exception as exc:
        log.error("SlicerMCP could not start at Slicer start-up: %s", exc)
        return False
    if started:
        log.info("SlicerMCP started at Slicer start-up: %s", controller().status().url)
    return started


def stop_at_quit() -> None:
    """Slicer is quitting: stop a running server while Qt and the scene still exist."""
    running = existing_controller()
    if running is not None:
        running.stop()
