"""The MCP tool annotations, named by what a tool does, shared by every domain.

A client uses them to decide what needs the user's confirmation, so each must tell the truth:
read-only or not, destructive (overwrites or removes) or additive, idempotent (repeating it
changes nothing more), open world (talks to a PACS, FHIR server or the internet).
"""

from __future__ import annotations

from mcp_types import ToolAnnotations


def _hints(
    *, read_only: bool, destructive: bool = False, idempotent: bool, open_world: bool
) -> ToolAnnotations:
    return ToolAnnotations(
        readOnlyHint=read_only,
        destructiveHint=destructive,
        idempotentHint=idempotent,
        openWorldHint=open_world,
    )


READS = _hints(read_only=True, idempotent=True, open_world=False)
READS_REMOTE = _hints(read_only=True, idempotent=True, open_world=True)
SETS = _hints(read_only=False, idempotent=True, open_world=False)  # a setting: node, server, layout
ADDS = _hints(read_only=False, idempotent=False, open_world=False)  # new nodes, orders, worklist entries
ADDS_FROM_REMOTE = _hints(read_only=False, idempotent=False, open_world=True)  # loads, creates, sends
COPIES_REMOTE = _hints(read_only=False, idempotent=True, open_world=True)  # retrieve, move, link
OVERWRITES_REMOTE = _hints(read_only=False, destructive=True, idempotent=True, open_world=True)
REMOVES = _hints(read_only=False, destructive=True, idempotent=True, open_world=False)
CANCELS = _hints(read_only=False, destructive=True, idempotent=False, open_world=False)
RUNS_CODE = _hints(read_only=False, destructive=True, idempotent=False, open_world=True)
OVERWRITES = _hints(read_only=False, destructive=True, idempotent=True, open_world=False)  # threshold
EDITS = _hints(read_only=False, destructive=True, idempotent=False, open_world=False)  # margin, islands, undo
