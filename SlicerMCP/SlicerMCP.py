"""SlicerMCP: an MCP server inside 3D Slicer, so an AI assistant can work on the scene.

Four small classes in Slicer's scripted-module form. The work lives in SlicerMCPLib.hosts:
`inslicer` (the server controller), `panel` (what the panel does), `dependencies`
(Slicer version and pip packages), `qt_driver` (the main-thread gateway driver) and
`selftest` (the MCP client the self-test uses).
"""

from __future__ import annotations

import logging

import qt
import slicer
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)

try:
    from slicer.i18n import tr as _
    from slicer.i18n import translate
except ImportError:  # Slicer before 5.4: no translations; the module still loads to say what it needs

    def _(text: str) -> str:
        return text

    def translate(context: str, text: str) -> str:
        return text


log = logging.getLogger(__name__)

#: panel checkbox of each gated operation (the keys of the config's `allow:` block)
ALLOW_CHECKBOXES = {
    "execute_python": "allowExecutePythonCheckBox",
    "dicom_move": "allowDicomMoveCheckBox",
    "dicom_send": "allowDicomSendCheckBox",
    "fhir_write": "allowFhirWriteCheckBox",
    "ris_write": "allowRisWriteCheckBox",
}


def versionProblem() -> str | None:
    """Why this Slicer cannot run SlicerMCP, or None."""
    try:
        from SlicerMCPLib.hosts.dependencies import slicer_version_problem
    except Exception:  # SlicerMCPLib needs Python 3.11+: this is an old Slicer
        return _("SlicerMCP needs 3D Slicer 5.10 or newer (Python 3.12). Install a newer Slicer.")
    return slicer_version_problem(slicer.app.majorVersion, slicer.app.minorVersion)


def missingPackages() -> list[str]:
    """Requirements of Resources/requirements.txt that are not installed."""
    from SlicerMCPLib.hosts.dependencies import missing_requirements, read_requirements

    return missing_requirements(read_requirements())


class SlicerMCP(ScriptedLoadableModule):
    """Module metadata; also starts the server at start-up (when asked) and stops it on exit."""

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("SlicerMCP")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Utilities")]
        self.parent.dependencies = []
        self.parent.contributors = ["SlicerMCP developers"]
        self.parent.helpText = _(
            "Lets an AI assistant (Claude Code, Claude Desktop or any MCP client) work in this Slicer: "
            "list and inspect nodes, take screenshots of the views, measure segmentations, load sample data, "
            "and query PACS, FHIR and RIS servers. Start the server, then copy the Claude Code command. "
            'See the <a href="https://github.com/SlicerMCP/SlicerMCP/blob/main/docs/user-guide.md">user guide</a>.'
        )
        self.parent.acknowledgementText = _(
            "Built on the Model Context Protocol Python SDK, pynetdicom, pydicom and fhirclient. "
            "The tool catalog follows the MCP Slicer Bridge specification and the dicom-mcp project."
        )
        slicer.app.connect("startupCompleted()", lambda: SlicerMCPLogic().startIfAsked())
        slicer.app.connect("aboutToQuit()", lambda: SlicerMCPLogic().stopAtQuit())


