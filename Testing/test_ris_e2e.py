"""Order to scene, with real services: the RIS database (SQLite and MariaDB), our MWL/MPPS SCP,
Orthanc as the PACS and the headless Slicer scene.

create order -> MWL -> the virtual CR queries the worklist by its AE and date over DICOM ->
MPPS IN PROGRESS -> C-STORE to Orthanc -> MPPS COMPLETED -> query the PACS -> load into the
scene -> screenshot. Then the `slicer-mcp ris serve` process, queried like a device.
"""

from __future__ import annotations

import base64
import io
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import requests
from PIL import Image

from fixtures.core import free_port
from fixtures.orthanc import Orthanc, orthanc_config
from fixtures.ris import SPS, findscu_worklist, start_ris_serve
from fixtures.scene import call_tool, error_of
from SlicerMCPLib.core.services import Services
from SlicerMCPLib.dicom.service import DicomService
from SlicerMCPLib.ris.service import RisService
from SlicerMCPLib.serving.server import build_server

STATION = "VIRTUALCR"


@pytest.fixture
def e2e_server(orthanc: Orthanc, clean_backend: Any, ris_settings: dict[str, Any]) -> Iterator[Any]:
    config = orthanc_config(
        orthanc,
        allow={"ris_write": True, "dicom_send": True},
        mini_ris={**ris_settings, "mwl_port": free_port(), "modality": {"ae_title": STATION}},
    )
    services = Services(config=config, backend=clean_backend)
    yield build_server(services)
    ris = services.existing(RisService)
    if ris is not None:
        ris.close()
    dicom = services.existing(DicomService)
    if dicom is not None:
        dicom.close()


def ok(result: Any) -> dict[str, Any]:
    assert not result.is_error, result.content[0].text
    return result.structured_content


def test_order_to_scene(e2e_server: Any, orthanc: Orthanc) -> None:
    s = e2e_server
    order = ok(call_tool(s, "create_order", {"patient_mrn": "MRN1002", "procedure_code": "XR-CHEST-2V"}))
    now = datetime.now().replace(second=0, microsecond=0)
    mwl = ok(
        call_tool(
            s,
            "create_mwl_from_order",
            {"order_id": order["id"], "scheduled_station_aet": STATION, "scheduled_time": now.isoformat()},
        )
    )
    assert mwl["accession_number"] == order["accession_number"]

    study = ok(
        call_tool(
            s,
            "create_synthetic_cr_study",
            {"accession_number": mwl["accession_number"], "image_mode": "simple", "send_to_pacs": True},
        )
    )
    assert study["study_instance_uid"] == mwl["study_instance_uid"]
    assert study["sent"] == 2 == study["image_count"] and study["sent_to_pacs"] == "orthanc"
    assert study["mpps_status"] == "COMPLETED" and study["views"] == ["PA", "LL"]
    assert study["notes"] == []

    # the RIS knows what was performed, and it is what the PACS holds
    status = ok(call_tool(s, "get_procedure_step_status", {"accession_number": mwl["accession_number"]}))
    assert status["order_status"] == "COMPLETED" and status["worklist"][0]["status"] == "COMPLETED"
    step = status["performed_steps"][0]
    assert step["sop_instance_uid"] == study["mpps_sop_instance_uid"] and step["station_aet"] == STATION
    performed = {x["series_instance_uid"]: x["instances"] for x in step["series"]}
    assert sorted(performed) == sorted(study["series_instance_uids"])
    assert sorted(i for v in performed.values() for i in v) == sorted(study["sop_instance_uids"])
    for series_uid in study["series_instance_uids"]:
        assert orthanc.count_instances(series_uid) == 1

    # query the PACS like a user would: by accession number
    found = ok(call_tool(s, "query_studies", {"accession_number": mwl["accession_number"]}))
    assert [r["StudyInstanceUID"] for r in found["records"]] == [mwl["study_instance_uid"]]
    record = found["records"][0]
    assert record["PatientID"] == "MRN1002" and "Okafor" in str(record["PatientName"])
    series = ok(call_tool(s, "query_series", {"study_instance_uid": mwl["study_instance_uid"]}))
    assert sorted(r["SeriesInstanceUID"] for r in series["records"]) == sorted(study["series_instance_uids"])
    tags = requests.get(
        f"{orthanc.url}/instances/{orthanc.orthanc_id(study['sop_instance_uids'][0])}/simplified-tags",
        timeout=10,
    ).json()
    assert tags["AccessionNumber"] == mwl["accession_number"] and tags["Modality"] == "CR"
    assert tags["StudyInstanceUID"] == mwl["study_instance_uid"]

    # load the frontal view into the scene and look at it
    frontal = study["series_instance_uids"][0]
    loaded = ok(
        call_tool(
            s,
            "load_series",
            {"series_instance_uid": frontal, "study_instance_uid": mwl["study_instance_uid"]},
        )
    )
    node = loaded["loaded"][0]["node"]
    assert loaded["loaded"][0]["slices"] == 1
    nodes = ok(call_tool(s, "list_scene_nodes", {"class_name": "vtkMRMLScalarVolumeNode"}))
    assert [n["id"] for n in nodes["nodes"]] == [node["id"]]
    shot = call_tool(s, "capture_screenshot", {"view_type": "coronal", "size": 256})
    assert not shot.is_error, shot.content[0].text
    png = next(c for c in shot.content if c.type == "image")
    pixels = np.asarray(Image.open(io.BytesIO(base64.b64decode(png.data))).convert("L"), dtype=float)
    assert pixels.shape == (256, 256)
    assert pixels.std() > 20, "the coronal view does not show the radiograph"


