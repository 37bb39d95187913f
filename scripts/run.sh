#!/usr/bin/env bash
# Set up and start the headless SlicerMCP server with a demo scene over HTTP on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export VTK_DEFAULT_OPENGL_WINDOW="${VTK_DEFAULT_OPENGL_WINDOW:-vtkEGLRenderWindow}"
exec .venv/bin/slicer-mcp serve --headless --demo --transport http "$@"
