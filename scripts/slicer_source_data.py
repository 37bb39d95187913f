"""Read Slicer's own source at each release tag and write the test data the module checks use.

  git clone --bare https://github.com/Slicer/Slicer.git /tmp/Slicer.git   (or any mirror of it)
  .venv/bin/python scripts/slicer_source_data.py --slicer-git /tmp/Slicer.git

writes
  Testing/data/slicer_shipped_packages.json  the Python packages each Slicer installs into its
      Python (the `name==version` lines of SuperBuild/External_python-*.cmake; SimpleITK from
      External_SimpleITK.cmake before Slicer ships it as a wheel), with file and tag;
  Testing/data/slicer_api_names.json  per tag: the `def`s of Base/Python/slicer/util.py with
      their parameters, the names slicer/__init__.py defines or documents, its submodules,
      the module names (`slicer.modules.<name>`), and for each Slicer class our code reaches
      its header, base class and which of the members we use it declares; plus the Qt5, CTK
      and VTK classes and members we use (documented by hand below: those are not in Slicer's tree).
Nothing is imported from Slicer; git is read with `git show` and `git ls-tree`.
"""

from __future__ import annotations

import argparse
import ast
import json
import re
import subprocess
import sys
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "Testing"))
sys.path.insert(0, str(ROOT / "SlicerMCP"))

from fixtures.slicer_api import Provider, check, collect, dynamic_uses  # noqa: E402

SUPPORTED_TAGS = ["v5.10.0", "v5.12.0", "v5.12.3", "main"]
#: old releases: listed so the docs can say what they ship; the module only loads there to say why not
OLD_TAGS = ["v5.6.0", "v5.8.0"]
PACKAGES_OUT = ROOT / "Testing" / "data" / "slicer_shipped_packages.json"
API_OUT = ROOT / "Testing" / "data" / "slicer_api_names.json"
#: submodules of Base/Python/slicer whose names we import or call (dependencies.py finds pip_ensure there)
SUBMODULES = ("ScriptedLoadableModule", "i18n", "packaging", "pydeps")
REQUIREMENT_LINE = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9_.-]*)==([^\s\\]+)", re.M)

