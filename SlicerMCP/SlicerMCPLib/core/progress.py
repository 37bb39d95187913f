"""The one progress callback every layer reports through, and its counting form.

Long work (a retrieve, a send, a segment edit, a sample download) calls
`progress(done, total, message)` from whatever thread it runs on; a total of 0 or None means
not known yet. `tools.running` turns those calls into the client's MCP progress notifications.
Loops that only count (instances, bytes) take a `CountProgress`; `counted` gives the counts words.
"""

from __future__ import annotations

from collections.abc import Callable

Progress = Callable[[float, float | None, str], None]
CountProgress = Callable[[int, int], None]


def counted(progress: Progress | None, verb: str, what: str = "instances") -> CountProgress | None:
    """A `(done, total)` callback reporting e.g. 'sent 3/10 instances' to `progress` (None stays None)."""
    if progress is None:
        return None
    return lambda done, total: progress(done, total, f"{verb} {done}/{total or '?'} {what}")
