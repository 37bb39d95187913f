"""The audit log: one JSON line per tool call, in a file only the user can read, rotated by size.

Why: an operator must be able to say afterwards which client called which tool when, how it
ended and how long it took, without the log itself holding patient data. So a line carries the
time, the client's declared name, the tool, a keyed digest of the arguments (HMAC-SHA256 with a
per-install key: equal arguments give equal digests, the arguments themselves are never written,
and a guessable value such as a patient name cannot be confirmed from the log by hashing it
without the key), the result code, the duration and the size of the result. `slicer://audit` and `slicer-mcp audit` read the newest lines.

The file is 0600 in a 0700 folder (`localhost.private_file`); the key is `<user config dir>/audit-key`
(0600), made on first use and kept apart from the log, so a copied log carries no key; at `audit.max_bytes` it is renamed
to `<name>.1` (older ones shift up to `<name>.<backups>`, the oldest is dropped).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import secrets
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from .config import AuditSettings
from .localhost import private_file, user_config_dir, user_data_dir, write_private_file
from .services import CallRecord, Services

log = logging.getLogger(__name__)
_TAIL_BLOCK = 64 * 1024


def default_audit_path() -> Path:
    return user_data_dir() / "audit" / "tool-calls.jsonl"


def audit_key_path() -> Path:
    return user_config_dir() / "audit-key"


def _audit_key(path: Path) -> bytes:
    """The per-install key (made on first use; two servers starting at once share the first one)."""
    if not path.exists():
        write_private_file(path, secrets.token_hex(32), keep_existing=True)
    return path.read_text(encoding="utf-8").strip().encode("ascii")


def arguments_digest(key: bytes, arguments: dict[str, Any] | None) -> str:
    """HMAC-SHA256 of the arguments as canonical JSON (sorted keys, no spaces, UTF-8)."""
    canonical = json.dumps(
        arguments or {}, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str
    )
    return hmac.new(key, canonical.encode("utf-8"), hashlib.sha256).hexdigest()


def audit_line(record: CallRecord) -> dict[str, Any]:
    """What one line holds (never arguments or results)."""
    when = datetime.fromtimestamp(record.started_at, UTC).isoformat(timespec="milliseconds")
    return {
        "time": when,
        "client": record.client,
        "session": record.session,
        "tool": record.tool,
        "arguments_hmac": record.arguments_hmac,
        "result": record.error_code or "OK",
        "duration_ms": round(record.duration_s * 1000, 3),
        "bytes": record.result_bytes,
    }


class AuditTail(BaseModel):
    """The newest audit lines, as `slicer://audit` returns them."""

    enabled: bool
    path: str = Field(description="the audit file; rotated copies are <path>.1 ... <path>.N")
    entries: list[dict[str, Any]] = Field(
        description="oldest first: time, client, session, tool, arguments_hmac, result, duration_ms, bytes"
    )


class AuditLog:
    """Appends audit lines (thread-safe), rotates at the size limit and reads the newest ones back."""

    def __init__(self, settings: AuditSettings):
        self.settings = settings
        self.path = Path(settings.path).expanduser() if settings.path else default_audit_path()
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._failing = False
        self._key: bytes | None = None

    def digest(self, arguments: dict[str, Any] | None) -> str | None:
        """The arguments' keyed digest for the line (None while the log is off or has no key)."""
        if not self.settings.enabled:
            return None
        if self._key is None:
            try:
                self._key = _audit_key(audit_key_path())
            except OSError as exc:
                if not self._failing:
                    log.warning("cannot make the audit key: %s", exc.strerror or exc)
                self._failing = True
                return None
        return arguments_digest(self._key, arguments)

    def write(self, record: CallRecord) -> None:
        """Append the record's line; a failing disk is logged once and never fails the call."""
        if not self.settings.enabled:
            return
        data = (json.dumps(audit_line(record), separators=(",", ":")) + "\n").encode("utf-8")
        with self._lock:
            try:
                fd = self._open()
                size = os.fstat(fd).st_size  # another process may append to the same file
                if size and size + len(data) > self.settings.max_bytes:
                    fd = self._rotate()
                os.write(fd, data)
                self._failing = False
            except OSError as exc:
                if not self._failing:
                    log.warning("cannot write the audit log %s: %s", self.path, exc.strerror or exc)
                self._failing = True

    def _open(self) -> int:
        if self._fd is None:
            private_file(self.path)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        return self._fd

    def _rotate(self) -> int:
        self._close_fd()
        for n in range(self.settings.backups - 1, 0, -1):
            older = self.rotated(n)
            if older.exists():
                os.replace(older, self.rotated(n + 1))
        os.replace(self.path, self.rotated(1))
        return self._open()

    def rotated(self, n: int) -> Path:
        return self.path.with_name(f"{self.path.name}.{n}")

    def recent(self, count: int) -> list[dict[str, Any]]:
        """The newest `count` lines, oldest first, from the file and its rotated copies."""
        lines: list[str] = []
        for path in [self.path, *(self.rotated(n) for n in range(1, self.settings.backups + 1))]:
            if len(lines) >= count:
                break
            lines = _tail(path, count - len(lines)) + lines
        out = []
        for line in lines[-count:] if count else []:
            try:
                out.append(json.loads(line))
            except ValueError:  # a line cut by a crash mid-write: skipped, the rest still reads
                continue
        return out

    def tail(self) -> AuditTail:
        entries = self.recent(self.settings.recent_lines)
        return AuditTail(enabled=self.settings.enabled, path=str(self.path), entries=entries)

    def _close_fd(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def close(self) -> None:
        with self._lock:
            self._close_fd()


def _tail(path: Path, count: int) -> list[str]:
    """The last `count` lines of a file, read backwards in blocks (a full log is megabytes)."""
    try:
        f = open(path, "rb")  # noqa: SIM115 - closed below; missing files give no lines
    except FileNotFoundError:
        return []
    with f:
        end = f.seek(0, os.SEEK_END)
        data = b""
        while end > 0 and data.count(b"\n") <= count:
            start = max(0, end - _TAIL_BLOCK)
            f.seek(start)
            data = f.read(end - start) + data
            end = start
    return [line.decode("utf-8", "replace") for line in data.splitlines() if line.strip()][-count:]


def audit_of(services: Services) -> AuditLog:
    """The server's one audit log (closed with the services)."""
    return services.domain(AuditLog, lambda config: AuditLog(config.audit))
