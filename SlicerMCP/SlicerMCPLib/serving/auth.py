"""The bearer token of the HTTP transport: random, kept in a file only the user can read."""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

from ..core.config import ServerSettings
from ..core.errors import ConfigError
from ..core.localhost import user_config_dir, write_private_file


def token_path(settings: ServerSettings) -> Path:
    return Path(settings.token_file).expanduser() if settings.token_file else user_config_dir() / "token"


def load_or_create_token(path: Path) -> str:
    """Read the token at `path`, creating it (mode 0600, folder 0700) on first use."""
    if not path.exists():
        _create_token(path)
    mode = stat.S_IMODE(path.stat().st_mode)
    if os.name != "nt" and mode & 0o077:
        raise ConfigError(
            f"token file {path} is readable by other users (mode {mode:o}); run: chmod 600 {path}",
            details={"path": str(path)},
        )
    token = path.read_text(encoding="utf-8").strip()
    if len(token) < 16:
        raise ConfigError(f"token file {path} holds no usable token; delete it to get a new one")
    return token


def _create_token(path: Path) -> None:
    """Two servers starting at once (the Slicer module and `slicer-mcp serve`) both end up with the
    token of the one that got there first, and neither ever reads a half-written file."""
    write_private_file(path, secrets.token_urlsafe(32), keep_existing=True)
