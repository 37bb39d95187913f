"""Extension packaging: what CMake installs, and that every description of the extension agrees.

A file left out of SlicerMCP/CMakeLists.txt is missing from the installed extension (the
module then fails to import inside Slicer), so the lists are compared with the tree.
"""

from __future__ import annotations

import ast
import json
import struct
import tomllib
from pathlib import Path

import jsonschema
import pytest
from packaging.requirements import Requirement

from fixtures.module import (
    MODULE_CMAKE,
    MODULE_DIR,
    PROJECT_ROOT,
    cmake_list,
    cmake_set,
    module_resources,
    module_scripts,
)
from SlicerMCPLib.core.errors import ErrorCode, SlicerMCPError
from SlicerMCPLib.hosts import dependencies

TOP_CMAKE = PROJECT_ROOT / "CMakeLists.txt"
S4EXT = PROJECT_ROOT / "SlicerMCP.s4ext"
CATALOG_ENTRY = PROJECT_ROOT / "Resources" / "SlicerMCP.json"
SLICER_SHIPS = {"numpy", "simpleitk"}  # never reinstalled into Slicer's Python

# The Extensions Index schema (Slicer/Slicer Schemas/slicer-extension-catalog-entry-schema-v1.0.2.json):
# required $schema, category, scm_url; no other properties than these.
CATALOG_SCHEMA = {
    "$schema": "http://json-schema.org/draft-07/schema",
    "type": "object",
    "required": ["$schema", "category", "scm_url"],
    "additionalProperties": False,
    "properties": {
        "$schema": {"type": "string"},
        "category": {"type": "string"},
        "scm_url": {"type": "string"},
        "scm_revision": {"type": "string"},
        "scm_type": {"type": "string", "enum": ["git", "local"]},
        "build_dependencies": {"type": "array", "items": {"type": "string"}},
        "dicom_support_rule": {"type": "string"},
        "build_subdirectory": {"type": "string"},
        "enabled": {"type": "boolean"},
        "tier": {"type": "integer", "minimum": 1, "maximum": 5},
    },
}


def s4ext() -> dict[str, str]:
    out = {}
    for line in S4EXT.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition(" ")
            out[key] = value.strip()
    return out


def test_every_python_file_is_listed_in_the_module_cmake() -> None:
    listed = cmake_list(MODULE_CMAKE.read_text(encoding="utf-8"), "MODULE_PYTHON_SCRIPTS")
    on_disk = module_scripts()
    assert "SlicerMCPLib/hosts/qt_driver.py" in on_disk and "SlicerMCP.py" in on_disk
    missing = sorted(set(on_disk) - set(listed))
    stale = sorted(set(listed) - set(on_disk))
    assert not missing, f"not listed (run: python Testing/fixtures/module.py --sync): {missing}"
    assert not stale, f"listed but not on disk: {stale}"
    assert len(listed) == len(set(listed))


def test_every_resource_is_listed_in_the_module_cmake() -> None:
    listed = cmake_list(MODULE_CMAKE.read_text(encoding="utf-8"), "MODULE_PYTHON_RESOURCES")
    on_disk = module_resources()
    assert {
        "Resources/UI/SlicerMCP.ui",
        "Resources/Icons/SlicerMCP.png",
        "Resources/requirements.txt",
    } <= set(on_disk)
    assert sorted(set(on_disk) - set(listed)) == [], "run: python Testing/fixtures/module.py --sync"
    assert sorted(set(listed) - set(on_disk)) == []


def test_module_cmake_builds_with_generic_tests_and_registers_the_module_test() -> None:
    text = MODULE_CMAKE.read_text(encoding="utf-8")
    assert "set(MODULE_NAME SlicerMCP)" in text
    macro = text[text.index("slicerMacroBuildScriptedModule(") :]
    macro = macro[: macro.index(")")]
    for part in (
        "NAME ${MODULE_NAME}",
        "SCRIPTS ${MODULE_PYTHON_SCRIPTS}",
        "RESOURCES ${MODULE_PYTHON_RESOURCES}",
    ):
        assert part in macro
    assert "WITH_GENERIC_TESTS" in macro
    assert "slicer_add_python_unittest(SCRIPT ${MODULE_NAME}.py)" in text
    module_tree = ast.parse((MODULE_DIR / "SlicerMCP.py").read_text(encoding="utf-8"))
    classes = {
        n.name: [b.id for b in n.bases if isinstance(b, ast.Name)]
        for n in module_tree.body
        if isinstance(n, ast.ClassDef)
    }
    assert classes == {
        "SlicerMCP": ["ScriptedLoadableModule"],
        "SlicerMCPWidget": ["ScriptedLoadableModuleWidget"],
        "SlicerMCPLogic": ["ScriptedLoadableModuleLogic"],
        "SlicerMCPTest": ["ScriptedLoadableModuleTest"],
    }


