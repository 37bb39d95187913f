"""Every Slicer, Qt and CTK name our in-Slicer code uses exists in every supported Slicer.

The uses are read from our code with `ast` (Testing/fixtures/slicer_api.py); the names each
Slicer offers come from its source at the release tag, extracted once into
Testing/data/slicer_api_names.json by scripts/slicer_source_data.py (the `def`s of
slicer/util.py, what slicer/__init__.py defines, module names, the headers of the classes
we reach). Qt, CTK and VTK members are checked against the documented list in the same file.
A new name in our code fails here until the script is run again and finds it in Slicer.
"""

from __future__ import annotations

import json
from functools import cache

import pytest

from fixtures.module import PROJECT_ROOT
from fixtures.slicer_api import Provider, Use, check, collect, dynamic_uses

DATA = json.loads((PROJECT_ROOT / "Testing" / "data" / "slicer_api_names.json").read_text(encoding="utf-8"))
SUPPORTED = DATA["supported_tags"]
KNOWLEDGE = DATA["knowledge"]
#: the module file must load on old Slicer too, to say why it cannot run there
MODULE_FILE = "SlicerMCP/SlicerMCP.py"


class DataTag(Provider):
    """One tag of the extracted data."""

    def __init__(self, tag: str):
        self.data = DATA["tags"][tag]

    def util(self, name: str) -> list[str] | None:
        return self.data["util"].get(name)

    def top_level(self, name: str) -> bool:
        return name in self.data["top_level"]

    def module(self, name: str) -> bool:
        return name in self.data["modules"]

    def submodule(self, name: str) -> dict[str, list[str]] | None:
        return self.data["submodules"].get(name)

    def slicer_class(self, name: str) -> tuple[str | None, bool]:
        entry = self.data["classes"].get(name)
        return (entry["base"], True) if entry else (None, False)

    def has_member(self, cls: str, member: str) -> bool:
        return member in self.data["classes"][cls]["members"]


@cache
def uses() -> list[Use]:
    return collect() + dynamic_uses()


def problems(tag: str, selected: list[Use]) -> list[str]:
    provider = DataTag(tag)
    out = []
    for use in selected:
        why = check(use, provider, KNOWLEDGE)
        if why:
            out.append(f"{use.file}:{use.line} {use.chain}: {why}")
    return out


def test_the_collector_sees_our_slicer_code() -> None:
    chains = {u.chain for u in uses()}
    files = {u.file for u in uses()}
    assert {
        "SlicerMCP/SlicerMCP.py",
        "SlicerMCP/SlicerMCPLib/scene/app.py",
        "SlicerMCP/SlicerMCPLib/hosts/dependencies.py",
        "SlicerMCP/SlicerMCPLib/backends/webserver_exec.py",
    } <= files
    for chain in (
        "slicer.util.tryWithErrorDisplay",  # the module
        "slicer.i18n.tr",  # an import from a slicer submodule
        "slicer.app.layoutManager().threeDWidget().threeDView().lookFromViewAxis",  # through locals
        "slicer.util.pip_install",  # dependencies.py, slicer passed in
        "slicer.mrmlScene.GetNodeByID",  # a /slicer/exec snippet
        "ctk.ctkAxesWidget",
        "qt.QTimer",
    ):
        assert chain in chains, chain
    assert len(chains) > 100
    # reached with getattr: the layout names of set_layout and the look-from axes of screenshots
    assert "slicer.vtkMRMLLayoutNode.SlicerLayoutCompareView" in chains
    assert "ctk.ctkAxesWidget.Anterior" in chains


@pytest.mark.parametrize("tag", SUPPORTED)
def test_every_name_we_use_is_in_this_slicer(tag: str) -> None:
    missing = problems(tag, uses())
    assert not missing, (
        f"not in Slicer {tag} (or the data is stale: run scripts/slicer_source_data.py):\n"
        + "\n".join(missing)
    )


@pytest.mark.parametrize("tag", DATA["old_tags"])
def test_the_module_file_loads_on_old_slicer(tag: str) -> None:
    """Slicer 5.6/5.8 must import SlicerMCP.py and run its version check to tell the user."""
    missing = problems(tag, [u for u in uses() if u.file == MODULE_FILE])
    assert not missing, "\n".join(missing)


def test_the_check_rejects_names_slicer_does_not_have() -> None:
    tag = DataTag(SUPPORTED[0])
    bad = [
        Use("slicer.util.tryWithErrorDisplayX", "x.py", 1),
        Use("slicer.util.tryWithErrorDisplay", "x.py", 1, keywords=("busyCursor",)),
        Use("slicer.app.layoutManager().threeDWidgetX", "x.py", 1),
        Use("slicer.app.layoutManager().threeDWidget().threeDView().lookFromAxis", "x.py", 1),
        Use("slicer.modules.nosuchmodule", "x.py", 1),
        Use("slicer.vtkMRMLNoSuchNode", "x.py", 1),
        Use("slicer.vtkMRMLLayoutNode.SlicerLayoutNoSuchView", "x.py", 1),
        Use("slicer.i18n.nosuchfunction", "x.py", 1),
        Use("qt.QNoSuchClass", "x.py", 1),
        Use("qt.QTimer().setIntervalX", "x.py", 1),
        Use("ctk.ctkAxesWidget.Sideways", "x.py", 1),
    ]
    for use in bad:
        assert check(use, tag, KNOWLEDGE), use.chain
    # Slicer 5.10 has no slicer.packaging module (5.12 added it with pip_ensure)
    assert DataTag("v5.10.0").submodule("packaging") is None


@pytest.mark.parametrize("tag", SUPPORTED)
def test_every_slicer_has_the_pip_helper_dependencies_uses(tag: str) -> None:
    """hosts/dependencies.py: pip_ensure(requirements, constraints=, requester=) or util.pip_install."""
    data = DATA["tags"][tag]
    ensure = [
        m
        for m in (data["submodules"].get("pydeps"), data["submodules"].get("packaging"))
        if m and "pip_ensure" in m and "load_requirements" in m
    ]
    if ensure:
        params = ensure[0]["pip_ensure"]
        assert "constraints" in params and "requester" in params
    else:
        assert "pip_install" in data["util"], f"Slicer {tag} has neither pip_ensure nor pip_install"
        assert "createProgressDialog" in data["util"]


def test_the_qt_socket_notifier_wakeup_is_documented() -> None:
    """The QSocketNotifier wake-up (Qt5: QSocketNotifier(int fd, Read), activated(int), setEnabled)."""
    notifier = KNOWLEDGE["classes"]["QSocketNotifier"]
    assert {"Read", "activated(int)", "setEnabled"} <= set(notifier["members"])
    for chain in (
        "qt.QSocketNotifier",
        "qt.QSocketNotifier.Read",
        "qt.QSocketNotifier().setEnabled",
        "qt.QSocketNotifier().activated.connect",  # PythonQt's signal attribute
    ):
        assert check(Use(chain, "x.py", 1), DataTag(SUPPORTED[0]), KNOWLEDGE) is None, chain
    assert check(Use("qt.QSocketNotifier().connect", "x.py", 1), DataTag(SUPPORTED[0]), KNOWLEDGE) is None
