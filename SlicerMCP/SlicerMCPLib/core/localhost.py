"""This machine: the user's own folders, files only the user can read, and the loopback names.

Every layer that keeps a file for the user (token, endpoint, caches, the RIS database, DICOM
files and exports) or refuses a non-loopback address takes it from here, so there is one answer
to "where", "local" and "private" (0600 files in 0700 folders).
"""

from __future__ import annotations

import os
import socket
import tempfile
from pathlib import Path
from typing import BinaryIO

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
WILDCARD_HOSTS = frozenset({"0.0.0.0", "::", ""})  # "every interface": never a name a client should send


def machine_names() -> set[str]:
    """This machine's own names and addresses, as a client elsewhere on the network would write them."""
    names: set[str] = set()
    try:
        names |= {socket.gethostname(), socket.getfqdn()}
        names |= {str(info[4][0]) for info in socket.getaddrinfo(socket.gethostname(), None)}
    except OSError:  # no resolver: the names found so far
        pass
    return {n for n in names if n} - WILDCARD_HOSTS


def served_host_names(bind_host: str) -> set[str]:
    """Names a request's Host may carry for a server bound to `bind_host`: the loopback names and the
    bind address, and, for a server listening beyond loopback (allow_remote), this machine's names.
    Any other name is a page on another site that resolves to us (DNS rebinding)."""
    names = set(LOOPBACK_HOSTS) | {bind_host}
    if bind_host not in LOOPBACK_HOSTS:
        names |= machine_names()
    return names - WILDCARD_HOSTS


def user_config_dir() -> Path:
    """Per-user folder for the token and endpoint files (XDG on Linux, the usual places elsewhere)."""
    override = os.environ.get("SLICER_MCP_HOME")
    if override:
        return Path(override)
    if os.name == "nt":
        return Path(os.environ.get("APPDATA", Path.home())) / "SlicerMCP"
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "slicer-mcp"


def user_data_dir() -> Path:
    """Per-user folder for caches and the embedded RIS database."""
    override = os.environ.get("SLICER_MCP_HOME")
    if override:
        return Path(override) / "data"
    if os.name == "nt":
        return Path(os.environ.get("LOCALAPPDATA", Path.home())) / "SlicerMCP"
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "slicer-mcp"


def private_dir(path: Path) -> Path:
    """`path` as a folder, each level this call creates 0700 (whatever the umask); returns it.

    Every folder that can hold patient data (DICOM storage and staging, exports, the virtual CR's
    output, caches, the RIS database's folder) is made here. A folder that already exists keeps its
    mode: one an operator configured (a group share, say) is theirs to set.
    """
    missing: list[Path] = []
    level = path
    while not level.exists() and level != level.parent:
        missing.append(level)
        level = level.parent
    for level in reversed(missing):  # top down, each made 0700 itself (pathlib makes parents 0777 - umask)
        try:
            os.mkdir(level, 0o700)
        except FileExistsError:
            pass
    if not path.is_dir():
        path.mkdir()  # raises what the caller should see (a file in the way, no permission)
    return path


def open_private(path: Path) -> BinaryIO:
    """`path` opened to write bytes, created or truncated, 0600 (an existing looser file is tightened);
    its folder made with `private_dir`. For every file that can hold patient data."""
    private_dir(path.parent)
    fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_TRUNC | getattr(os, "O_BINARY", 0), 0o600)
    if os.name != "nt":
        os.fchmod(fd, 0o600)
    return os.fdopen(fd, "wb")


def write_private_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` through `open_private` (0600 in a 0700 folder)."""
    with open_private(path) as out:
        out.write(data)


def private_file(path: Path) -> Path:
    """Create `path` empty if missing, 0600 in a 0700 folder; tighten an existing file to 0600.

    For files other libraries open themselves (SQLite creates its -wal/-shm with the main file's mode).
    """
    private_dir(path.parent)
    fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
    os.close(fd)
    if os.name != "nt":
        os.chmod(path, 0o600)
    return path


def write_private_file(path: Path, text: str, *, keep_existing: bool = False) -> bool:
    """Write `text` (plus a newline) atomically, readable by the user only (file 0600, folder 0700).

    The text goes to a private temp file that is then renamed over `path`, or, with
    `keep_existing`, linked into place so that an existing file wins. Returns whether `path` now
    holds `text`.
    """
    private_dir(path.parent)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)  # mode 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text + "\n")
        if not keep_existing:
            os.replace(tmp, path)
            return True
        try:
            os.link(tmp, path)
            return True
        except FileExistsError:
            return False
    finally:
        Path(tmp).unlink(missing_ok=True)


def absolute_user_path(raw: str, parameter: str = "path") -> Path:
    """`raw` with `~` expanded, which must then be absolute; INVALID_PARAMETER otherwise.

    `~name` of a user this machine does not know makes pathlib raise RuntimeError: a client's
    typo, not a crash of the tool.
    """
    from .errors import InvalidParameter

    try:
        path = Path(raw).expanduser()
    except RuntimeError:
        raise InvalidParameter(
            f"{parameter} names a home folder this machine does not know: {raw!r}", details={"path": raw}
        ) from None
    if not path.is_absolute():
        raise InvalidParameter(f"{parameter} must be absolute, got {raw!r}", details={"path": raw})
    return path
