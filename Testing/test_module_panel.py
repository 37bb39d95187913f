"""The module panel: the .ui file and the panel's behaviour (PanelPresenter), without Slicer.

SlicerMCPWidget only forwards clicks to PanelPresenter and implements the four PanelView
methods; here a recording view stands in for it, a PySide6 QTimer for `qt.QTimer` and a
QSettings ini file for Slicer's settings.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from fixtures.module import MODULE_DIR
from fixtures.qt import pump_while, run_client_while_pumping
from fixtures.transport import http_client
from SlicerMCPLib.core.config import ALLOW_KEYS
from SlicerMCPLib.core.services import CallRecord
from SlicerMCPLib.hosts import panel as panel_module
from SlicerMCPLib.hosts.panel import (
    PanelPresenter,
    PanelSettings,
    allow_labels,
    allow_warning,
    auto_start,
    call_row,
    status_lines,
)
from SlicerMCPLib.hosts.qt_driver import pyside6_api

UI_FILE = MODULE_DIR / "Resources" / "UI" / "SlicerMCP.ui"
MODULE_FILE = MODULE_DIR / "SlicerMCP.py"
WIDGET_NAME = re.compile(r"^[a-z]\w*(CheckBox|Button|Label|Table|SpinBox|LineEdit)$")


def names_the_module_looks_up() -> set[str]:
    """`self.ui.<name>` attributes and widget-name strings (e.g. ALLOW_CHECKBOXES) in SlicerMCP.py."""
    tree = ast.parse(MODULE_FILE.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Attribute)
            and node.value.attr == "ui"
            and isinstance(node.value.value, ast.Name)
            and node.value.value.id == "self"
        ):
            names.add(node.attr)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and WIDGET_NAME.match(node.value):
            names.add(node.value)
    return names


@pytest.fixture
def loaded_ui(qt_app):
    from PySide6.QtCore import QFile
    from PySide6.QtUiTools import QUiLoader

    f = QFile(str(UI_FILE))
    assert f.open(QFile.OpenModeFlag.ReadOnly)
    loader = QUiLoader()
    widget = loader.load(f)
    f.close()
    assert widget is not None, loader.errorString()
    yield widget
    widget.deleteLater()


def test_ui_holds_every_widget_the_module_looks_up(loaded_ui) -> None:
    from PySide6.QtCore import QObject

    wanted = names_the_module_looks_up()
    assert len(wanted) >= 25, sorted(wanted)  # the parse found the panel's lookups
    present = {w.objectName() for w in loaded_ui.findChildren(QObject)}
    missing = sorted(wanted - present)
    assert not missing, f"SlicerMCP.ui lacks widgets SlicerMCP.py uses: {missing}"


def test_ui_widget_types_and_table(loaded_ui) -> None:
    from PySide6.QtWidgets import QCheckBox, QLineEdit, QPushButton, QSpinBox, QTableWidget

    def child(cls, name):
        found = loaded_ui.findChild(cls, name)
        assert found is not None, f"{name} is not a {cls.__name__}"
        return found

    port = child(QSpinBox, "portSpinBox")
    assert (port.minimum(), port.maximum(), port.value()) == (0, 65535, 2026)
    table = child(QTableWidget, "recentCallsTable")
    headers = [table.horizontalHeaderItem(i).text() for i in range(table.columnCount())]
    assert headers == ["Time", "Tool", "Duration", "Result"]
    for name in (
        "startButton",
        "stopButton",
        "restartButton",
        "copyHttpCommandButton",
        "copyStdioCommandButton",
    ):
        child(QPushButton, name)
    for name in ("autoStartCheckBox", "allowExecutePythonCheckBox", "allowRisWriteCheckBox"):
        assert not child(QCheckBox, name).isChecked()  # gated operations start off
    child(QLineEdit, "configPathLineEdit")


def test_allow_checkboxes_cover_every_gated_operation() -> None:
    tree = ast.parse(MODULE_FILE.read_text(encoding="utf-8"))
    mapping = next(
        ast.literal_eval(node.value)
        for node in tree.body
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "ALLOW_CHECKBOXES"
    )
    assert set(mapping) == set(ALLOW_KEYS) == set(allow_labels())


def _untranslated_texts(path: Path, only_class: str | None = None) -> list[str]:
    """Sentences (a space and a letter) in `path` that a user could see but that skip `_()`.

    Docstrings, log and exception texts for developers, and `_()`'s own argument are exempt."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    roots = (
        [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == only_class]
        if only_class
        else [tree]
    )
    exempt: set[int] = set()
    for root in roots:
        for node in ast.walk(root):
            body = getattr(node, "body", None)
            if isinstance(body, list) and body and isinstance(body[0], ast.Expr):
                exempt.add(id(body[0].value))  # docstring
            if isinstance(node, ast.Call):
                func = node.func
                name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
                if name in (
                    "_",
                    "translate",
                    "debug",
                    "info",
                    "warning",
                    "error",
                    "exception",
                    "RuntimeError",
                ):
                    for inner in node.args:
                        for leaf in ast.walk(inner):
                            exempt.add(id(leaf))
    found = []
    for root in roots:
        for node in ast.walk(root):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in exempt:
                text = node.value
                if re.search(r"[A-Za-z]{2,} [A-Za-z]{2,}", text) and not text.startswith(
                    ("SlicerMCP/", "UI/")
                ):
                    found.append(text)
    return found