def test_top_level_cmake_is_a_complete_extension() -> None:
    text = TOP_CMAKE.read_text(encoding="utf-8")
    for variable in (
        "EXTENSION_HOMEPAGE",
        "EXTENSION_CATEGORY",
        "EXTENSION_CONTRIBUTORS",
        "EXTENSION_DESCRIPTION",
        "EXTENSION_ICONURL",
        "EXTENSION_SCREENSHOTURLS",
        "EXTENSION_DEPENDS",
    ):
        assert cmake_set(text, variable), variable
    order = [
        "project(SlicerMCP)",
        "find_package(Slicer REQUIRED)",
        "include(${Slicer_USE_FILE})",
        "add_subdirectory(SlicerMCP)",
        "include(${Slicer_EXTENSION_GENERATE_CONFIG})",
        "include(${Slicer_EXTENSION_CPACK})",
    ]
    positions = [text.index(line) for line in order]
    assert positions == sorted(positions)


def test_s4ext_and_catalog_entry_agree_with_the_cmake_metadata() -> None:
    text = TOP_CMAKE.read_text(encoding="utf-8")
    legacy = s4ext()
    entry = json.loads(CATALOG_ENTRY.read_text(encoding="utf-8"))
    jsonschema.validate(entry, CATALOG_SCHEMA)
    assert "slicer-extension-catalog-entry-schema-v1.0." in entry["$schema"]

    category = cmake_set(text, "EXTENSION_CATEGORY")
    assert legacy["category"] == entry["category"] == category
    assert legacy["homepage"] == cmake_set(text, "EXTENSION_HOMEPAGE")
    assert legacy["contributors"] == cmake_set(text, "EXTENSION_CONTRIBUTORS")
    assert legacy["description"] == cmake_set(text, "EXTENSION_DESCRIPTION")
    assert legacy["iconurl"] == cmake_set(text, "EXTENSION_ICONURL")
    assert legacy["screenshoturls"] == cmake_set(text, "EXTENSION_SCREENSHOTURLS")
    assert legacy["depends"] == cmake_set(text, "EXTENSION_DEPENDS")
    assert legacy["scmurl"] == entry["scm_url"] and legacy["scmrevision"] == entry.get("scm_revision", "")
    assert legacy["build_subdirectory"] == entry.get("build_subdirectory", ".")
    assert int(legacy["tier"]) == entry.get("tier", 1)
    deps = cmake_set(text, "EXTENSION_DEPENDS")
    assert entry.get("build_dependencies", []) == ([] if deps == "NA" else deps.split())
    # the catalog icon and screenshot are files of this repository
    repo_raw = "https://raw.githubusercontent.com/SlicerMCP/SlicerMCP/main/"
    for url in (cmake_set(text, "EXTENSION_ICONURL"), *cmake_set(text, "EXTENSION_SCREENSHOTURLS").split()):
        assert url.startswith(repo_raw) and (PROJECT_ROOT / url[len(repo_raw) :]).is_file(), url


def test_module_category_matches_the_extension() -> None:
    source = (MODULE_DIR / "SlicerMCP.py").read_text(encoding="utf-8")
    category = cmake_set(TOP_CMAKE.read_text(encoding="utf-8"), "EXTENSION_CATEGORY")
    assert f'translate("qSlicerAbstractCoreModule", "{category}")' in source
    assert 'self.parent.title = _("SlicerMCP")' in source


@pytest.mark.parametrize("path", ["SlicerMCP/Resources/Icons/SlicerMCP.png", "Resources/SlicerMCP.png"])
def test_icons_are_128_pixel_pngs(path: str) -> None:
    data = (PROJECT_ROOT / path).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert (width, height) == (128, 128)


def test_requirements_match_the_core_dependencies() -> None:
    pinned = {Requirement(line).name.lower(): Requirement(line) for line in dependencies.read_requirements()}
    project = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    core = {Requirement(d).name.lower() for d in project["dependencies"]}
    assert set(pinned) == core - SLICER_SHIPS
    for name, req in pinned.items():
        assert req.specifier, f"{name} has no version range"
        assert any(s.operator in ("<", "<=", "==", "~=") for s in req.specifier), f"{name} has no upper bound"
    # the versions these tests run with satisfy the ranges Slicer will install
    assert dependencies.missing_requirements([str(r) for r in pinned.values()]) == []


