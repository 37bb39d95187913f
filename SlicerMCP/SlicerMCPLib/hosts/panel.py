"""What the module panel does, without the panel: settings, status text, the recent-calls feed.

`SlicerMCPWidget` only forwards clicks here and shows what this tells it (through the
`PanelView` methods), so everything but the widget plumbing is tested without Slicer.
Settings persist in QSettings (they belong to the user and the machine, not to a scene,
so they are not kept in a parameter node that would be saved with scenes).
"""

from __future__ import annotations

import collections
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..core.config import ALLOW_KEYS
from ..core.services import CallRecord


def _(text: str) -> str:
    """A panel text in the user's language: Slicer's translator inside Slicer (the module has loaded
    `slicer.i18n`; Qt's lupdate collects these `_("...")` literals), the English text elsewhere.

    Looked up, not imported: importing `slicer` outside Slicer would load the whole headless scene."""
    i18n = sys.modules.get("slicer.i18n")
    return i18n.translate(TRANSLATION_CONTEXT, text) if i18n is not None else text


SETTINGS_GROUP = "SlicerMCP"
TRANSLATION_CONTEXT = "hosts.panel"  # what slicer.i18n.tr names this file (package.file)
DEFAULT_PORT = 2026
REFRESH_MS = 500
TABLE_ROWS = 100


def allow_labels() -> dict[str, str]:
    """What each gated operation lets a client do, in the user's language (asked at use, not import)."""
    return {
        "execute_python": _("run any Python code inside Slicer (execute_python)"),
        "dicom_move": _("move studies between PACS nodes (C-MOVE to another node)"),
        "dicom_send": _("send local images to a PACS (C-STORE)"),
        "fhir_write": _("create and update FHIR resources"),
        "ris_write": _("create and change RIS patients and orders"),
    }


class SettingsStore(Protocol):
    """The QSettings calls used (PythonQt and PySide6 both have them)."""

    def value(self, key: str, default: Any = None) -> Any: ...

    def setValue(self, key: str, value: Any) -> None: ...  # noqa: N802 - Qt's name


class PanelView(Protocol):
    """What the widget shows; implemented by SlicerMCPWidget (and by a recorder in tests)."""

    def showRunning(self, running: bool) -> None: ...

    def showStatus(self, lines: dict[str, str]) -> None: ...

    def addCallRows(self, rows: list[tuple[str, str, str, str]]) -> None: ...

    def showAllowWarning(self, text: str) -> None: ...


def _to_bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


@dataclass
class PanelSettings:
    """The panel's persistent choices."""

    port: int = DEFAULT_PORT
    auto_start: bool = False
    config_path: str = ""
    allow: dict[str, bool] = field(default_factory=lambda: dict.fromkeys(ALLOW_KEYS, False))

    @classmethod
    def load(cls, store: SettingsStore) -> PanelSettings:
        g = SETTINGS_GROUP
        try:
            port = int(store.value(f"{g}/Port", DEFAULT_PORT))
        except (TypeError, ValueError):
            port = DEFAULT_PORT
        return cls(
            port=port if 0 <= port <= 65535 else DEFAULT_PORT,
            auto_start=_to_bool(store.value(f"{g}/AutoStart", False)),
            config_path=str(store.value(f"{g}/ConfigPath", "") or ""),
            allow={k: _to_bool(store.value(f"{g}/Allow/{k}", False)) for k in ALLOW_KEYS},
        )

    def granted(self) -> dict[str, bool]:
        """The ticked permissions only: they add to the config's `allow:` block, never remove from it."""
        return {k: True for k in ALLOW_KEYS if self.allow.get(k)}

    def save(self, store: SettingsStore) -> None:
        g = SETTINGS_GROUP
        store.setValue(f"{g}/Port", int(self.port))
        store.setValue(f"{g}/AutoStart", bool(self.auto_start))
        store.setValue(f"{g}/ConfigPath", self.config_path)
        for key in ALLOW_KEYS:
            store.setValue(f"{g}/Allow/{key}", bool(self.allow.get(key, False)))


def allow_warning(allow: dict[str, bool]) -> str:
    """The warning shown while any gated operation is on (empty when all are off)."""
    labels = allow_labels()
    on = [labels[k] for k in ALLOW_KEYS if allow.get(k)]
    if not on:
        return ""
    return _(
        "Warning: any MCP client holding the token can now {operations}. "
        "Turn these off when you no longer need them."
    ).format(operations="; ".join(on))


def call_row(record: CallRecord) -> tuple[str, str, str, str]:
    """(time, tool, duration, result) as the recent-calls table shows them."""
    when = time.strftime("%H:%M:%S", time.localtime(record.started_at))
    ms = record.duration_s * 1000.0
    duration = f"{ms:.0f} ms" if ms >= 10 else f"{ms:.1f} ms"
    return when, record.tool, duration, _("ok") if record.ok else (record.error_code or _("error"))


