#!/usr/bin/env bash
# Set up (scripts/setup.sh --test) and run the whole test suite. Test peers (Orthanc,
# MariaDB, the FHIR server, Slicer WebServer stand-in) are started by the tests themselves
# on free loopback ports and stopped after.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --test
export VTK_DEFAULT_OPENGL_WINDOW="${VTK_DEFAULT_OPENGL_WINDOW:-vtkEGLRenderWindow}"
export QT_QPA_PLATFORM=offscreen
export TCP_NODELAY=1
.venv/bin/ruff check . && .venv/bin/ruff format --check . >/dev/null || {
    echo "test: ruff found lint or format problems (fix: .venv/bin/ruff check --fix . && .venv/bin/ruff format .)" >&2
    exit 1
}
exec .venv/bin/python -m pytest "$@"