class SlicerMCPWidget(ScriptedLoadableModuleWidget):
    """The panel: forwards the user's clicks to `PanelPresenter` and shows what it reports."""

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        self.logic = None
        self.presenter = None

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/SlicerMCP.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        self.logic = SlicerMCPLogic()
        self.ui.installDependenciesButton.connect("clicked()", self.onInstallDependencies)

        problem = versionProblem()
        if problem:
            self._showMessage(problem)
            self._setSectionsEnabled(False)
            return
        missing = missingPackages()
        if missing:
            self._showMessage(
                _("SlicerMCP needs Python packages that are not installed yet: {packages}.").format(
                    packages=", ".join(missing)
                )
            )
            self.ui.installDependenciesButton.visible = True
            self._setSectionsEnabled(False)
            return
        self._setupPanel()

    def _setupPanel(self) -> None:
        from SlicerMCPLib.hosts.panel import TABLE_ROWS, PanelPresenter
        from SlicerMCPLib.hosts.qt_driver import pythonqt_api

        self._tableRows = TABLE_ROWS
        self._refreshTimer = qt.QTimer()
        self.presenter = PanelPresenter(
            self.logic.controller, qt.QSettings(), self, self._refreshTimer, pythonqt_api().connect_timeout
        )
        settings = self.presenter.settings
        self.ui.portSpinBox.value = settings.port
        self.ui.autoStartCheckBox.checked = settings.auto_start
        self.ui.configPathLineEdit.text = settings.config_path
        for key, name in ALLOW_CHECKBOXES.items():
            box = getattr(self.ui, name)
            box.checked = settings.allow.get(key, False)
            box.connect("toggled(bool)", lambda checked, key=key: self.onAllowToggled(key, checked))

        self.ui.startButton.connect("clicked()", self.onStart)
        self.ui.stopButton.connect("clicked()", self.onStop)
        self.ui.restartButton.connect("clicked()", self.onRestart)
        self.ui.portSpinBox.connect("valueChanged(int)", self.presenter.set_port)
        self.ui.autoStartCheckBox.connect("toggled(bool)", self.presenter.set_auto_start)
        self.ui.configPathLineEdit.connect("editingFinished()", self.onConfigPathEdited)
        self.ui.configBrowseButton.connect("clicked()", self.onBrowseConfig)
        self.ui.copyHttpCommandButton.connect("clicked()", self.onCopyHttpCommand)
        self.ui.copyStdioCommandButton.connect("clicked()", self.onCopyStdioCommand)
        self.ui.risCheckBox.connect("toggled(bool)", self.onRisToggled)
        self._setSectionsEnabled(True)
        self.presenter.refresh()

    def enter(self) -> None:
        """The module is shown: refresh the panel again."""
        if self.presenter is not None:
            self.presenter.resume()

    def exit(self) -> None:
        """The module is hidden: no periodic work for a panel nobody sees."""
        if self.presenter is not None:
            self.presenter.pause()

    def cleanup(self) -> None:
        """The widget goes away (module reload, application exit); the server keeps its own life."""
        if self.presenter is not None:
            self.presenter.close()
            self.presenter = None

    # -- PanelView ---------------------------------------------------------------------------------
    def showRunning(self, running: bool) -> None:
        self.ui.startButton.enabled = not running
        self.ui.stopButton.enabled = running
        self.ui.restartButton.enabled = running
        self.ui.copyHttpCommandButton.enabled = running

    def showStatus(self, lines: dict[str, str]) -> None:
        self.ui.statusLabel.text = lines["state"]
        self.ui.urlLabel.text = lines["url"]
        self.ui.clientsLabel.text = lines["clients"]
        self.ui.callsServedLabel.text = lines["calls"]

    def addCallRows(self, rows: list[tuple[str, str, str, str]]) -> None:
        table = self.ui.recentCallsTable
        for row in rows:  # newest first
            table.insertRow(0)
            for column, text in enumerate(row):
                table.setItem(0, column, qt.QTableWidgetItem(text))
        while table.rowCount > self._tableRows:
            table.removeRow(table.rowCount - 1)

    def showAllowWarning(self, text: str) -> None:
        self.ui.allowWarningLabel.text = text
        self.ui.allowWarningLabel.visible = bool(text)

    def shownState(self) -> tuple:
        """(the panel shows the server running, the recent calls' tool names): for the self-test."""
        table = self.ui.recentCallsTable
        tools = [table.item(row, 1).text() for row in range(table.rowCount) if table.item(row, 1) is not None]
        return self.ui.stopButton.enabled, " ".join(tools)

    # -- slots -------------------------------------------------------------------------------------
    def onStart(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Failed to start the MCP server."), waitCursor=True):
            self.presenter.start()

    def onStop(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Failed to stop the MCP server."), waitCursor=True):
            self.presenter.stop()

    def onRestart(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Failed to restart the MCP server."), waitCursor=True):
            self.presenter.restart()

    def onAllowToggled(self, key: str, checked: bool) -> None:
        with slicer.util.tryWithErrorDisplay(_("Failed to change the permission.")):
            self.presenter.set_allowed(key, checked)

    def onRisToggled(self, checked: bool) -> None:
        with slicer.util.tryWithErrorDisplay(_("Failed to change the mini-RIS services."), waitCursor=True):
            if checked:
                self.logic.startRis()
            else:
                self.logic.stopRis()
        status = self.logic.risStatus()
        # a failed start leaves the box showing what really runs
        wasBlocked = self.ui.risCheckBox.blockSignals(True)
        self.ui.risCheckBox.checked = status["running"]
        self.ui.risCheckBox.blockSignals(wasBlocked)
        self.ui.risStatusLabel.text = (
            _("Worklist/MPPS {aet} on {host}:{port}; API {api}").format(
                aet=status["ae_title"],
                host=status["mwl_host"],
                port=status["mwl_port"],
                api=status["api_url"],
            )
            if status["running"]
            else ""
        )

    def onConfigPathEdited(self) -> None:
        self.presenter.set_config_path(self.ui.configPathLineEdit.text)

    def onBrowseConfig(self) -> None:
        path = qt.QFileDialog.getOpenFileName(
            slicer.util.mainWindow(),
            _("SlicerMCP config file"),
            "",
            _("YAML files (*.yaml *.yml);;All files (*)"),
        )
        if path:
            self.ui.configPathLineEdit.text = path
            self.presenter.set_config_path(path)

    def onCopyHttpCommand(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Failed to build the Claude Code command.")):
            command = self.presenter.http_command()
            qt.QApplication.clipboard().setText(command)
            shown = command.split("Bearer ")[0] + 'Bearer <token>"'
            self.ui.commandLabel.text = _("Copied (with the token) to the clipboard:") + "\n" + shown

    def onCopyStdioCommand(self) -> None:
        command = self.presenter.stdio_command()
        qt.QApplication.clipboard().setText(command)
        self.ui.commandLabel.text = _("Copied to the clipboard:") + "\n" + command

    def onInstallDependencies(self) -> None:
        with slicer.util.tryWithErrorDisplay(
            _("Failed to install SlicerMCP's Python packages."), waitCursor=True
        ):
            self.logic.installPackages()
            self.ui.messageLabel.visible = False
            self.ui.installDependenciesButton.visible = False
            self._setupPanel()

    # -- helpers -----------------------------------------------------------------------------------
    def _showMessage(self, text: str) -> None:
        self.ui.messageLabel.text = text
        self.ui.messageLabel.visible = True

    def _setSectionsEnabled(self, enabled: bool) -> None:
        for name in (
            "serverCollapsibleButton",
            "connectCollapsibleButton",
            "permissionsCollapsibleButton",
            "recentCallsCollapsibleButton",
        ):
            getattr(self.ui, name).enabled = enabled


class SlicerMCPLogic(ScriptedLoadableModuleLogic):
    """The console API. Every instance drives the same server, so the panel and the console agree.

    logic = slicer.util.getModuleLogic("SlicerMCP")
    logic.start(port=2026)            # or port=0 for any free port
    logic.callTool("list_scene_nodes", class_name="vtkMRMLScalarVolumeNode")
    logic.status(); logic.stop()
    """

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)

    @property
    def controller(self):
        problem = versionProblem()
        if problem:
            raise RuntimeError(problem)
        missing = missingPackages()
        if missing:
            raise RuntimeError(
                "SlicerMCP's Python packages are missing ({}); open the SlicerMCP module to install them, "
                "or run slicer.util.getModuleLogic('SlicerMCP').installPackages()".format(", ".join(missing))
            )
        from SlicerMCPLib.hosts.inslicer import controller

        return controller()

    def start(
        self, port: int | None = None, token: str | None = None, config_path: str | None = None
    ) -> dict:
        """Serve MCP on 127.0.0.1; unset arguments come from the panel's saved settings."""
        from SlicerMCPLib.hosts.panel import PanelSettings

        saved = PanelSettings.load(qt.QSettings())
        status = self.controller.start(
            port=saved.port if port is None else port,
            token=token,
            config_path=config_path if config_path is not None else (saved.config_path or None),
            allow=saved.granted(),
        )
        return status.as_dict()

    def stop(self) -> None:
        self.controller.stop()

    def restart(self) -> dict:
        return self.controller.restart().as_dict()

    def status(self) -> dict:
        """running, url, port, clients, calls_served, token_file, endpoint_file, config_path, allow."""
        return self.controller.status().as_dict()

    def callTool(self, name: str, **arguments):
        """Run any tool without a client; returns its structured result, raises on a tool error."""
        return self.controller.call_tool(name, arguments)

    def startRis(self, mwl_port: int | None = None, api_port: int | None = None) -> dict:
        """Serve the mini-RIS worklist/MPPS (DICOM) and its REST API from this Slicer."""
        return self.controller.start_ris(mwl_port=mwl_port, api_port=api_port).as_dict()

    def stopRis(self) -> None:
        self.controller.stop_ris()

    def risStatus(self) -> dict:
        """running, ae_title, mwl_host, mwl_port, api_url."""
        return self.controller.ris_status().as_dict()

    def httpCommand(self) -> str:
        return self.controller.http_command()

    def stdioCommand(self) -> str:
        return self.controller.stdio_command()

    def startIfAsked(self) -> None:
        """At Slicer start-up: start the server when the panel's 'start with Slicer' box is ticked."""
        if versionProblem() or missingPackages():
            return
        from SlicerMCPLib.hosts.inslicer import start_if_asked

        start_if_asked(qt.QSettings(), testing=bool(slicer.app.commandOptions().testingEnabled))

    def stopAtQuit(self) -> None:
        """Stop the server while Qt and the scene still exist (before the interpreter exits)."""
        if versionProblem():
            return
        from SlicerMCPLib.hosts.inslicer import stop_at_quit

        stop_at_quit()

    def installPackages(self) -> list[str]:
        """Install the missing pip packages (asks first); returns what was installed."""
        from SlicerMCPLib.hosts.dependencies import install_requirements

        return install_requirements(
            slicer,
            confirm=lambda question: slicer.util.confirmOkCancelDisplay(question, windowTitle="SlicerMCP"),
        )


class SlicerMCPTest(ScriptedLoadableModuleTest):
    """Starts the server in this Slicer, calls tools through a real MCP client, checks the scene."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def tearDown(self):
        SlicerMCPLogic().stop()

    def runTest(self):
        for test in (
            self.test_module_works_here,
            self.test_console_api,
            self.test_http_client,
            self.test_restart_after_scene_close,
        ):
            self.setUp()
            try:
                test()
            finally:
                self.tearDown()

    def _addVolume(self, name: str):
        import numpy as np

        node = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", name)
        slicer.util.updateVolumeFromArray(node, np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6))
        node.SetSpacing(0.5, 0.5, 2.0)
        return node

    def test_module_works_here(self):
        """Start, one tool call over HTTP, the panel's refresh, stop: the first thing to know in a new Slicer."""
        self.delayDisplay("Start, one call over HTTP, panel refresh, stop")
        from SlicerMCPLib.hosts.qt_driver import pythonqt_api
        from SlicerMCPLib.hosts.selftest import check_module, panel_on_recording_view

        logic = SlicerMCPLogic()
        widget = getattr(slicer.modules, "SlicerMCPWidget", None)
        ownPresenter = None
        if widget is not None and widget.presenter is not None:
            presenter, shown = widget.presenter, widget.shownState
        else:  # the panel was never opened: the same presenter on a view that records
            ownPresenter, shown = panel_on_recording_view(
                logic.controller, qt.QSettings(), qt.QTimer(), pythonqt_api().connect_timeout
            )
            presenter = ownPresenter
        try:
            steps = check_module(logic.controller, presenter, shown, slicer.app.processEvents)
        finally:
            if ownPresenter is not None:
                ownPresenter.close()
        for step in steps:
            log.info("SlicerMCP self-test: %s", step)

    def test_console_api(self):
        self.delayDisplay("Console API")
        node = self._addVolume("McpConsoleVolume")
        logic = SlicerMCPLogic()
        found = logic.callTool("list_scene_nodes", name="McpConsoleVolume")
        self.assertEqual([n["id"] for n in found["nodes"]], [node.GetID()])
        self.assertEqual(found["nodes"][0]["volume"]["dimensions"], [6, 5, 4])
        with self.assertRaises(Exception) as raised:
            logic.callTool("get_node", node_id="vtkMRMLScalarVolumeNode999")
        self.assertEqual(str(getattr(raised.exception, "code", "")), "INVALID_NODE_ID")

    def test_http_client(self):
        self.delayDisplay("MCP client over HTTP")
        node = self._addVolume("McpHttpVolume")
        logic = SlicerMCPLogic()
        status = logic.start(port=0)
        self.assertTrue(status["running"])
        from SlicerMCPLib.serving.endpoint import read_endpoint

        endpoint = read_endpoint()
        self.assertIsNotNone(endpoint)
        self.assertEqual(endpoint.url, status["url"])
        token = endpoint.read_token()

        from SlicerMCPLib.hosts.selftest import call_tools_over_http

        listed, details = call_tools_over_http(
            status["url"],
            token,
            [("list_scene_nodes", {"name": "McpHttpVolume"}), ("get_node", {"node_id": node.GetID()})],
            process_events=slicer.app.processEvents,
        )
        self.assertFalse(listed.is_error)
        self.assertEqual(listed.structured_content["nodes"][0]["id"], node.GetID())
        self.assertFalse(details.is_error)
        self.assertEqual(details.structured_content["name"], "McpHttpVolume")
        self.assertGreaterEqual(logic.status()["calls_served"], 2)
        logic.stop()
        self.assertIsNone(read_endpoint())
        self.assertFalse(logic.status()["running"])

    def test_restart_after_scene_close(self):
        self.delayDisplay("Restart and scene close")
        logic = SlicerMCPLogic()
        first = logic.start(port=0)
        self._addVolume("McpBeforeClose")
        slicer.mrmlScene.Clear()
        after = logic.callTool("list_scene_nodes", name="McpBeforeClose")
        self.assertEqual(after["nodes"], [])
        self._addVolume("McpAfterClose")
        self.assertEqual(len(logic.callTool("list_scene_nodes", name="McpAfterClose")["nodes"]), 1)
        second = logic.restart()
        self.assertTrue(second["running"])
        logic.stop()
        import socket

        with socket.socket() as s:  # the port is free again
            s.bind(("127.0.0.1", second["port"]))
        self.assertNotEqual(first["url"], None)
        self.delayDisplay("Test passed")
