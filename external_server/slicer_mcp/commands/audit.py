"""`slicer-mcp audit`: print the newest lines of the audit log (one JSON object per tool call)."""

from __future__ import annotations

import argparse
import json

from SlicerMCPLib.core.config import load_config


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "audit",
        help="print the newest tool calls from the audit log (time, client, tool, argument digest, result, "
        "duration, bytes)",
    )
    p.add_argument("-n", "--lines", type=int, default=20, help="how many lines (default 20)")
    p.add_argument("--path", action="store_true", help="print the audit file's path instead")
    p.set_defaults(func=run_audit)


def run_audit(args: argparse.Namespace) -> int:
    from SlicerMCPLib.core.audit import AuditLog

    log = AuditLog(load_config(args.config).audit)
    if args.path:
        print(log.path)
        return 0
    for entry in log.recent(max(0, args.lines)):
        print(json.dumps(entry, separators=(",", ":")))
    return 0
