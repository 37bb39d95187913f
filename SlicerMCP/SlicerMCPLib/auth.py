"""The bearer token of the HTTP transport: random, kept in a file only the user can read."""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

from .config import ServerSettings, user_config_dir
from .errors import ConfigError


def token_path(settings: ServerSettings) -> Path:
    return Path(settings.token_file).expanduser() if settings.token_file else user_config_dir() / "token"


def load_or_create_token(path: Path) -> str:
    """Read the token at `path`, creating it (mode 0600, folder 0700) on first use."""
    if path.exists():
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
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    token = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(token + "\n")
    return token
