#!/usr/bin/env bash
# Set up everything SlicerMCP needs on a fresh Debian/Ubuntu machine (idempotent).
#   scripts/setup.sh          runtime: venv with slicer-mcp and the headless Slicer scene
#   scripts/setup.sh --test   also the test peers: Orthanc, dcmtk, MariaDB, a FHIR server, MCP clients
set -euo pipefail
cd "$(dirname "$0")/.."
WITH_TEST=0
[ "${1:-}" = "--test" ] && WITH_TEST=1

APT_RUNTIME="libegl1 libegl-mesa0 libgl1-mesa-dri libgomp1"
APT_TEST="orthanc orthanc-dicomweb dcmtk mariadb-server"
PYTHON="${PYTHON:-python3}"

apt_install() {
    local missing=()
    for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
    [ ${#missing[@]} -eq 0 ] && return 0
    local sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    echo "setup: installing Debian packages: ${missing[*]}" >&2
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
}

if command -v apt-get >/dev/null 2>&1; then
    apt_install $APT_RUNTIME
    [ $WITH_TEST -eq 1 ] && apt_install $APT_TEST
fi

if [ ! -x .venv/bin/python ]; then
    echo "setup: creating .venv" >&2
    "$PYTHON" -m venv .venv
fi
# pip runs only when what it installs from changed (the stamp holds a hash of those files): a second
# start needs no network and takes a moment. The install is editable, so code changes need no pip.
fingerprint() { cat pyproject.toml "$@" | sha256sum | cut -d' ' -f1; }
RUNTIME_STAMP=.venv/.slicer-mcp-runtime
TEST_STAMP=.venv/.slicer-mcp-test
if [ $WITH_TEST -eq 1 ]; then
    if [ "$(cat "$TEST_STAMP" 2>/dev/null)" != "$(fingerprint Testing/requirements.txt)" ]; then
        .venv/bin/python -m pip install -q --upgrade pip >&2
        .venv/bin/python -m pip install -q -e ".[headless,test]" -r Testing/requirements.txt >&2
        fingerprint Testing/requirements.txt >"$TEST_STAMP"
        fingerprint >"$RUNTIME_STAMP"  # the test install holds the runtime one
    fi
elif [ "$(cat "$RUNTIME_STAMP" 2>/dev/null)" != "$(fingerprint)" ]; then
    .venv/bin/python -m pip install -q --upgrade pip >&2
    .venv/bin/python -m pip install -q -e ".[headless]" >&2
    fingerprint >"$RUNTIME_STAMP"
fi

if [ $WITH_TEST -eq 1 ] && [ ! -d .test-tools/pydicom2/pydicom ]; then
    # the pydicom/pynetdicom pair Slicer 5.10 ships, for the test that runs our DICOM code on it
    .venv/bin/python -m pip install -q --no-deps --target .test-tools/pydicom2 pydicom==2.4.4 pynetdicom==2.1.1 >&2
fi

if [ $WITH_TEST -eq 1 ] && command -v npm >/dev/null 2>&1; then
    # MCP clients used by the tests, pinned, in a project-local folder
    if [ ! -f .test-tools/package-lock.json ] || ! cmp -s Testing/node/package.json .test-tools/package.json; then
        mkdir -p .test-tools
        cp Testing/node/package.json .test-tools/package.json
        (cd .test-tools && npm install --no-audit --no-fund --loglevel=error >&2)
    fi
fi
echo "setup: done" >&2
