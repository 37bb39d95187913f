"""`slicer-mcp serve`: run the MCP server (stdio for MCP clients, or HTTP)."""

from __future__ import annotations

import argparse
from typing import Any

from SlicerMCPLib.config import load_config


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="serve MCP (the default when no command is given)")
    p.add_argument("--headless", action="store_true", help="host a headless Slicer scene in this process")
    p.add_argument("--transport", choices=["stdio", "http"], default="stdio")
    p.add_argument("--host", help="HTTP listen address (default 127.0.0.1)")
    p.add_argument("--port", type=int, help="HTTP port (default 2026; 0 picks a free one)")
    p.add_argument("--allow-remote", action="store_true", help="allow a non-loopback --host (not recommended)")
    p.add_argument("--demo", action="store_true", help="headless: start with a demo scene (phantom + segmentation)")
    p.set_defaults(func=run)


def config_from_args(args: argparse.Namespace):
    server: dict[str, Any] = {}
    if args.host is not None:
        server["host"] = args.host
    if args.port is not None:
        server["port"] = args.port
    if args.allow_remote:
        server["allow_remote"] = True
    return load_config(args.config, overrides={"server": server} if server else None)


def run(args: argparse.Namespace) -> int:
    from SlicerMCPLib.host import run_headless

    config = config_from_args(args)
    return run_headless(config, args.transport, demo=args.demo)