# Qt 5 (PythonQt wraps Qt 5.15 in Slicer 5.x), CTK and VTK members we use, from their API
# references (doc.qt.io/qt-5, commontk/CTK headers, vtk.org/doc). `members` holds methods,
# enum values, signals (Qt5 signature) and properties; `base` is where the rest is inherited.
KNOWLEDGE = {
    "classes": {
        "QObject": {"members": ["connect", "event", "blockSignals", "deleteLater"], "base": None},
        "QCoreApplication": {
            "members": ["postEvent", "processEvents", "applicationVersion", "instance"],
            "base": "QObject",
        },
        "QGuiApplication": {"members": ["clipboard"], "base": "QCoreApplication"},
        "QApplication": {"members": [], "base": "QGuiApplication"},
        "QClipboard": {"members": ["setText", "text"], "base": "QObject"},
        "QEvent": {"members": ["registerEventType", "type"], "base": None},
        "QTimer": {
            # PythonQt connects a signal by its signature (`connect("timeout()", slot)`) or as an attribute
            "members": ["setInterval", "start", "stop", "isActive", "timeout()", "timeout", "setSingleShot"],
            "base": "QObject",
        },
        "QSocketNotifier": {
            # QSocketNotifier(qintptr socket, QSocketNotifier::Type type, QObject *parent = nullptr);
            # Qt5 signal activated(int socket) (Qt 6 adds QSocketDescriptor, QSocketNotifier::Type)
            "members": [
                "Read",
                "Write",
                "Exception",
                "activated(int)",
                "activated",
                "setEnabled",
                "isEnabled",
                "socket",
            ],
            "base": "QObject",
        },
        "QSettings": {
            "members": ["value", "setValue", "contains", "remove", "sync", "beginGroup", "endGroup"],
            "base": "QObject",
        },
        "QFileDialog": {"members": ["getOpenFileName"], "base": "QWidget"},
        "QTableWidgetItem": {"members": ["setText", "text"], "base": None},
        "QWidget": {"members": ["grab", "setVisible", "visible", "enabled"], "base": "QObject"},
        "QMainWindow": {"members": [], "base": "QWidget"},
        "QPixmap": {"members": ["scaled", "save", "width", "height"], "base": None},
        "QBuffer": {"members": ["open", "data"], "base": "QIODevice"},
        "QIODevice": {"members": ["WriteOnly", "ReadOnly"], "base": "QObject"},
        "QByteArray": {"members": ["data"], "base": None},
        "Qt": {"members": ["KeepAspectRatio", "SmoothTransformation"], "base": None},
        "PythonQtSignal": {"members": ["connect", "disconnect", "emit"], "base": None},
        "QProgressDialog": {"members": ["labelText", "value", "close"], "base": "QWidget"},
        # CTK (Libs/Widgets/ctkAxesWidget.h, Libs/Visualization/VTK/Widgets/ctkVTK*View.h)
        "ctkAxesWidget": {
            "members": ["None", "Right", "Left", "Superior", "Inferior", "Anterior", "Posterior"],
            "base": "QWidget",
        },
        "ctkVTKRenderView": {"members": [], "base": "ctkVTKAbstractView"},
        "ctkVTKSliceView": {"members": [], "base": "ctkVTKAbstractView"},
        "ctkVTKAbstractView": {"members": ["forceRender"], "base": "QWidget"},
        "ctkLayoutFactory": {"members": ["viewport"], "base": "ctkLayoutManager"},
        "ctkLayoutManager": {"members": ["viewport"], "base": "QObject"},
        # VTK 9 (vtkObject.h, vtkImageData.h, vtkDataSet.h, vtkDataSetAttributes.h)
        "vtkObject": {"members": ["GetClassName", "IsA", "GetMTime"], "base": None},
        "vtkImageData": {
            "members": ["GetSpacing", "GetPointData", "GetDimensions", "GetExtent", "SetExtent"],
            "base": "vtkObject",
        },
        "vtkPointData": {"members": ["GetScalars", "SetScalars"], "base": "vtkObject"},
        # VTK 9 filters the analysis tools drive (vtkAlgorithm.h, vtkImageAlgorithm.h, vtkTableAlgorithm.h)
        "vtkAlgorithm": {"members": ["Update", "SetInputData", "GetOutput"], "base": "vtkObject"},
        "vtkImageAlgorithm": {"members": ["SetInputData", "GetOutput"], "base": "vtkAlgorithm"},
        "vtkTableAlgorithm": {"members": ["SetInputData", "GetOutput"], "base": "vtkAlgorithm"},
        "vtkSimpleImageToImageFilter": {"members": [], "base": "vtkImageAlgorithm"},
        "vtkTable": {"members": ["GetColumnByName"], "base": "vtkObject"},
        "vtkDataArray": {"members": ["GetComponent"], "base": "vtkObject"},
    },
    # what a call (`name()`) or an attribute (`name`) gives, where a chain goes on after it
    "returns": {
        "QTimer.timeout": "PythonQtSignal",
        "QSocketNotifier.activated": "PythonQtSignal",
        "slicer.util.mainWindow()": "qSlicerMainWindow",
        "slicer.util.findChild()": "QWidget",
        "slicer.util.createProgressDialog()": "QProgressDialog",
        "QGuiApplication.clipboard()": "QClipboard",
        "QWidget.grab()": "QPixmap",
        "QPixmap.scaled()": "QPixmap",
        "QBuffer.data()": "QByteArray",
        "qSlicerApplication.layoutManager()": "qSlicerLayoutManager",
        "qSlicerApplication.commandOptions()": "qSlicerCommandOptions",
        "qMRMLLayoutManager.threeDWidget()": "qMRMLThreeDWidget",
        "qMRMLLayoutManager.sliceWidget()": "qMRMLSliceWidget",
        "qMRMLLayoutManager.layoutLogic()": "vtkMRMLLayoutLogic",
        "ctkLayoutManager.viewport()": "QWidget",
        "qMRMLLayoutManager.viewport()": "QWidget",
        "qMRMLThreeDWidget.threeDView()": "qMRMLThreeDView",
        "qMRMLSliceWidget.sliceView()": "qMRMLSliceView",
        "qMRMLSliceWidget.sliceLogic()": "vtkMRMLSliceLogic",
        "qSlicerAbstractCoreModule.logic()": "vtkMRMLAbstractLogic",
        "vtkMRMLScene.GetNodeByID()": "vtkMRMLSegmentationNode|vtkMRMLLabelMapVolumeNode",
        "vtkMRMLScene.AddNewNodeByClass()": "vtkMRMLScalarVolumeNode",
        "vtkMRMLScene.GetNthNode()": "vtkMRMLNode",
        "vtkMRMLSegmentationNode.GetSegmentation()": "vtkSegmentation",
        "vtkSegmentation.GetSegment()": "vtkSegment",
        "vtkSegmentation.GetNthSegment()": "vtkSegment",
        "vtkSegment.GetRepresentation()": "vtkOrientedImageData",
        "vtkMRMLVolumeNode.GetImageData()": "vtkImageData",
        "vtkMRMLDisplayableNode.GetDisplayNode()": "vtkMRMLLabelMapVolumeDisplayNode",
        "vtkDataSet.GetPointData()": "vtkPointData",
        "vtkImageData.GetPointData()": "vtkPointData",
        "vtkTableAlgorithm.GetOutput()": "vtkTable",
        "vtkTable.GetColumnByName()": "vtkDataArray",
        "vtkMRMLThreeDViewDisplayableManagerFactory.GetInstance()": "vtkMRMLThreeDViewDisplayableManagerFactory",
        "vtkMRMLLayoutLogic.GetLayoutNode()": "vtkMRMLLayoutNode",
    },
    # `slicer.<name>` attributes that are objects, and their classes
    "instances": {"app": "qSlicerApplication", "mrmlScene": "vtkMRMLScene"},
}


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", f"--git-dir={repo}", *args], check=True, capture_output=True, text=True
    ).stdout


