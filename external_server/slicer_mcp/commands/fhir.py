"""`slicer-mcp fhir ...` (filled in by the FHIR work)."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("fhir", help="FHIR service commands")
    p.set_defaults(func=lambda args: p.print_help() or 2)
