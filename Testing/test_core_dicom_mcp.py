"""A dicom-mcp user's files and habits work unchanged.

The configuration block below is the one dicom-mcp's README documents (nodes main/secondary,
three FHIR servers with `base_url` and an `${SIIM_API_KEY}` from `.env`, `current_fhir`, the
`mini_ris` MySQL block with `${MINI_RIS_DB_PASSWORD}`); it is started the way dicom-mcp is
(`<command> configuration.yaml --transport stdio`). The calls are the ones its README shows.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pydicom
import pytest
from mcp import Client, StdioServerParameters

from fixtures.core import free_port
from fixtures.ris import start_ris_serve
from fixtures.scene import call_tool, error_of
from SlicerMCPLib.core.config import load_config
from SlicerMCPLib.core.errors import ConfigError
from SlicerMCPLib.core.services import Services
from SlicerMCPLib.ris.service import RisService
from SlicerMCPLib.serving.server import build_server

# dicom-mcp's README configuration block, as its users have it on disk
DICOM_MCP_CONFIGURATION = """\
# DICOM nodes configuration
nodes:
  main:
    host: "localhost"
    port: 4242
    ae_title: "ORTHANC"
    description: "Local Orthanc DICOM server (Primary)"

  secondary:
    host: "localhost"
    port: 4243
    ae_title: "ORTHANC2"
    description: "Local Orthanc DICOM server (Secondary)"

current_node: "main"
calling_aet: "MCPSCU"

fhir_servers:
  firely:
    base_url: "https://server.fire.ly"
    description: "Firely FHIR Test Server (public, no API key needed)"

  siim:
    base_url: "https://hackathon.siim.org/fhir"
    api_key: "${SIIM_API_KEY}"  # Set in .env file
    description: "SIIM Hackathon FHIR server"

  hapi_local:
    base_url: "http://localhost:8080/fhir"
    description: "Local HAPI FHIR server"

current_fhir: "hapi_local"

mini_ris:
  host: "localhost"
  port: 3306
  user: "orthanc_ris_app"
  password: "${MINI_RIS_DB_PASSWORD}"
  database: "orthanc_ris"
  pool_size: 5