class GitTag(Provider):
    """One tag of Slicer's repository; records the classes and members the checks asked for."""

    def __init__(self, repo: Path, tag: str):
        self.repo, self.tag = repo, tag
        self.files = git(repo, "ls-tree", "-r", "--name-only", tag).splitlines()
        self.headers = {}
        for path in self.files:
            if path.endswith(".h"):
                self.headers.setdefault(path.rsplit("/", 1)[-1][:-2], path)
        self.classes: dict[str, dict] = {}

    def show(self, path: str) -> str:
        return git(self.repo, "show", f"{self.tag}:{path}")

    @cache  # noqa: B019 (a few objects, alive for the whole run)
    def util_defs(self) -> dict[str, list[str]]:
        return self.defs("Base/Python/slicer/util.py")

    def defs(self, path: str) -> dict[str, list[str]]:
        """Top-level functions (their parameters, `**` for any keyword) and classes of a file."""
        tree = ast.parse(self.show(path))
        out = {}
        for node in tree.body:
            if isinstance(node, ast.FunctionDef):
                a = node.args
                params = [p.arg for p in [*a.posonlyargs, *a.args, *a.kwonlyargs]]
                out[node.name] = params + (["**"] if a.kwarg else [])
            elif isinstance(node, ast.ClassDef):
                out[node.name] = ["**"]
        return out

    @cache  # noqa: B019
    def top_names(self) -> list[str]:
        text = self.show("Base/Python/slicer/__init__.py")
        names = set(re.findall(r"^\.\. py:attribute:: (\w+)", text, re.M))
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.ClassDef):
                names.add(node.name)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                names.add(node.id)
            elif isinstance(node, ast.ImportFrom | ast.Import):
                names.update((a.asname or a.name).split(".")[0] for a in node.names if a.name != "*")
        for path in self.files:
            if path.startswith("Base/Python/slicer/") and path.count("/") >= 3:
                part = path.split("/")[3]
                if part.endswith(".py"):
                    names.add(part[:-3])
                elif "." not in part:
                    names.add(part)
        return sorted(n for n in names if not n.startswith("_"))

    @cache  # noqa: B019
    def module_names(self) -> list[str]:
        out = set()
        for path in self.files:
            parts = path.split("/")
            if len(parts) > 3 and parts[0] == "Modules" and parts[1] in ("Loadable", "Scripted", "CLI"):
                out.add(parts[2].lower())
        return sorted(out)

    def util(self, name: str) -> list[str] | None:
        return self.util_defs().get(name)

    @cache  # noqa: B019
    def submodule(self, name: str) -> dict[str, list[str]] | None:
        path = f"Base/Python/slicer/{name}.py"
        return self.defs(path) if path in self.files else None

    def top_level(self, name: str) -> bool:
        return name in self.top_names()

    def module(self, name: str) -> bool:
        return name in self.module_names()

    def _header(self, cls: str) -> str | None:
        path = self.headers.get(cls)
        return self.show(path) if path else None

    def slicer_class(self, name: str) -> tuple[str | None, bool]:
        if name not in self.classes:
            text = self._header(name)
            if text is None:
                return None, False
            found = re.search(rf"class\s+(?:\w+_EXPORT\s+)?{name}\s*:\s*public\s+(\w+)", text)
            self.classes[name] = {
                "header": self.headers[name],
                "base": found.group(1) if found else None,
                "members": [],
            }
        return self.classes[name]["base"], True

    def has_member(self, cls: str, member: str) -> bool:
        text = self._header(cls) or ""
        # VTK's vtkGet...Macro(Name ...) / vtkSet...Macro(Name ...) declare GetName / SetName
        macros = {f"{kind}{name}" for kind, name in re.findall(r"vtk(Get|Set)\w*Macro\s*\(\s*(\w+)", text)}
        if member in macros or re.search(rf"\b{re.escape(member)}\b", text):
            if member not in self.classes[cls]["members"]:
                self.classes[cls]["members"].append(member)
            return True
        return False