def test_unscheduled_accession_and_mpps_refusal(e2e_server: Any) -> None:
    """An accession that is not on the worklist; then the same study acquired twice."""
    missing = call_tool(
        e2e_server, "create_synthetic_cr_study", {"accession_number": "NOPE1", "send_to_pacs": True}
    )
    assert error_of(missing)["code"] == "RIS_NOT_FOUND"


def test_pacs_down_discontinues_the_step(orthanc: Orthanc, clean_backend: Any, tmp_path: Path) -> None:
    """The PACS does not answer: MPPS ends DISCONTINUED and the tool says the node is unreachable."""
    config = orthanc_config(
        orthanc,
        allow={"ris_write": True, "dicom_send": True},
        nodes={"dead": {"host": "127.0.0.1", "port": free_port(), "ae_title": "DEAD", "timeout_s": 2}},
        current_node="dead",
        mini_ris={"sqlite_path": str(tmp_path / "ris.sqlite"), "mwl_port": free_port()},
    )
    services = Services(config=config, backend=clean_backend)
    server = build_server(services)
    try:
        entry = ok(call_tool(server, "list_worklist", {"status": "SCHEDULED"}))["entries"][0]
        result = call_tool(
            server, "create_synthetic_cr_study", {"accession_number": entry["accession_number"]}
        )
        assert error_of(result)["code"] == "DICOM_NODE_UNREACHABLE"
        status = ok(
            call_tool(server, "get_procedure_step_status", {"accession_number": entry["accession_number"]})
        )
        assert status["performed_steps"][0]["status"] == "DISCONTINUED"
        assert status["order_status"] == "DISCONTINUED"
    finally:
        services.existing(RisService).close()


# -- the `slicer-mcp ris serve` process ------------------------------------------------------------


def test_ris_serve_process_creates_seeds_and_serves(tmp_path: Path, ris_settings: dict[str, Any]) -> None:
    import yaml

    config = tmp_path / "ris.yaml"
    config.write_text(yaml.safe_dump({"mini_ris": ris_settings}))
    home = tmp_path / "home"
    process, mwl_port, api_port, log = start_ris_serve(config, home)
    try:
        today = datetime.now().strftime("%Y%m%d")
        code, found, out = findscu_worklist(
            mwl_port,
            [
                "PatientName",
                "AccessionNumber",
                f"{SPS}[0].ScheduledStationAETitle={STATION}",
                f"{SPS}[0].ScheduledProcedureStepStartDate={today}",
            ],
        )
        assert code == 0, out
        assert len(found) == 6  # the seed schedules six of its orders today
        token = (home / "token").read_text().strip()
        r = httpx.get(
            f"http://127.0.0.1:{api_port}/ris/api/worklist", headers={"Authorization": f"Bearer {token}"}
        )
        assert r.status_code == 200 and r.json()["count"] == 6
        assert httpx.get(f"http://127.0.0.1:{api_port}/ris/api/worklist").status_code == 401
    finally:
        process.terminate()
        process.wait(20)
    assert process.returncode == 0, log.read_text()[-2000:]
    assert "Jürgen" not in log.read_text(errors="replace")  # no PHI in the log
    if ris_settings["backend"] == "sqlite":
        assert Path(ris_settings["sqlite_path"]).exists()
    seeded = subprocess.run(
        [sys.executable, "-m", "slicer_mcp", "ris", "seed", "--config", str(config)],
        capture_output=True,
        text=True,
        env={**os.environ, "SLICER_MCP_HOME": str(home)},
        timeout=60,
    )
    assert seeded.returncode == 0 and "added 0 patients" in seeded.stderr  # already seeded: nothing twice
