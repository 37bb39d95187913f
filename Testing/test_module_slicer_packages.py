"""Installing SlicerMCP must not replace a Python package Slicer ships.

Testing/data/slicer_shipped_packages.json holds, per Slicer tag, the `name==version` lines of
Slicer's SuperBuild/External_python-*.cmake (written by scripts/slicer_source_data.py). Every
requirement naming one of them must accept the version every supported Slicer ships, and
hosts/dependencies.py must pin exactly those packages when it calls pip.
"""

from __future__ import annotations

import json
import re
import tomllib

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

from fixtures.module import PROJECT_ROOT
from SlicerMCPLib.hosts import dependencies

DATA = json.loads(
    (PROJECT_ROOT / "Testing" / "data" / "slicer_shipped_packages.json").read_text(encoding="utf-8")
)
SUPPORTED = DATA["supported_tags"]


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def shipped(tag: str) -> dict[str, str]:
    return {name: entry["version"] for name, entry in DATA["tags"][tag]["packages"].items()}


def requirements() -> list[Requirement]:
    return [Requirement(line) for line in dependencies.read_requirements()]


def test_the_table_covers_every_supported_slicer_from_its_source() -> None:
    assert SUPPORTED[0] == "v{}.{}.0".format(*dependencies.MIN_SLICER)
    assert "main" in SUPPORTED
    for tag in SUPPORTED + DATA["old_tags"]:
        entry = DATA["tags"][tag]
        assert re.fullmatch(r"[0-9a-f]{40}", entry["commit"]), tag
        for name in ("pydicom", "numpy", "simpleitk", "requests"):
            assert name in entry["packages"], f"{tag} ships {name}"
            assert entry["packages"][name]["file"].startswith("SuperBuild/External_"), (tag, name)
    # what the data says Slicer 5.10 ships (read from its SuperBuild files)
    assert shipped("v5.10.0")["pydicom"] == "2.4.4"
    assert Version(shipped("v5.10.0")["numpy"]).major == 2


@pytest.mark.parametrize("tag", SUPPORTED)
def test_requirements_accept_what_slicer_ships(tag: str) -> None:
    versions = shipped(tag)
    refused = [
        f"{req} refuses {versions[canonical(req.name)]}"
        for req in requirements()
        if canonical(req.name) in versions and not req.specifier.contains(versions[canonical(req.name)], True)
    ]
    assert not refused, f"Slicer {tag}: pip would replace a package Slicer ships: {refused}"


def test_the_check_catches_a_range_that_would_upgrade_slicer() -> None:
    """The rule above, on the range requirements.txt had before (pydicom>=3 replaced 5.10's 2.4.4)."""
    old = Requirement("pydicom>=3,<4")
    assert not old.specifier.contains(shipped("v5.10.0")["pydicom"])


@pytest.mark.parametrize("tag", SUPPORTED)
def test_core_dependencies_accept_what_slicer_ships(tag: str) -> None:
    """pyproject's ranges (numpy and SimpleITK included) fit every supported Slicer too."""
    project = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    versions = shipped(tag)
    for line in project["dependencies"]:
        req = Requirement(line)
        name = canonical(req.name)
        if name in versions:
            assert req.specifier.contains(versions[name], True), f"{tag}: {req} vs {versions[name]}"


def test_the_install_pins_exactly_the_packages_slicer_ships() -> None:
    names = set()
    for tag in SUPPORTED:
        names |= set(shipped(tag))
    assert set(dependencies.SLICER_SHIPPED_PACKAGES) == names
    assert dependencies.COMPATIBLE_UPGRADES <= names


def test_shipped_constraints_hold_installed_versions() -> None:
    lines = dependencies.shipped_constraints()
    by_name = {canonical(re.split(r"[=<>]", line)[0]): line for line in lines}
    assert len(by_name) == len(lines)
    assert set(by_name) <= dependencies.SLICER_SHIPPED_PACKAGES
    import importlib.metadata

    for name in ("pydicom", "numpy", "requests"):
        assert by_name[name] == f"{name}=={importlib.metadata.version(name)}"
    te = importlib.metadata.version("typing-extensions")
    assert by_name["typing-extensions"] == f"typing-extensions>={te},<{Version(te).major + 1}"
    assert "mcp" not in by_name and "pynetdicom" not in by_name
