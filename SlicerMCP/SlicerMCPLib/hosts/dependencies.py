"""Can the module run in this Slicer? The Slicer version check and the pip dependencies.

This file imports only the standard library (and `packaging`, which Slicer ships), because
it runs before the pip packages the rest of SlicerMCPLib needs are installed. The install
itself uses Slicer's own pip helpers: `pip_ensure` (in `slicer.packaging` on 5.12, in
`slicer.pydeps` later; it asks the user and shows progress), `slicer.util.pip_install` on 5.10.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import logging
import os
import re
import socket
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..core.errors import ErrorCode, SlicerMCPError
from ..core.localhost import user_config_dir, write_private_file

log = logging.getLogger(__name__)

MIN_SLICER = (5, 10)
REQUESTER = "SlicerMCP"
PACKAGE_INDEX = ("pypi.org", 443)
CONSTRAINTS_FILE = "slicer-constraints.txt"

#: Python packages Slicer 5.10 and newer install into their own Python (SuperBuild/External_python-*.cmake;
#: Testing/data/slicer_shipped_packages.json, and a test keeps this list equal to it). Installing
#: SlicerMCP must never replace them: Slicer's DICOM module, extension manager and others use them.
SLICER_SHIPPED_PACKAGES = frozenset(
    {
        "certifi", "cffi", "chardet", "charset-normalizer", "couchdb", "cryptography", "dcmqi",
        "deprecated", "dicomweb-client", "gitdb", "gitpython", "highdicom", "idna", "numpy",
        "packaging", "pillow", "pip", "pycparser", "pydicom", "pygithub", "pyjpegls", "pyjwt",
        "pynacl", "pyparsing", "python-dateutil", "requests", "retrying", "scipy", "setuptools",
        "simpleitk", "six", "smmap", "typing-extensions", "urllib3", "wheel", "wrapt",
    }
)  # fmt: skip
#: shipped packages that may move up within their major version: mcp 2 needs typing-extensions
#: >= 4.14.1 (Slicer 5.10 ships 4.14.0) and idna >= 3.18 (5.10 ships 3.10, 5.12 ships 3.16);
#: both keep their API within a major, and no Slicer code imports them directly.
COMPATIBLE_UPGRADES = frozenset({"typing-extensions", "idna"})
#: requirements that only fit beside a shipped package at these versions: elsewhere they are not
#: installed and the tools needing them answer NOT_SUPPORTED. highdicom needs pydicom 3 (0.22, the
#: last for pydicom 2, breaks on the numpy 2 that Slicer 5.10 ships); Slicer 5.12+ ships it.
NEEDS_SHIPPED = {"highdicom": "pydicom>=3"}


def requirements_file() -> Path:
    """`SlicerMCP/Resources/requirements.txt`: one file with the pinned ranges."""
    return Path(__file__).resolve().parents[2] / "Resources" / "requirements.txt"


def slicer_version_problem(major: int, minor: int) -> str | None:
    """Why this Slicer cannot run the module, or None when it can."""
    if (major, minor) >= MIN_SLICER:
        return None
    need = ".".join(map(str, MIN_SLICER))
    return (
        f"SlicerMCP needs 3D Slicer {need} or newer (Python 3.12); this is Slicer {major}.{minor}. "
        f"Install Slicer {need} or a newer release from https://download.slicer.org and add SlicerMCP there."
    )


def read_requirements(path: Path | None = None) -> list[str]:
    """Requirement lines of the file, without comments, blank lines and pip options."""
    lines = (path or requirements_file()).read_text(encoding="utf-8").splitlines()
    out = []
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            out.append(line)
    return out


def missing_requirements(requirements: list[str]) -> list[str]:
    """The requirements not satisfied by what is installed (missing, or a version out of range)."""
    from packaging.requirements import Requirement

    missing = []
    for line in requirements:
        req = Requirement(line)
        if req.marker is not None and not req.marker.evaluate():
            continue
        if not _fits_beside_shipped(req.name):
            continue
        try:
            installed = importlib.metadata.version(req.name)
        except importlib.metadata.PackageNotFoundError:
            missing.append(line)
            continue
        if req.specifier and not req.specifier.contains(installed, prereleases=True):
            missing.append(line)
    return missing


def _fits_beside_shipped(name: str) -> bool:
    """False when the requirement needs a shipped package at a version this Python does not have."""
    from packaging.requirements import Requirement

    need = NEEDS_SHIPPED.get(_canonical(name))
    if need is None:
        return True
    prerequisite = Requirement(need)
    try:
        return prerequisite.specifier.contains(
            importlib.metadata.version(prerequisite.name), prereleases=True
        )
    except importlib.metadata.PackageNotFoundError:
        return True  # pip installs the prerequisite along with it


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def shipped_constraints() -> list[str]:
    """pip constraint lines that hold every installed Slicer-shipped package where it is.

    `name==installed`, or `name>=installed,<next major` for COMPATIBLE_UPGRADES. With them pip
    picks versions of our packages that fit what Slicer ships (pynetdicom 2.1 beside Slicer
    5.10's pydicom 2.4) or fails with a conflict, instead of replacing Slicer's package."""
    lines, seen = [], set()
    for dist in importlib.metadata.distributions():  # the first of a name is the one Python imports
        name = _canonical(dist.metadata["Name"] or "")
        if name not in SLICER_SHIPPED_PACKAGES or name in seen:
            continue
        seen.add(name)
        version = dist.version
        major = re.match(r"\d+", version)
        if name in COMPATIBLE_UPGRADES and major:
            lines.append(f"{name}>={version},<{int(major.group()) + 1}")
        else:
            lines.append(f"{name}=={version}")
    return sorted(lines)


def index_reachable(timeout_s: float = 3.0) -> bool:
    """Can we open a connection to the package index? (Skipped behind a proxy: pip knows better.)"""
    if any(os.environ.get(name) for name in ("HTTPS_PROXY", "https_proxy", "PIP_INDEX_URL", "PIP_PROXY")):
        return True
    try:
        with socket.create_connection(PACKAGE_INDEX, timeout=timeout_s):
            return True
    except OSError:
        return False


def offline_error(missing: list[str], path: Path, constraints: Path) -> SlicerMCPError:
    return SlicerMCPError(
        "SlicerMCP could not install its Python packages: the package index (pypi.org) cannot be "
        "reached. Connect to the internet (or set HTTPS_PROXY) and try again, or install them from a "
        f"local wheel folder: PythonSlicer -m pip install --no-index --find-links <folder> -r {path} "
        f"-c {constraints}",
        code=ErrorCode.CONFIG_ERROR,
        details={"missing": missing, "requirements_file": str(path)},
    )


def install_requirements(
    slicer: Any,
    *,
    path: Path | None = None,
    confirm: Callable[[str], bool] | None = None,
    reachable: Callable[[], bool] = index_reachable,
) -> list[str]:
    """Install what is missing with Slicer's pip helpers; returns what was missing.

    Raises SlicerMCPError when the user declines, when the index cannot be reached, or
    when pip fails (its log is in Slicer's Python console and the application log).
    """
    path = path or requirements_file()
    missing = missing_requirements(read_requirements(path))
    if not missing:
        return []
    constraints = _constraints_file()  # written first: an offline install by hand needs it too
    if not reachable():
        raise offline_error(missing, path, constraints)
    packaging_api = _slicer_packaging(slicer)
    try:
        if packaging_api is not None:  # Slicer 5.12+: asks the user and shows progress itself
            packaging_api.pip_ensure(
                packaging_api.load_requirements(str(path)), constraints=str(constraints), requester=REQUESTER
            )
        else:  # Slicer 5.10
            question = (
                "SlicerMCP needs these Python packages, which are not installed yet:\n\n  "
                + "\n  ".join(missing)
                + "\n\nInstall them now? This downloads them from pypi.org and takes a minute."
            )
            if confirm is not None and not confirm(question):
                raise SlicerMCPError(
                    "SlicerMCP cannot run without its Python packages; open the module again to install them.",
                    code=ErrorCode.CONFIG_ERROR,
                    details={"missing": missing},
                )
            _pip_install_with_progress(slicer, missing, constraints)
    except subprocess.CalledProcessError as exc:
        raise SlicerMCPError(
            f"pip could not install SlicerMCP's packages (exit code {exc.returncode}); the Python console "
            "shows pip's output. A version conflict means a package would have replaced one Slicer ships "
            "(see docs/slicer-compatibility.md). Check the network, or install by hand: "
            f"PythonSlicer -m pip install -r {path} -c {constraints}",
            code=ErrorCode.CONFIG_ERROR,
            details={"missing": missing},
        ) from exc
    except RuntimeError as exc:  # pip_ensure raises RuntimeError when the user declines
        raise SlicerMCPError(
            f"SlicerMCP's Python packages were not installed ({exc}); open the module again to install them.",
            code=ErrorCode.CONFIG_ERROR,
            details={"missing": missing},
        ) from exc
    still = missing_requirements(read_requirements(path))
    if still:
        raise SlicerMCPError(
            "some packages are still missing after installing; restart Slicer and open SlicerMCP again.",
            code=ErrorCode.CONFIG_ERROR,
            details={"missing": still},
        )
    return missing


def _slicer_packaging(slicer: Any) -> Any:
    """Slicer's module with `pip_ensure` and `load_requirements`, or None (Slicer 5.10).

    Slicer 5.12 has them in `slicer.packaging`; later Slicer moved them to `slicer.pydeps`
    (and `slicer.packaging` became another API), so the functions, not the name, decide."""
    for name in ("pydeps", "packaging"):
        try:
            module = importlib.import_module(f"{slicer.__name__}.{name}")
        except (ImportError, AttributeError):
            module = getattr(slicer, name, None)
        if hasattr(module, "pip_ensure") and hasattr(module, "load_requirements"):
            return module
    return None


def _constraints_file() -> Path:
    """The shipped-package constraints in a file pip can read (`-c`); kept for a hand-run retry."""
    target = user_config_dir() / CONSTRAINTS_FILE
    write_private_file(target, "\n".join(shipped_constraints()))
    return target


def _pip_install_with_progress(slicer: Any, missing: list[str], constraints: Path) -> None:
    """Slicer 5.10: one package at a time under a progress dialog, so the user sees it move."""
    dialog = slicer.util.createProgressDialog(
        labelText="Installing SlicerMCP's Python packages...", maximum=len(missing), windowTitle="SlicerMCP"
    )
    try:
        for i, requirement in enumerate(missing):
            dialog.labelText = f"Installing {requirement} ({i + 1} of {len(missing)})..."
            dialog.value = i
            slicer.app.processEvents()
            slicer.util.pip_install([requirement, "-c", str(constraints)])
        dialog.value = len(missing)
    finally:
        dialog.close()
