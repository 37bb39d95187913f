"""This machine: the user's own folders, files only the user can read, and the loopback names.

Every layer that keeps a file for the user (token, endpoint, caches, the RIS database) or
refuses a non-loopback address takes it from here, so there is one answer to "where" and "local".
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


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


def private_file(path: Path) -> Path:
    """Create `path` empty if missing, 0600 in a 0700 folder; tighten an existing file to 0600.

    For files other libraries open themselves (SQLite creates its -wal/-shm with the main file's mode).
    """
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
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
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
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