def status_lines(status: Any) -> dict[str, str]:
    """Texts of the status labels for a `ServerStatus`."""
    if not status.running:
        return {"state": _("Stopped"), "url": "-", "clients": "-", "calls": str(status.calls_served)}
    since = time.strftime("%H:%M:%S", time.localtime(status.started_at)) if status.started_at else "?"
    return {
        "state": _("Running since {time}").format(time=since),
        "url": status.url or "-",
        "clients": str(status.clients),
        "calls": str(status.calls_served),
    }


class CallFeed:
    """Collects call records from any thread; `take()` on the main thread returns the new rows."""

    def __init__(self, keep: int = TABLE_ROWS):
        self._pending: collections.deque[CallRecord] = collections.deque(maxlen=keep)
        self._lock = threading.Lock()

    def __call__(self, record: CallRecord) -> None:  # a CallLog listener (worker threads)
        with self._lock:
            self._pending.append(record)

    def take(self) -> list[tuple[str, str, str, str]]:
        with self._lock:
            records = list(self._pending)
            self._pending.clear()
        return [call_row(r) for r in records]


class PanelPresenter:
    """The panel's behaviour: start/stop with the saved settings, periodic status refresh.

    `timer` is a QTimer-like object (start(ms)/stop()) whose timeout is connected to
    `refresh` by `connect_timeout`; tests inject a PySide6 timer, Slicer a `qt.QTimer`.
    """

    def __init__(
        self,
        controller: Any,
        store: SettingsStore,
        view: PanelView,
        timer: Any,
        connect_timeout: Callable[[Any, Callable[[], None]], None],
    ):
        self.controller = controller
        self.store = store
        self.view = view
        self.settings = PanelSettings.load(store)
        self.feed = CallFeed()
        self._listening: Any = None
        self._timer = timer
        connect_timeout(timer, self.refresh)
        timer.start(REFRESH_MS)
        self.view.showAllowWarning(allow_warning(self.settings.allow))
        self.refresh()

    # -- user actions ------------------------------------------------------------------------------
    def start(self) -> None:
        s = self.settings
        self.controller.start(port=s.port, config_path=s.config_path or None, allow=s.granted())
        self._listen()
        self.refresh()

    def stop(self) -> None:
        self.controller.stop()
        self.refresh()

    def restart(self) -> None:
        self.stop()
        self.start()

    def set_port(self, port: int) -> None:
        self.settings.port = int(port)
        self._save()

    def set_auto_start(self, enabled: bool) -> None:
        self.settings.auto_start = bool(enabled)
        self._save()

    def set_config_path(self, path: str) -> None:
        self.settings.config_path = path.strip()
        self._save()

    def set_allowed(self, operation: str, enabled: bool) -> None:
        self.settings.allow[operation] = bool(enabled)
        self._save()
        self.controller.set_allowed(operation, bool(enabled))
        self.view.showAllowWarning(allow_warning(self.settings.allow))

    def http_command(self) -> str:
        return self.controller.http_command()

    def stdio_command(self) -> str:
        return self.controller.stdio_command()

    # -- periodic ----------------------------------------------------------------------------------
    def refresh(self) -> None:
        status = self.controller.status()
        if status.running:
            self._listen()
        self.view.showRunning(status.running)
        self.view.showStatus(status_lines(status))
        rows = self.feed.take()
        if rows:
            self.view.addCallRows(rows)

    def pause(self) -> None:
        """The module is hidden: stop the periodic refresh (the server and call feed keep going)."""
        self._timer.stop()

    def resume(self) -> None:
        """The module is shown again: catch up at once, then refresh periodically."""
        self.refresh()
        self._timer.start(REFRESH_MS)

    def close(self) -> None:
        """Stop refreshing (the widget is going away); the server keeps running."""
        self._timer.stop()
        self._unlisten()

    def _listen(self) -> None:
        services = self.controller.services
        if services is None or services is self._listening:
            return
        self._unlisten()
        services.call_log.listeners.append(self.feed)
        self._listening = services

    def _unlisten(self) -> None:
        if self._listening is not None and self.feed in self._listening.call_log.listeners:
            self._listening.call_log.listeners.remove(self.feed)
        self._listening = None

    def _save(self) -> None:
        self.settings.save(self.store)


def auto_start(controller: Any, store: SettingsStore, testing: bool = False) -> bool:
    """At Slicer start-up: start the server when the user asked for it; True when started.

    Never while Slicer runs its tests (`--testing`): a test run must not open a port or take
    the one a user's Slicer listens on."""
    settings = PanelSettings.load(store)
    if not settings.auto_start or testing:
        return False
    controller.start(port=settings.port, config_path=settings.config_path or None, allow=settings.granted())
    return True
