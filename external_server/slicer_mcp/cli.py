"""`slicer-mcp` command line: one subcommand per job, logs on stderr, stdout left to MCP.

Each subcommand lives in `commands/<name>.py` with `add_parser(subparsers)`; the parser it
adds sets `func(args) -> int`.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from SlicerMCPLib import __version__
from SlicerMCPLib.errors import SlicerMCPError

COMMANDS = ("serve", "fhir", "ris")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="slicer-mcp",
        description="MCP server for 3D Slicer: scene tools, screenshots, DICOM, FHIR and mini-RIS.",
    )
    parser.add_argument("--version", action="version", version=f"slicer-mcp {__version__}")
    parser.add_argument("--config", metavar="PATH", help="config YAML (default: $SLICER_MCP_CONFIG)")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging on stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        module = importlib.import_module(f".commands.{name}", __package__)
        module.add_parser(sub)
    return parser


def setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    if args.command is None:
        # no subcommand: the stdio MCP server, as MCP clients launch it
        args = parser.parse_args([*(argv if argv is not None else sys.argv[1:]), "serve"])
    try:
        return int(args.func(args) or 0)
    except SlicerMCPError as exc:
        print(f"slicer-mcp: {exc.message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
