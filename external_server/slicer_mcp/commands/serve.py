"""`slicer-mcp serve`: run the MCP server (stdio for MCP clients, or HTTP) on the best backend.

The backend is the SlicerMCP server inside Slicer (proxied), else Slicer's WebServer, else
(with --headless) a headless scene of its own; `--backend` forces one. See select.py.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

from SlicerMCPLib.core.config import load_config

from ..malloc_arenas import limit_malloc_arenas
from ..select import EXIT_NO_BACKEND, NO_BACKEND_MESSAGE, choose_backend, run_proxy, run_webserver

log = logging.getLogger(__name__)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="serve MCP (the default when no command is given)")
    p.add_argument(
        "--backend",
        choices=["proxy", "webserver", "headless"],
        help="force a backend (default: SlicerMCP in Slicer, else Slicer's WebServer, else --headless)",
    )
    p.add_argument(
        "--webserver-url", metavar="URL", help="Slicer's WebServer (default http://localhost:2016)"
    )
    p.add_argument(
        "--headless", action="store_true", help="without a running Slicer, host a headless scene here"
    )
    p.add_argument("--transport", choices=["stdio", "http"], default="stdio")
    p.add_argument("--host", help="HTTP listen address (default 127.0.0.1)")
    p.add_argument("--port", type=int, help="HTTP port (default 2026; 0 picks a free one)")
    p.add_argument(
        "--allow-remote", action="store_true", help="allow a non-loopback --host (not recommended)"
    )
    p.add_argument(
        "--demo", action="store_true", help="headless: start with a demo scene (phantom + segmentation)"
    )
    p.set_defaults(func=run)


def config_from_args(args: argparse.Namespace):
    overrides: dict[str, Any] = {}
    server: dict[str, Any] = {}
    if args.host is not None:
        server["host"] = args.host
    if args.port is not None:
        server["port"] = args.port
    if args.allow_remote:
        server["allow_remote"] = True
    if server:
        overrides["server"] = server
    if getattr(args, "webserver_url", None):
        overrides["webserver_url"] = args.webserver_url
    return load_config(args.config, overrides=overrides or None)


def run(args: argparse.Namespace) -> int:
    limit_malloc_arenas()  # a long-running threaded server: see malloc_arenas.py
    config = config_from_args(args)
    choice = choose_backend(args.backend, args.headless, config.webserver_url)
    if choice.backend is None:
        log.info("no backend: %s", choice.reason)
        print(NO_BACKEND_MESSAGE.format(url=config.webserver_url), file=sys.stderr)
        return EXIT_NO_BACKEND
    log.info("backend: %s (%s)", choice.backend, choice.reason)
    if choice.backend == "proxy":
        if args.transport != "stdio":
            print(
                "slicer-mcp: the SlicerMCP server in Slicer already serves HTTP; connect to it directly "
                f"at {choice.endpoint.url}",
                file=sys.stderr,
            )
            return EXIT_NO_BACKEND
        return run_proxy(choice.endpoint)
    if choice.backend == "webserver":
        return run_webserver(config, args.transport, config.webserver_url)
    from SlicerMCPLib.hosts.headless import run_headless

    return run_headless(config, args.transport, demo=args.demo)
