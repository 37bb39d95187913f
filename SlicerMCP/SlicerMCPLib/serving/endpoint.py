"""Discovery file for the stdio bridge: where a running in-Slicer server listens.

While the server inside Slicer runs it keeps `<user config dir>/endpoint.json`
(mode 0600) with its URL, port, pid and the path of the token file (never the token
itself). `slicer-mcp` reads it to proxy to Slicer. A file whose pid is gone (Slicer
crashed or was killed) is stale and readers ignore it.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from .. import __version__
from ..core.localhost import LOOPBACK_HOSTS, user_config_dir, write_private_file

log = logging.getLogger(__name__)

ENDPOINT_FILE = "endpoint.json"


@dataclass(frozen=True)
class Endpoint:
    """What a client needs to reach the running server: URL, and where the bearer token is."""

    url: str
    port: int
    pid: int
    token_file: str
    version: str = __version__
    started_at: float = field(default_factory=time.time)

    def read_token(self) -> str:
        return Path(self.token_file).read_text(encoding="utf-8").strip()


def endpoint_path() -> Path:
    return user_config_dir() / ENDPOINT_FILE


def pid_alive(pid: int) -> bool:
    """True when a process with this pid exists (it may belong to another user)."""
    if pid <= 0:
        return False
    if os.name == "nt":
        import ctypes

        kernel32 = ctypes.windll.kernel32  # type: ignore[attr-defined]
        handle = kernel32.OpenProcess(0x1000, False, pid)  # PROCESS_QUERY_LIMITED_INFORMATION
        if not handle:
            return False
        code = ctypes.c_ulong()
        kernel32.GetExitCodeProcess(handle, ctypes.byref(code))
        kernel32.CloseHandle(handle)
        return code.value == 259  # STILL_ACTIVE
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def write_endpoint(
    url: str, port: int, token_file: str | os.PathLike[str], *, pid: int | None = None
) -> Endpoint:
    """Write the endpoint file atomically with mode 0600 (folder 0700); returns what was written."""
    endpoint = Endpoint(
        url=url, port=port, pid=os.getpid() if pid is None else pid, token_file=str(token_file)
    )
    path = endpoint_path()
    write_private_file(path, json.dumps(asdict(endpoint), indent=2))
    log.info("endpoint file written: %s", path)
    return endpoint


def read_endpoint() -> Endpoint | None:
    """The endpoint of a live server, or None when there is no file, it is unreadable or stale."""
    path = endpoint_path()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        endpoint = Endpoint(
            url=str(data["url"]),
            port=int(data["port"]),
            pid=int(data["pid"]),
            token_file=str(data["token_file"]),
            version=str(data.get("version", "")),
            started_at=float(data.get("started_at", 0.0)),
        )
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("ignoring unreadable endpoint file %s: %s", path, exc)
        return None
    if (urlsplit(endpoint.url).hostname or "") not in LOOPBACK_HOSTS:
        log.warning("ignoring endpoint file %s: its server is not on this machine's loopback", path)
        return None
    if not pid_alive(endpoint.pid):
        log.info("ignoring stale endpoint file %s (pid %d is gone)", path, endpoint.pid)
        return None
    return endpoint


def remove_endpoint(*, only_own: bool = True) -> bool:
    """Remove the endpoint file; with `only_own` only when this process wrote it (another Slicer
    may have taken over since). Returns True when a file was removed."""
    path = endpoint_path()
    if only_own:
        try:
            pid = int(json.loads(path.read_text(encoding="utf-8"))["pid"])
        except FileNotFoundError:
            return False
        except (OSError, ValueError, KeyError, TypeError):
            pid = -1  # unreadable: not provably ours, leave it
        if pid != os.getpid():
            return False
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    log.info("endpoint file removed: %s", path)
    return True
