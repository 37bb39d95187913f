"""Cap glibc's malloc arenas in the long-running threaded servers (`slicer-mcp serve`, `ris serve`).

Why: glibc gives threads their own arenas (up to 8 per core) and keeps what an arena once held.
The MWL/MPPS SCP runs each association on a new thread; a burst of them (a MariaDB restart: every
modality retries at once) grew `ris serve` by 2-7 MiB a time, with Python's own memory flat
(tracemalloc) — an arena's high-water mark, not a leak. Two arenas keep the RSS flat; the GIL
serialises most allocations anyway. MALLOC_ARENA_MAX in the environment still wins.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import sys

log = logging.getLogger(__name__)

M_ARENA_MAX = -8  # glibc's mallopt parameter (malloc.h)


def limit_malloc_arenas(arenas: int = 2) -> bool:
    """mallopt(M_ARENA_MAX, arenas) on glibc; False (nothing done) elsewhere or when the
    environment already sets MALLOC_ARENA_MAX."""
    if not sys.platform.startswith("linux") or "MALLOC_ARENA_MAX" in os.environ:
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl or another libc: no arenas to cap
        return False
    done = bool(mallopt(M_ARENA_MAX, arenas))
    log.debug("malloc arenas capped at %d: %s", arenas, done)
    return done
