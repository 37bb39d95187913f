"""Subcommands of `slicer-mcp`; each module has `add_parser(subparsers)` that sets `func`."""