def test_every_panel_string_goes_through_slicers_translator(monkeypatch) -> None:
    """Slicer translates module panels with `_()` (slicer.i18n.tr): no sentence a user sees bypasses it."""
    assert _untranslated_texts(MODULE_FILE, only_class="SlicerMCPWidget") == []
    assert _untranslated_texts(Path(panel_module.__file__)) == []
    # and what the presenter shows really is the translator's output
    monkeypatch.setattr(panel_module, "_", lambda text: "<<" + text + ">>")

    class Stopped:
        running = False
        calls_served = 0

    assert status_lines(Stopped())["state"] == "<<Stopped>>"
    warning = allow_warning({"dicom_send": True})
    assert warning.startswith("<<Warning:") and "<<send local images to a PACS (C-STORE)>>" in warning
    assert call_row(CallRecord(0.0, "get_node", 0.001, ok=True))[3] == "<<ok>>"


class RecordingView:
    """Stands in for SlicerMCPWidget's PanelView methods and records what it is told."""

    def __init__(self) -> None:
        self.running: list[bool] = []
        self.status: dict[str, str] = {}
        self.rows: list[tuple[str, str, str, str]] = []
        self.warning = ""

    def showRunning(self, running: bool) -> None:
        self.running.append(running)

    def showStatus(self, lines: dict[str, str]) -> None:
        self.status = lines

    def addCallRows(self, rows) -> None:
        self.rows.extend(rows)

    def showAllowWarning(self, text: str) -> None:
        self.warning = text


@pytest.fixture
def settings_store(qt_app, tmp_path):
    from PySide6.QtCore import QSettings

    return QSettings(str(tmp_path / "slicer.ini"), QSettings.Format.IniFormat)


def _presenter(controller, store, view):
    from PySide6.QtCore import QTimer

    return PanelPresenter(controller, store, view, QTimer(), pyside6_api().connect_timeout)


def test_settings_persist_across_panels(settings_store, qt_controller, tmp_path) -> None:
    view = RecordingView()
    panel = _presenter(qt_controller, settings_store, view)
    assert panel.settings == PanelSettings()  # defaults on first use
    config = tmp_path / "slicer-mcp.yaml"
    config.write_text("calling_aet: PANELTEST\n")
    panel.set_port(0)
    panel.set_auto_start(True)
    panel.set_config_path(f"  {config}  ")
    panel.set_allowed("fhir_write", True)
    panel.close()
    settings_store.sync()

    from PySide6.QtCore import QSettings

    reread = PanelSettings.load(QSettings(settings_store.fileName(), QSettings.Format.IniFormat))
    assert reread.port == 0 and reread.auto_start is True and reread.config_path == str(config)
    assert reread.allow == {k: k == "fhir_write" for k in ALLOW_KEYS}


