"""The package's folders are layers: lower layers never import higher ones, and no module circles.

The import graph is read from the source with `ast` (every import, also the lazy ones inside
functions and under TYPE_CHECKING), so a new edge that breaks the layering fails here before
anyone has to untangle it. Each layer is also imported alone in a fresh interpreter, to show
that it really stands without the layers above it (and without Slicer, VTK or Qt).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

LIB = Path(__file__).resolve().parents[1] / "SlicerMCP" / "SlicerMCPLib"

#: lowest first; a package may import packages of a lower rank (and itself), never an equal or higher one
RANK = {
    "core": 0,
    "scene": 1,
    "dicom": 1,
    "fhir": 2,
    "ris": 2,
    "backends": 2,
    "tools": 3,
    "serving": 4,
    "hosts": 5,
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(LIB.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path) -> set[str]:
    """SlicerMCPLib modules `path` imports (the module itself, or the package for `from pkg import name`)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "SlicerMCPLib")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            elif node.module and node.module.split(".")[0] == "SlicerMCPLib":
                target = node.module
            else:
                continue
            for alias in node.names:  # `from pkg import module` names a module, not a package attribute
                sub = f"{target}.{alias.name}"
                found.add(sub if sub in MODULES else target)
    found.discard(name)
    return found


MODULES = {module_name(p): p for p in LIB.rglob("*.py")}
GRAPH = {name: imports_of(path) for name, path in MODULES.items()}


def layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in RANK else None


def test_every_module_lives_in_a_layer():
    top_level = sorted(m for m in MODULES if m != "SlicerMCPLib" and layer(m) is None)
    assert top_level == [], f"modules outside the layer folders: {top_level}"


def test_lower_layers_never_import_higher_ones():
    wrong = []
    for module, targets in GRAPH.items():
        here = layer(module)
        for target in targets:
            there = layer(target)
            if here is None or there is None or here == there:
                continue
            if RANK[there] >= RANK[here]:
                wrong.append(f"{module} -> {target}")
    assert wrong == [], "imports against the layering:\n" + "\n".join(sorted(wrong))


def test_no_import_circles():
    """Tarjan's strongly connected components over the whole graph: every component is one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in GRAPH.get(v, ()):
            if w not in MODULES:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for v in MODULES:
        if v not in index:
            visit(v)
    assert circles == [], f"import circles: {circles}"


def test_the_graph_reader_sees_edges():
    """The checks above would pass on an empty graph: make sure known edges are read."""
    assert "SlicerMCPLib.core.errors" in GRAPH["SlicerMCPLib.core.config"]
    assert (
        "SlicerMCPLib.scene.data_io" in GRAPH["SlicerMCPLib.backends.mrml"]
    )  # `from ..scene import data_io`
    assert "SlicerMCPLib.core.services" in GRAPH["SlicerMCPLib.tools.scene"]


def test_every_layer_says_what_it_holds_and_may_import():
    for package in RANK:
        doc = ast.get_docstring(ast.parse((LIB / package / "__init__.py").read_text(encoding="utf-8")))
        assert doc and "import" in doc, f"{package}/__init__.py needs a docstring saying what it may import"


@pytest.mark.parametrize("package", sorted(RANK, key=RANK.get))
def test_each_layer_imports_alone(package):
    """Importing every module of a layer in a fresh interpreter loads no higher layer, nor Slicer/VTK/Qt."""
    names = sorted(m for m in MODULES if layer(m) == package)
    code = (
        "import importlib, json, sys\n"
        f"for name in {names!r}:\n"
        "    importlib.import_module(name)\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    loaded = set(__import__("json").loads(done.stdout))
    higher = sorted(
        m for m in loaded if layer(m) is not None and layer(m) != package and RANK[layer(m)] >= RANK[package]
    )
    assert higher == [], f"importing {package} loaded higher layers: {higher}"
    assert not {"slicer", "vtk", "qt", "PySide6", "PythonQt"} & loaded
