"""`slicer-mcp ris ...` (filled in by the RIS work)."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ris", help="RIS service commands")
    p.set_defaults(func=lambda args: p.print_help() or 2)
