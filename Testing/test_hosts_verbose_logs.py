"""With `-v` no logger writes request or response bodies: patient names never reach stderr (issue 15 item 10).

`slicer-mcp -v serve --headless` runs as a user starts it, over HTTP and over stdio, with a seeded
mini-RIS and the test Orthanc holding a study of a patient with a unique name. Real calls return
the names (the result is checked, so the test can fail); the debug log must not carry them. Before
the third-party loggers were capped, sse_starlette logged each SSE chunk (the whole tool result)
and the SDK logged each JSON-RPC message at DEBUG.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters, stdio_client

from fixtures.orthanc import OUR_AET, Orthanc, make_ct_series, unique_patient
from fixtures.serve_process import ServeProcess
from fixtures.transport import http_client

GIVEN_NAME = "Chinedu"  # MRN1002 Okafor^Chinedu in the RIS seed: only a result carries it


def _seeded_config(home: Path, orthanc: Orthanc) -> tuple[dict[str, Any], str]:
    """A config with the seeded RIS and the Orthanc node, and the unique name of a stored patient."""
    from SlicerMCPLib.core.domain_config import MiniRisSettings
    from SlicerMCPLib.ris.seed import seed
    from SlicerMCPLib.ris.store import RisStore

    db = home / "ris.sqlite"
    store = RisStore.open(MiniRisSettings(sqlite_path=str(db)))
    seed(store)
    store.close()
    patient = unique_patient("PHI")
    family = f"Zyx{patient[-6:]}"
    _, datasets = make_ct_series(patient, slices=2)
    for ds in datasets:
        ds.PatientName = f"{family}^Quentin"
    orthanc.upload(datasets)
    config = {
        "mini_ris": {"sqlite_path": str(db)},
        "nodes": {"pacs": orthanc.node_config()},
        "current_node": "pacs",
        "calling_aet": OUR_AET,
    }
    return config, family


async def _calls(client: Client, family: str) -> list[str]:
    ris = await client.call_tool("list_mini_ris_patients", {"mrn": "MRN1002"})
    pacs = await client.call_tool("query_patients", {"patient_id": "PHI*", "name_pattern": f"{family}*"})
    return [json.dumps(r.structured_content) for r in (ris, pacs)]


def _assert_no_names(results: list[str], log: str, family: str) -> None:
    assert GIVEN_NAME in results[0] and family in results[1], results  # the data really went through
    assert "DEBUG" in log, "the server did not log at debug level"
    for name in (GIVEN_NAME, family, "Okafor"):
        assert name not in log, [line for line in log.splitlines() if name in line][:3]


@pytest.mark.timeout(240)
@pytest.mark.parametrize("mode", ["legacy", "auto"])
def test_verbose_http_server_logs_no_patient_names(tmp_path: Path, orthanc: Orthanc, mode: str) -> None:
    config, family = _seeded_config(tmp_path, orthanc)
    with ServeProcess(tmp_path, config=config, options=("-v",)) as server:

        async def main() -> list[str]:
            async with http_client(server.url, server.token, mode=mode) as client:
                return await _calls(client, family)

        results = asyncio.run(main())
    _assert_no_names(results, "".join(server.stderr_lines), family)


@pytest.mark.timeout(240)
@pytest.mark.parametrize("mode", ["legacy", "auto"])
def test_verbose_stdio_server_logs_no_patient_names(tmp_path: Path, orthanc: Orthanc, mode: str) -> None:
    config, family = _seeded_config(tmp_path, orthanc)
    (tmp_path / "config.yaml").write_text(json.dumps(config), encoding="utf-8")
    errlog = tmp_path / "stderr.log"
    env = {
        **os.environ,
        "SLICER_MCP_HOME": str(tmp_path),
        "SLICER_MCP_CONFIG": str(tmp_path / "config.yaml"),
    }
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "slicer_mcp", "-v", "serve", "--headless"], env=env
    )

    async def main() -> list[str]:
        with errlog.open("w", encoding="utf-8") as err:
            async with Client(stdio_client(params, errlog=err), mode=mode) as client:
                return await _calls(client, family)

    results = asyncio.run(main())
    _assert_no_names(results, errlog.read_text(encoding="utf-8"), family)


def test_logger_caps_hold_after_basic_config() -> None:
    """Each capped logger stays above DEBUG when the root logger is at DEBUG (a fresh interpreter)."""
    code = (
        "import logging, sys\n"
        "from slicer_mcp.cli import setup_logging\n"
        "setup_logging(True)\n"
        "names = ['sse_starlette.sse', 'httpx', 'httpx2', 'httpcore', 'mcp.server.streamable_http',\n"
        "         'mcp.shared.jsonrpc_dispatcher', 'uvicorn.error', 'pynetdicom.dsutils']\n"
        "bad = [n for n in names if logging.getLogger(n).isEnabledFor(logging.DEBUG)]\n"
        "print(bad)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