"""

DOTENV = """\
# secrets, as dicom-mcp users keep them for `dotenv run`
SIIM_API_KEY=siim-key-123
export MINI_RIS_DB_PASSWORD="orthanc_ris_app"
"""


@pytest.fixture
def dicom_mcp_dir(tmp_path: Path) -> Path:
    (tmp_path / "configuration.yaml").write_text(DICOM_MCP_CONFIGURATION)
    (tmp_path / ".env").write_text(DOTENV)
    return tmp_path


def test_the_readme_block_loads_with_its_env_file(dicom_mcp_dir: Path) -> None:
    config = load_config(dicom_mcp_dir / "configuration.yaml", env={})
    assert config.current_node == "main" and config.calling_aet == "MCPSCU"
    assert config.nodes["secondary"].ae_title == "ORTHANC2"
    assert config.nodes["main"].description == "Local Orthanc DICOM server (Primary)"
    assert config.fhir_servers["siim"].url == "https://hackathon.siim.org/fhir"
    assert config.fhir_servers["siim"].api_key.get_secret_value() == "siim-key-123"  # from .env
    assert config.current_fhir == "hapi_local"
    ris = config.mini_ris
    assert ris.backend == "mysql" and ris.user == "orthanc_ris_app" and ris.database == "orthanc_ris"
    assert ris.password.get_secret_value() == "orthanc_ris_app" and ris.pool_size == 5 and ris.port == 3306
    # the environment wins over .env, as `dotenv run` leaves set variables alone
    again = load_config(dicom_mcp_dir / "configuration.yaml", env={"SIIM_API_KEY": "from-env"})
    assert again.fhir_servers["siim"].api_key.get_secret_value() == "from-env"


def test_a_variable_set_nowhere_is_named(dicom_mcp_dir: Path) -> None:
    (dicom_mcp_dir / ".env").write_text("MINI_RIS_DB_PASSWORD=x\n")
    with pytest.raises(ConfigError) as info:
        load_config(dicom_mcp_dir / "configuration.yaml", env={})
    assert "SIIM_API_KEY" in info.value.message and "fhir_servers.siim.api_key" in info.value.message
    (dicom_mcp_dir / ".env").write_text("SIIM_API_KEY=x\nthis line is not an assignment\n")
    with pytest.raises(ConfigError) as info:
        load_config(dicom_mcp_dir / "configuration.yaml", env={})
    assert "line 2" in info.value.message and "assignment" not in info.value.message  # the line is not echoed


def test_base_url_and_url_together_are_refused(tmp_path: Path) -> None:
    text = "fhir_servers:\n  a:\n    base_url: https://x/fhir\n    url: https://y/fhir\n"
    (tmp_path / "c.yaml").write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "c.yaml", env={})
    assert "base_url" in info.value.message


def test_started_like_dicom_mcp_the_tools_show_the_config(dicom_mcp_dir: Path) -> None:
    """`slicer-mcp configuration.yaml --transport stdio` (plus --headless: no Slicer runs here)."""
    env = {k: v for k, v in os.environ.items() if k not in ("SIIM_API_KEY", "MINI_RIS_DB_PASSWORD")}
    env["SLICER_MCP_HOME"] = str(dicom_mcp_dir / "home")
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "slicer_mcp", "configuration.yaml", "--transport", "stdio", "--headless"],
        env=env,
        cwd=str(dicom_mcp_dir),
    )

    async def listings() -> tuple[Any, Any]:
        async with Client(params, read_timeout_seconds=120) as client:
            nodes = await client.call_tool("list_dicom_nodes", {})
            servers = await client.call_tool("list_fhir_servers", {})
            return nodes, servers

    nodes, servers = asyncio.run(listings())
    assert not nodes.is_error and not servers.is_error, (nodes.content, servers.content)
    n = nodes.structured_content
    assert n["current_node"] == "main" and n["calling_aet"] == "MCPSCU"
    by_name = {x["name"]: x for x in n["nodes"]}
    assert by_name["secondary"]["ae_title"] == "ORTHANC2" and by_name["secondary"]["port"] == 4243
    assert by_name["main"]["description"] == "Local Orthanc DICOM server (Primary)"
    s = servers.structured_content
    assert s["current"] == "hapi_local"
    listed = {x["name"]: x for x in s["servers"]}
    assert set(listed) == {"firely", "siim", "hapi_local"}
    assert listed["siim"]["url"] == "https://hackathon.siim.org/fhir" and listed["siim"]["auth"] == "api-key"
    assert "siim-key-123" not in str(s)  # the secret is used, never shown
    assert listed["firely"]["description"].startswith("Firely FHIR Test Server")


# -- the RIS calls dicom-mcp documents -------------------------------------------------------------


@pytest.fixture
def ris_server(tmp_path: Path, clean_backend: Any) -> Any:
    block = {"sqlite_path": str(tmp_path / "ris.sqlite"), "mwl_port": free_port()}
    config = load_config(env={}, overrides={"allow": {"ris_write": True}, "mini_ris": block})
    services = Services(config=config, backend=clean_backend)
    yield build_server(services)
    ris = services.existing(RisService)
    if ris is not None:
        ris.close()


def test_create_mwl_from_order_as_documented(ris_server: Any) -> None:
    first = call_tool(ris_server, "create_mwl_from_order", {"order_id": 1})
    assert not first.is_error, first.content
    made = first.structured_content
    for key in ("success", "message", "accession_number", "patient_name", "patient_id", "procedure"):
        assert made[key], key
    assert made["success"] is True and made["message"] == "MWL created successfully for order 1"
    assert made["modality"] == "CR" and made["mwl_id"] >= 1 and made["patient_id"] == "MRN1001"
    assert made["scheduled_station_aet"] == "VIRTUALCR"  # mini_ris.modality.ae_title
    from datetime import datetime

    assert datetime.fromisoformat(made["scheduled_time"]) > datetime.now()  # the next free slot

    # the second documented form, on another unscheduled order: station given, time still free
    orders = call_tool(ris_server, "list_orders", {"status": "ORDERED"}).structured_content["orders"]
    second = call_tool(
        ris_server,
        "create_mwl_from_order",
        {"order_id": orders[0]["id"], "scheduled_station_aet": "ORTHANC"},
    ).structured_content
    assert second["scheduled_station_aet"] == "ORTHANC" and second["success"] is True
    third = call_tool(
        ris_server, "create_mwl_from_order", {"order_id": orders[1]["id"], "scheduled_station_aet": "ORTHANC"}
    ).structured_content
    assert third["scheduled_time"] != second["scheduled_time"]  # one station, one exam per slot
    again = call_tool(ris_server, "create_mwl_from_order", {"order_id": 1})
    assert error_of(again)["code"] == "RIS_CONFLICT"


def test_synthetic_cr_with_an_image_description(ris_server: Any) -> None:
    made = call_tool(ris_server, "create_mwl_from_order", {"order_id": 1}).structured_content
    result = call_tool(
        ris_server,
        "create_synthetic_cr_study",
        {
            "accession_number": made["accession_number"],
            "image_mode": "simple",
            "send_to_pacs": False,
            "image_description": "pneumonia right lower lobe",
        },
    )
    assert not result.is_error, result.content
    files = result.structured_content["files"]
    assert len(files) == 2
    for f in files:
        assert pydicom.dcmread(f).ImageComments == "pneumonia right lower lobe"
    bad = call_tool(
        ris_server,
        "create_synthetic_cr_study",
        {"accession_number": made["accession_number"], "image_description": "a\\b", "send_to_pacs": False},
    )
    assert error_of(bad)["code"] == "INVALID_PARAMETER"


# -- findscu and the REST paths against `slicer-mcp ris serve` -------------------------------------


@pytest.fixture
def ris_serve(tmp_path: Path) -> Any:
    import yaml

    config = tmp_path / "ris.yaml"
    block = {"mini_ris": {"sqlite_path": str(tmp_path / "ris.sqlite")}, "allow": {"ris_write": True}}
    config.write_text(yaml.safe_dump(block))
    home = tmp_path / "home"
    home.mkdir()
    process, mwl_port, api_port, log = start_ris_serve(config, home)
    yield mwl_port, api_port, (home / "token").read_text().strip()
    process.terminate()
    process.wait(20)


def _findscu(port: int, *keys: str) -> str:
    """findscu exactly as dicom-mcp's README runs it: its own default AE titles (FINDSCU -> ANY-SCP)."""
    from fixtures.ris import require_dcmtk

    args = [require_dcmtk("findscu"), "-v", "-W"]
    for key in keys:
        args += ["-k", key]
    done = subprocess.run(
        [*args, "localhost", str(port)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "TCP_NODELAY": "1"},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


def test_findscu_with_its_default_ae_titles(ris_serve: Any) -> None:
    mwl_port, _, _ = ris_serve
    out = _findscu(mwl_port, "0008,0050=", "0010,0020=")  # the shell's 0008,0050="" reaches findscu so
    assert out.count("(Pending)") == 6 and "Received Final Find Response (Success)" in out
    accession = out.split("(0008,0050) SH [")[1].split("]")[0].strip()
    one = _findscu(mwl_port, f"0008,0050={accession}")
    assert one.count("(Pending)") == 1 and accession in one


def test_dicom_mcp_rest_paths(ris_serve: Any, tmp_path: Path) -> None:
    _, api_port, token = ris_serve
    url = f"http://127.0.0.1:{api_port}"
    h = {"Authorization": f"Bearer {token}"}
    assert httpx.get(f"{url}/mwl").status_code == 401  # same token as the rest of the API
    page = httpx.get(f"{url}/mwl", headers=h)
    assert page.status_code == 200 and "<table>" in page.text
    orders = httpx.get(f"{url}/ris/api/orders", params={"status": "ORDERED"}, headers=h).json()["orders"]
    accession = orders[0]["accession_number"]
    body = {
        "AccessionNumber": accession,
        "ScheduledProcedureStepSequence": {
            "ScheduledStationAETitle": "CR9",
            "ScheduledProcedureStepStartDate": "20250601",
            "ScheduledProcedureStepStartTime": "091500",
        },
    }
    made = httpx.post(f"{url}/mwl/create_from_json", json=body, headers=h)
    assert made.status_code == 201, made.text
    answer = made.json()
    entry = answer["entry"]
    assert answer["status"] == "success" and answer["db_row_id"] == entry["mwl_id"]
    assert entry["accession_number"] == accession and entry["scheduled_station_aet"] == "CR9"
    assert (entry["scheduled_date"], entry["scheduled_time"]) == ("20250601", "091500")
    listed = httpx.get(f"{url}/ris/api/worklist", params={"date": "2025-06-01"}, headers=h).json()
    assert [e["mwl_id"] for e in listed["entries"]] == [entry["mwl_id"]]
    unknown = httpx.post(f"{url}/mwl/create_from_json", json={"AccessionNumber": "NOPE"}, headers=h)
    assert unknown.status_code == 400 and "create_order" in unknown.json()["error"]["message"]
    assert httpx.post(f"{url}/mwl/create_from_json", json=[1], headers=h).status_code == 400
