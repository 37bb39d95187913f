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
from SlicerMCPLib.core.errors import SlicerMCPError

COMMANDS = ("serve", "fhir", "ris", "audit")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="slicer-mcp",
        description="MCP server for 3D Slicer: scene tools, screenshots, DICOM, FHIR and mini-RIS.",
    )
    parser.add_argument("--version", action="version", version=f"slicer-mcp {__version__}")
    parser.add_argument(
        "--config",
        metavar="PATH",
        help="config YAML (default: $SLICER_MCP_CONFIG); a bare *.yaml argument means the same",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging on stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        module = importlib.import_module(f".commands.{name}", __package__)
        module.add_parser(sub)
    _add_common_options(parser)
    return parser


def _add_common_options(parser: argparse.ArgumentParser) -> None:
    """`--config` and `-v` work after any (sub)command too: `slicer-mcp ris serve --config F`."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                # SUPPRESS: an option given before the command is not reset by the subcommand's default
                child.add_argument("--config", metavar="PATH", default=argparse.SUPPRESS, help="config YAML")
                child.add_argument(
                    "-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="debug logging"
                )
                _add_common_options(child)


def setup_logging(verbose: bool) -> None:
    """Logs on stderr (stdout is MCP's), and no patient data in them, whichever command runs."""
    from SlicerMCPLib.dicom.phi import keep_phi_out_of_logs

    keep_phi_out_of_logs()
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def with_positional_config(argv: list[str]) -> list[str]:
    """`slicer-mcp configuration.yaml --transport stdio`, as dicom-mcp is started: a bare YAML path
    is the config file (`--config`)."""
    out: list[str] = []
    for i, arg in enumerate(argv):
        bare = not arg.startswith("-") and (i == 0 or argv[i - 1] != "--config")
        if bare and arg.lower().endswith((".yaml", ".yml")):
            out += ["--config", arg]
        else:
            out.append(arg)
    return out


def with_default_command(argv: list[str]) -> list[str]:
    """`slicer-mcp --headless` means `slicer-mcp serve --headless`: serve options without a command."""
    if any(a in COMMANDS for a in argv) or any(a in ("-h", "--help", "--version") for a in argv):
        return argv
    head: list[str] = []
    rest = list(argv)
    while rest and (rest[0] in ("--config", "-v", "--verbose") or rest[0].startswith("--config=")):
        option = rest.pop(0)
        head.append(option)
        if option == "--config" and rest:
            head.append(rest.pop(0))  # its value
    return [*head, "serve", *rest] if rest else argv


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = with_default_command(with_positional_config(list(sys.argv[1:] if argv is None else argv)))
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    if args.command is None:
        # no subcommand: the stdio MCP server, as MCP clients launch it
        args = parser.parse_args([*argv, "serve"])
    try:
        return int(args.func(args) or 0)
    except SlicerMCPError as exc:
        print(f"slicer-mcp: {exc.message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