def test_presenter_start_feed_and_stop(qt_app, settings_store, qt_controller) -> None:
    view = RecordingView()
    panel = _presenter(qt_controller, settings_store, view)
    panel.set_port(0)
    assert view.status["state"] == "Stopped" and view.running[-1] is False
    panel.start()
    assert view.running[-1] is True and view.status["url"].startswith("http://127.0.0.1:")
    url = qt_controller.status().url
    token = open(qt_controller.status().token_file).read().strip()

    async def calls():
        async with http_client(url, token) as client:
            await client.call_tool("list_scene_nodes", {"limit": 2})
            await client.call_tool("get_node", {"node_id": "vtkMRMLNoSuchNode1"})

    run_client_while_pumping(qt_app, calls)
    # the injected timer refreshes the panel: wait for the rows to show up
    pump_while(qt_app, lambda: len(view.rows) < 2, 10)
    tools = [(tool, result) for _, tool, _, result in view.rows]
    assert tools == [("list_scene_nodes", "ok"), ("get_node", "INVALID_NODE_ID")]
    assert view.status["calls"] == "2" and view.status["state"].startswith("Running since")
    assert panel.http_command().startswith("claude mcp add --transport http slicer " + url)
    assert panel.stdio_command() == "claude mcp add slicer -- slicer-mcp"

    panel.set_allowed("execute_python", True)
    assert "run any Python code" in view.warning
    assert qt_controller.status().allow["execute_python"] is True
    panel.set_allowed("execute_python", False)
    assert view.warning == ""

    panel.stop()
    assert view.running[-1] is False and view.status["url"] == "-"
    panel.close()


def test_auto_start_follows_the_setting(settings_store, qt_controller) -> None:
    assert auto_start(qt_controller, settings_store) is False
    assert not qt_controller.status().running
    PanelSettings(port=0, auto_start=True).save(settings_store)
    assert auto_start(qt_controller, settings_store, testing=True) is False  # Slicer --testing
    assert not qt_controller.status().running
    assert auto_start(qt_controller, settings_store) is True
    assert qt_controller.status().running


def test_bad_saved_values_fall_back_to_defaults(settings_store) -> None:
    settings_store.setValue("SlicerMCP/Port", "not-a-port")
    settings_store.setValue("SlicerMCP/AutoStart", "false")
    settings_store.setValue("SlicerMCP/Allow/dicom_send", "true")
    loaded = PanelSettings.load(settings_store)
    assert loaded.port == 2026 and loaded.auto_start is False and loaded.allow["dicom_send"] is True


def test_texts() -> None:
    assert allow_warning(dict.fromkeys(ALLOW_KEYS, False)) == ""
    both = allow_warning({"dicom_send": True, "ris_write": True})
    assert both.startswith("Warning:") and "C-STORE" in both and "RIS" in both
    ok = call_row(CallRecord(started_at=0.0, tool="capture_screenshot", duration_s=0.1234, ok=True))
    assert ok[1:] == ("capture_screenshot", "123 ms", "ok")
    failed = call_row(CallRecord(0.0, "get_node", 0.0042, ok=False, error_code="INVALID_NODE_ID"))
    assert failed[2:] == ("4.2 ms", "INVALID_NODE_ID")

    class Stopped:
        running = False
        calls_served = 7

    assert status_lines(Stopped()) == {"state": "Stopped", "url": "-", "clients": "-", "calls": "7"}
    assert Path(UI_FILE).is_file()


def test_panel_ticks_add_to_the_config_allow_block(settings_store, qt_controller, tmp_path) -> None:
    config = tmp_path / "slicer-mcp.yaml"
    config.write_text("allow:\n  dicom_send: true\n")
    view = RecordingView()
    panel = _presenter(qt_controller, settings_store, view)
    panel.set_port(0)
    panel.set_config_path(str(config))
    panel.set_allowed("ris_write", True)
    panel.start()
    allow = qt_controller.status().allow
    assert allow["dicom_send"] is True  # from the config file, not switched off by an unticked box
    assert allow["ris_write"] is True  # from the panel
    assert allow["execute_python"] is False
    assert qt_controller.status().config_path == str(config)
    panel.close()


def test_hidden_panel_pauses_its_refresh(qt_app, settings_store, qt_controller) -> None:
    """Slicer calls exit() when another module is shown: the panel timer stops until enter()."""
    from PySide6.QtCore import QTimer

    timer = QTimer()
    view = RecordingView()
    panel = PanelPresenter(qt_controller, settings_store, view, timer, pyside6_api().connect_timeout)
    assert timer.isActive()
    panel.pause()
    assert not timer.isActive()
    shown = len(view.running)
    panel.resume()
    assert timer.isActive() and len(view.running) == shown + 1  # caught up at once
    panel.close()
    assert not timer.isActive()