def test_missing_requirements_detects_absent_and_out_of_range() -> None:
    assert dependencies.missing_requirements(["surely-not-installed-pkg-xyz>=1"]) == [
        "surely-not-installed-pkg-xyz>=1"
    ]
    assert dependencies.missing_requirements(["pydantic<1"]) == ["pydantic<1"]
    assert dependencies.missing_requirements(["pydantic>=2", "pywin32>=1; sys_platform == 'win32'"]) == []


def test_slicer_version_gate() -> None:
    assert dependencies.slicer_version_problem(5, 10) is None
    assert dependencies.slicer_version_problem(6, 0) is None
    problem = dependencies.slicer_version_problem(5, 8)
    assert problem and "5.10" in problem and "5.8" in problem


def test_install_reports_offline_clearly(tmp_path) -> None:
    reqs = tmp_path / "requirements.txt"
    reqs.write_text("# comment\nsurely-not-installed-pkg-xyz>=1,<2\n--index-url https://example.invalid\n")
    # no package index reachable (the condition a user hits offline)
    with pytest.raises(SlicerMCPError) as info:
        dependencies.install_requirements(object(), path=reqs, reachable=lambda: False)
    err = info.value
    assert err.code == ErrorCode.CONFIG_ERROR
    assert "cannot be reached" in err.message and str(reqs) in err.message
    # the hand-run command keeps Slicer's packages: the constraints file is already there
    constraints = err.message.rsplit("-c ", 1)[1]
    assert Path(constraints).read_text().split() == dependencies.shipped_constraints()
    assert err.details["missing"] == ["surely-not-installed-pkg-xyz>=1,<2"]
    # nothing missing: nothing to do, Slicer's pip helpers are never touched
    reqs.write_text("pydantic>=2,<3\n")
    assert dependencies.install_requirements(object(), path=reqs, reachable=lambda: False) == []


def test_module_file_parses_on_old_slicer_python() -> None:
    """Slicer 5.0-5.8 (Python 3.9) must still load SlicerMCP.py to show why it cannot run."""
    source = (MODULE_DIR / "SlicerMCP.py").read_text(encoding="utf-8")
    ast.parse(source, feature_version=(3, 9))
    tree = ast.parse(source)
    top_imports = {
        alias.name.split(".")[0]
        for node in tree.body
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in (node.names if isinstance(node, ast.Import) else [ast.alias(node.module or "")])
    }
    # SlicerMCPLib (Python 3.11+, pip packages) is imported only inside functions, after the checks
    assert "SlicerMCPLib" not in top_imports
    assert "from __future__ import annotations" in source


@pytest.mark.parametrize(
    "layout",
    [
        {"packaging.py": "API"},  # Slicer 5.12
        {"pydeps.py": "API", "packaging.py": "def pip_install(*a, **k): pass\n"},  # later Slicer
    ],
)
def test_install_uses_the_slicer_module_that_has_pip_ensure(tmp_path, monkeypatch, layout) -> None:
    """A FAKE `slicer` package (no Slicer here): its pip_ensure records what it was asked."""
    api = (
        "calls = []\n"
        "def load_requirements(path):\n    return ['from ' + path]\n"
        "def pip_ensure(reqs, constraints=None, requester=None):\n"
        "    calls.append((reqs, requester, open(constraints).read().splitlines()))\n"
    )
    name = f"fake_slicer_{'_'.join(sorted(layout)).replace('.', '_')}"  # one per layout (sys.modules)
    package = tmp_path / name
    package.mkdir()
    (package / "__init__.py").write_text("")
    for file, text in layout.items():
        (package / file).write_text(api if text == "API" else text)
    monkeypatch.syspath_prepend(str(tmp_path))
    import importlib.metadata

    fake = importlib.import_module(name)
    reqs = tmp_path / "requirements.txt"
    reqs.write_text("surely-not-installed-pkg-xyz>=1,<2\n")
    with pytest.raises(SlicerMCPError) as info:  # the fake installs nothing: still missing afterwards
        dependencies.install_requirements(fake, path=reqs, reachable=lambda: True)
    assert "still missing" in info.value.message
    used = importlib.import_module(f"{name}.pydeps" if "pydeps.py" in layout else f"{name}.packaging")
    [(asked, requester, constraints)] = used.calls
    assert (asked, requester) == ([f"from {reqs}"], "SlicerMCP")
    # the shipped packages installed here are held where they are
    assert constraints == dependencies.shipped_constraints()
    assert f"pydicom=={importlib.metadata.version('pydicom')}" in constraints