def shipped_packages(repo: Path, tag: str) -> dict:
    files = [p for p in git(repo, "ls-tree", "--name-only", tag, "SuperBuild/").splitlines()]
    packages: dict[str, dict] = {}
    for path in sorted(f for f in files if re.search(r"SuperBuild/External_python-[^/]+\.cmake$", f)):
        for name, version in REQUIREMENT_LINE.findall(git(repo, "show", f"{tag}:{path}")):
            key = re.sub(r"[-_.]+", "-", name).lower()
            packages.setdefault(key, {"version": version, "file": path})
    if "simpleitk" not in packages and "SuperBuild/External_SimpleITK.cmake" in files:
        text = git(repo, "show", f"{tag}:SuperBuild/External_SimpleITK.cmake")
        found = re.search(r"slicer-v(\d+\.\d+\.\d+)", text)
        if found:
            packages["simpleitk"] = {
                "version": found.group(1),
                "file": "SuperBuild/External_SimpleITK.cmake",
                "note": "built from Slicer's SimpleITK fork; the version is the one in the pinned tag's name",
            }
    python = re.search(
        r'Slicer_REQUIRED_PYTHON_VERSION "([\d.]+)"', git(repo, "show", f"{tag}:CMakeLists.txt")
    )
    return {
        "commit": git(repo, "rev-parse", f"{tag}^{{commit}}").strip(),
        "python": python.group(1) if python else None,
        "packages": dict(sorted(packages.items())),
    }


def api_names(repo: Path, tag: str, uses: list) -> tuple[dict, list[str]]:
    provider = GitTag(repo, tag)
    problems = []
    for use in uses:
        why = check(use, provider, KNOWLEDGE)
        if why:
            problems.append(f"{tag}: {use.file}:{use.line} {use.chain}: {why}")
    data = {
        "commit": git(repo, "rev-parse", f"{tag}^{{commit}}").strip(),
        "util": provider.util_defs(),
        "top_level": provider.top_names(),
        "modules": provider.module_names(),
        "submodules": {name: provider.submodule(name) for name in SUBMODULES},
        "classes": {k: {**v, "members": sorted(v["members"])} for k, v in sorted(provider.classes.items())},
    }
    return data, problems


def dump(data: dict) -> str:
    """JSON with each list of names on one line, so the file stays short and diffs stay readable."""
    text = json.dumps(data, indent=1)
    return (
        re.sub(
            r"\[\s*([^\[\]{}]*?)\s*\]",
            lambda m: "[" + ", ".join(re.split(r",\s*\n\s*", m.group(1))) + "]",
            text,
        )
        + "\n"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--slicer-git", type=Path, required=True, help="a bare clone (or .git) of Slicer/Slicer"
    )
    args = parser.parse_args()
    repo = args.slicer_git
    packages = {
        "about": "Python packages each Slicer release installs into its own Python, read from its SuperBuild files",
        "command": "python scripts/slicer_source_data.py --slicer-git <bare clone of Slicer/Slicer>",
        "supported_tags": SUPPORTED_TAGS,
        "old_tags": OLD_TAGS,
        "tags": {tag: shipped_packages(repo, tag) for tag in OLD_TAGS + SUPPORTED_TAGS},
    }
    uses = collect() + dynamic_uses()
    api = {
        "about": "Slicer API names our in-Slicer code uses, looked up in Slicer's source per tag",
        "command": packages["command"],
        "supported_tags": SUPPORTED_TAGS,
        "old_tags": OLD_TAGS,
        "about_knowledge": (
            "classes: Qt 5.15 (PythonQt in Slicer 5.x), CTK and VTK 9 members we use, written by hand from "
            "doc.qt.io/qt-5, commontk/CTK and vtk.org headers; Qt signals with their Qt5 signature. "
            "returns: what a call returns where a chain goes on. instances: slicer.app and slicer.mrmlScene. "
            "A Slicer class member counts as present when its header (or a Slicer base class header) names it "
            "or declares it with vtkGet/vtkSet macros."
        ),
        "knowledge": KNOWLEDGE,
        "tags": {},
    }
    problems = []
    for tag in OLD_TAGS + SUPPORTED_TAGS:
        api["tags"][tag], found = api_names(repo, tag, uses)
        problems += found
    PACKAGES_OUT.parent.mkdir(parents=True, exist_ok=True)
    PACKAGES_OUT.write_text(dump(packages), encoding="utf-8")
    API_OUT.write_text(dump(api), encoding="utf-8")
    print(f"{len(uses)} uses, {len({u.chain for u in uses})} distinct chains", file=sys.stderr)
    for line in problems:
        print(line, file=sys.stderr)
    print(f"{len(problems)} uses not found", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
