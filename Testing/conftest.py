"""Shared pytest setup: every module in Testing/fixtures/ is a fixture plugin.

Each area (scene, transports, dicom, fhir, ris, module, webserver) keeps its fixtures
and its peer processes in its own file there, so areas never edit each other's fixtures.
"""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("TCP_NODELAY", "1")

# core first: other fixture modules import its helpers, and pytest must load it as a plugin before that
pytest_plugins = ["fixtures.core"] + sorted(
    f"fixtures.{p.stem}"
    for p in (Path(__file__).parent / "fixtures").glob("*.py")
    if p.stem not in ("__init__", "core")
)
