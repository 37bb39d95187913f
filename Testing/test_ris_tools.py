"""RIS tools through the SDK's in-memory MCP client, and the REST API with its token rule."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from fixtures.core import free_port, loose_modes
from fixtures.ris import ris_config
from fixtures.scene import call_tool, call_tools, error_of
from SlicerMCPLib.core.config import load_config
from SlicerMCPLib.core.services import Services
from SlicerMCPLib.ris.service import RisService
from SlicerMCPLib.serving.server import build_server

RIS_TOOLS = {
    "list_mini_ris_patients": (True, False),
    "list_orders": (True, False),
    "create_order": (False, False),
    "create_mwl_from_order": (False, False),
    "list_worklist": (True, False),
    "cancel_mwl": (False, True),
    "create_synthetic_cr_study": (False, False),
    "get_procedure_step_status": (True, False),
}


@pytest.fixture
def make_server(tmp_path: Any, clean_backend: Any) -> Iterator[Any]:
    """Builds an MCP server over a fresh seeded RIS, with RIS writes on or off."""
    made: list[Services] = []

    def make(ris_write: bool) -> Any:
        made.append(Services(config=ris_config(tmp_path / str(len(made)), ris_write), backend=clean_backend))
        return build_server(made[-1])

    yield make
    for services in made:
        ris = services.existing(RisService)
        if ris is not None:
            ris.close()


@pytest.fixture
def ris_server(make_server: Any) -> Any:
    return make_server(True)


@pytest.fixture
def locked_server(make_server: Any) -> Any:
    return make_server(False)


def test_annotations_tell_the_truth(ris_server: Any) -> None:
    import asyncio

    from mcp import Client

    async def tools() -> list[Any]:
        async with Client(ris_server) as client:
            return (await client.list_tools()).tools

    listed = {t.name: t for t in asyncio.run(tools()) if t.name in RIS_TOOLS}
    assert set(listed) == set(RIS_TOOLS)
    for name, (read_only, destructive) in RIS_TOOLS.items():
        ann = listed[name].annotations
        assert ann.read_only_hint is read_only, name
        assert ann.destructive_hint is destructive, name
        assert listed[name].output_schema is not None, name
    assert listed["create_synthetic_cr_study"].annotations.open_world_hint is True
    schema = listed["create_order"].input_schema["properties"]["procedure_code"]
    assert "XR-CHEST-2V" in str(schema) and "XR-CSPINE-3V" in str(schema)


def test_order_to_worklist_to_cancel(ris_server: Any) -> None:
    patients, order = call_tools(
        ris_server,
        [
            ("list_mini_ris_patients", {"name": "nguyen"}),
            (
                "create_order",
                {"patient_mrn": "MRN1004", "procedure_code": "XR-SHOULDER-2V", "priority": "HIGH"},
            ),
        ],
    )
    assert [p["mrn"] for p in patients.structured_content["patients"]] == ["MRN1004"]
    o = order.structured_content
    assert o["status"] == "ORDERED" and o["procedure"]["image_count"] == 2
    created, again, listed = call_tools(
        ris_server,
        [
            (
                "create_mwl_from_order",
                {"order_id": o["id"], "scheduled_station_aet": "CR7", "scheduled_time": "2025-06-03T14:45"},
            ),
            (
                "create_mwl_from_order",
                {"order_id": o["id"], "scheduled_station_aet": "CR7", "scheduled_time": "2025-06-03T14:45"},
            ),
            ("list_worklist", {"date": "2025-06-03", "station_aet": "CR7"}),
        ],
    )
    m = created.structured_content
    assert m["accession_number"] == o["accession_number"] and m["patient_name"] == "Nguyen^Linh"
    assert m["scheduled_time"] == "2025-06-03T14:45" and m["modality"] == "CR"
    assert m["study_instance_uid"].startswith("1.2.")
    assert error_of(again)["code"] == "RIS_CONFLICT"
    assert [e["mwl_id"] for e in listed.structured_content["entries"]] == [m["mwl_id"]]
    cancelled, status = call_tools(
        ris_server,
        [
            ("cancel_mwl", {"mwl_id": m["mwl_id"]}),
            ("get_procedure_step_status", {"accession_number": o["accession_number"]}),
        ],
    )
    assert cancelled.structured_content["status"] == "CANCELLED"
    s = status.structured_content
    assert s["order_status"] == "CANCELLED" and s["performed_steps"] == []


def test_bad_input_is_reported_with_codes(ris_server: Any) -> None:
    bad_time, bad_date, unknown, no_order = call_tools(
        ris_server,
        [
            (
                "create_mwl_from_order",
                {"order_id": 1, "scheduled_station_aet": "CR", "scheduled_time": "tomorrow"},
            ),
            ("list_worklist", {"date": "2025-02-30"}),
            ("get_procedure_step_status", {"accession_number": "NOPE"}),
            (
                "create_mwl_from_order",
                {"order_id": 4242, "scheduled_station_aet": "CR", "scheduled_time": "2025-06-03T08:00"},
            ),
        ],
    )
    assert error_of(bad_time)["code"] == "INVALID_PARAMETER"
    assert error_of(bad_date)["code"] == "INVALID_PARAMETER"
    assert error_of(unknown)["code"] == "RIS_NOT_FOUND"
    assert error_of(no_order)["code"] == "RIS_NOT_FOUND"


def test_station_ae_title_must_be_a_dicom_ae_title(ris_server: Any) -> None:
    """A backslash would make the AE title two values on the worklist; spaces around it never match."""
    for aet in ("CR\\1", " CR1", "CR\t1"):
        result = call_tool(
            ris_server,
            "create_mwl_from_order",
            {"order_id": 1, "scheduled_station_aet": aet, "scheduled_time": "2025-06-03T08:00"},
        )
        assert error_of(result)["code"] == "INVALID_PARAMETER", aet


def test_accession_number_must_be_a_dicom_short_string(ris_server: Any) -> None:
    """A backslash would split the Accession Number into two values on the worklist and in the images."""
    for accession in ("A\\B", "A\tB"):
        result = call_tool(
            ris_server,
            "create_order",
            {"patient_mrn": "MRN1001", "procedure_code": "XR-KNEE-2V", "accession_number": accession},
        )
        assert error_of(result)["code"] == "INVALID_PARAMETER", accession


def test_writes_are_off_by_default(locked_server: Any) -> None:
    reads, write, cancel, acquire = call_tools(
        locked_server,
        [
            ("list_orders", {"status": "ORDERED"}),
            ("create_order", {"patient_mrn": "MRN1001", "procedure_code": "XR-KNEE-2V"}),
            ("cancel_mwl", {"mwl_id": 1}),
            ("create_synthetic_cr_study", {"accession_number": "A1", "send_to_pacs": False}),
        ],
    )
    assert reads.structured_content["count"] == 8  # the seed: 14 orders, 6 scheduled
    for result in (write, cancel, acquire):
        err = error_of(result)
        assert err["code"] == "OPERATION_DISABLED" and "SLICER_MCP_ALLOW_RIS_WRITE" in err["message"]


def test_synthetic_study_to_files_with_ai_fallback(ris_server: Any) -> None:
    """No PACS: the images are written as files; ai mode without a generator says it fell back."""
    worklist = call_tool(ris_server, "list_worklist", {"status": "SCHEDULED"}).structured_content["entries"]
    entry = next(e for e in worklist if e["procedure"]["code"] == "XR-WRIST-3V")
    result = call_tool(
        ris_server,
        "create_synthetic_cr_study",
        {"accession_number": entry["accession_number"], "image_mode": "ai", "send_to_pacs": False},
    )
    s = result.structured_content
    assert s["image_mode"] == "simple" and "fell back to simple" in s["notes"][0]
    assert s["image_count"] == 3 == len(s["files"]) and s["views"] == ["PA", "LLO", "LL"]
    assert s["mpps_status"] == "COMPLETED"
    import pydicom

    ds = pydicom.dcmread(s["files"][0])
    assert (
        ds.StudyInstanceUID == entry["study_instance_uid"] and ds.AccessionNumber == entry["accession_number"]
    )
    assert ds.PatientID == entry["patient"]["mrn"] and ds.Modality == "CR" and ds.BodyPartExamined == "WRIST"
    status = call_tool(
        ris_server, "get_procedure_step_status", {"accession_number": entry["accession_number"]}
    )
    steps = status.structured_content["performed_steps"]
    assert [h["status"] for h in steps[0]["history"]] == ["IN PROGRESS", "COMPLETED"]
    assert sorted(x["series_instance_uid"] for x in steps[0]["series"]) == sorted(s["series_instance_uids"])
    again = call_tool(
        ris_server,
        "create_synthetic_cr_study",
        {"accession_number": entry["accession_number"], "send_to_pacs": False},
    )
    assert error_of(again)["code"] == "RIS_NOT_FOUND"  # no longer SCHEDULED


def test_synthetic_study_files_stay_in_the_storage_folder(ris_server: Any) -> None:
    """An accession number is free text (SH allows / and .): it must not steer where files go."""
    from datetime import datetime

    from SlicerMCPLib.core.localhost import user_data_dir

    order = call_tool(
        ris_server,
        "create_order",
        {"patient_mrn": "MRN1001", "procedure_code": "XR-CHEST-1V", "accession_number": "../../escape"},
    ).structured_content
    call_tool(
        ris_server,
        "create_mwl_from_order",
        {
            "order_id": order["id"],
            "scheduled_station_aet": "VIRTUALCR",
            "scheduled_time": datetime.now().isoformat(timespec="minutes"),
        },
    )
    result = call_tool(
        ris_server, "create_synthetic_cr_study", {"accession_number": "../../escape", "send_to_pacs": False}
    )
    assert not result.is_error, result.content
    base = (user_data_dir() / "virtual-cr").resolve()
    files = [Path(f).resolve() for f in result.structured_content["files"]]
    assert files and all(base in f.parents for f in files), files


def test_sample_mode_without_a_sample_is_refused_before_the_step_starts(ris_server: Any) -> None:
    entry = call_tool(ris_server, "list_worklist", {"status": "SCHEDULED"}).structured_content["entries"][0]
    result = call_tool(
        ris_server,
        "create_synthetic_cr_study",
        {"accession_number": entry["accession_number"], "image_mode": "sample", "send_to_pacs": False},
    )
    if not result.is_error:  # a sample image for this body part ships with the project
        assert result.structured_content["image_mode"] == "sample"
        return
    err = error_of(result)
    assert err["code"] == "NOT_SUPPORTED" and "image_mode simple or auto" in err["message"]
    status = call_tool(
        ris_server, "get_procedure_step_status", {"accession_number": entry["accession_number"]}
    )
    assert status.structured_content["performed_steps"] == []
    assert status.structured_content["worklist"][0]["status"] == "SCHEDULED"


def test_database_down_is_reported_by_the_tools(tmp_path: Any, clean_backend: Any) -> None:
    config = load_config(
        env={},
        overrides={"mini_ris": {"backend": "mysql", "port": free_port(), "user": "ris", "password": "x"}},
    )
    server = build_server(Services(config=config, backend=clean_backend))
    err = error_of(call_tool(server, "list_orders", {}))
    assert err["code"] == "RIS_DATABASE_ERROR" and "Is MariaDB/MySQL running" in err["message"]
    assert err["details"]["backend"] == "mysql"


def test_scp_port_in_use_is_a_clear_error(tmp_path: Any) -> None:
    import socket

    from SlicerMCPLib.core.errors import SlicerMCPError
    from SlicerMCPLib.ris.service import RisService

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        config = ris_config(tmp_path, True, mwl_port=taken.getsockname()[1])
        service = RisService(config)
        try:
            with pytest.raises(SlicerMCPError) as err:
                service.start_scp()
            assert err.value.code == "CONFIG_ERROR" and "already in use" in err.value.message
        finally:
            service.close()


def test_scp_address_not_available_is_a_config_error(tmp_path: Any) -> None:
    """A listen address this machine does not have is a config problem, not a port held elsewhere."""
    from SlicerMCPLib.core.errors import SlicerMCPError
    from SlicerMCPLib.ris.service import RisService

    config = ris_config(tmp_path, True, mwl_host="192.0.2.1", allow_remote=True)  # TEST-NET-1
    service = RisService(config)
    try:
        for start in (service.start_scp, service.ensure_scp):
            with pytest.raises(SlicerMCPError) as err:
                start()
            assert err.value.code == "CONFIG_ERROR" and "mwl_host" in err.value.message
    finally:
        service.close()


# -- REST API --------------------------------------------------------------------------------------


def test_api_needs_the_token_and_a_local_origin(api: tuple[str, str, Any]) -> None:
    url, token, _ = api
    assert httpx.get(f"{url}/ris/api/worklist").status_code == 401
    assert httpx.get(f"{url}/ris/api/worklist", headers={"Authorization": "Bearer wrong"}).status_code == 401
    evil = {"Authorization": f"Bearer {token}", "Origin": "http://evil.example"}
    assert httpx.get(f"{url}/ris/worklist", headers=evil).status_code == 403
    assert httpx.get(f"{url}/ris/worklist").status_code == 401


def test_api_create_list_cancel_and_page(api: tuple[str, str, Any]) -> None:
    url, token, service = api
    h = {"Authorization": f"Bearer {token}"}
    orders = httpx.get(f"{url}/ris/api/orders", params={"status": "ORDERED"}, headers=h).json()
    order_id = orders["orders"][0]["id"]
    made = httpx.post(
        f"{url}/ris/api/worklist",
        json={"order_id": order_id, "scheduled_station_aet": "CR3", "scheduled_time": "2025-06-05T07:15"},
        headers=h,
    )
    assert made.status_code == 201, made.text
    entry = made.json()
    assert entry["scheduled_station_aet"] == "CR3" and entry["scheduled_time"] == "071500"
    dup = httpx.post(
        f"{url}/ris/api/worklist",
        json={"order_id": order_id, "scheduled_station_aet": "CR3", "scheduled_time": "2025-06-05T07:15"},
        headers=h,
    )
    assert dup.status_code == 409 and dup.json()["error"]["code"] == "RIS_CONFLICT"
    bad = httpx.post(f"{url}/ris/api/worklist", json={"order_id": "x"}, headers=h)
    assert bad.status_code == 400
    listed = httpx.get(f"{url}/ris/api/worklist", params={"date": "2025-06-05"}, headers=h).json()
    assert [e["mwl_id"] for e in listed["entries"]] == [entry["mwl_id"]]
    assert httpx.get(f"{url}/ris/api/worklist", params={"date": "June"}, headers=h).status_code == 400
    gone = httpx.delete(f"{url}/ris/api/worklist/{entry['mwl_id']}", headers=h)
    assert gone.status_code == 200 and gone.json()["status"] == "CANCELLED"
    assert httpx.delete(f"{url}/ris/api/worklist/99999", headers=h).status_code == 404
    page = httpx.get(f"{url}/ris/worklist", headers=h)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "Müller, Jürgen" in page.text and "<table>" in page.text and page.text.count("<tr><td>") == 7


def test_api_html_escapes_values(api: tuple[str, str, Any]) -> None:
    url, token, service = api
    from datetime import datetime

    p = service.store.add_patient("MRN<X>", "<script>alert(1)</script>", "Eve")
    order = service.store.create_order(p.mrn, "XR-KNEE-2V")
    service.store.create_mwl(order.id, "CR1", datetime(2025, 6, 6, 9, 0))
    page = httpx.get(f"{url}/ris/worklist", headers={"Authorization": f"Bearer {token}"}).text
    assert "<script>" not in page and "&lt;script&gt;" in page


def test_api_writes_follow_the_allow_switch(tmp_path: Any) -> None:
    from SlicerMCPLib.ris.api import serve_api
    from SlicerMCPLib.ris.service import RisService

    config = ris_config(tmp_path, False)
    service = RisService(config)
    server = serve_api(service, config, "k" * 32, 0)
    try:
        r = httpx.delete(
            f"http://127.0.0.1:{server.port}/ris/api/worklist/1",
            headers={"Authorization": "Bearer " + "k" * 32},
        )
        assert r.status_code == 403 and r.json()["error"]["code"] == "OPERATION_DISABLED"
        assert service.store.get_mwl(1).status == "SCHEDULED"
    finally:
        server.stop()
        service.close()


def test_huge_name_is_an_invalid_parameter_without_the_database_path(ris_server: Any) -> None:
    (huge,) = call_tools(ris_server, [("list_mini_ris_patients", {"name": "A" * 1_000_000})])
    error = error_of(huge)
    assert error["code"] == "INVALID_PARAMETER", error
    assert "sqlite" not in str(error).lower()
    # refused by the tool's schema before any SQL (the store's own check is tested in test_ris_hardening)
    assert error.get("details", {}).get("problems") == ["name: String should have at most 200 characters"], (
        error
    )
    assert len(error["message"]) < 200


def test_synthetic_study_files_are_private(ris_server: Any, usual_umask: None) -> None:
    """The virtual CR's images carry the patient's name and MRN: 0600 files in 0700 folders, from the
    user's data folder down (issue 15 item 9)."""
    from SlicerMCPLib.core.localhost import user_data_dir

    worklist = call_tool(ris_server, "list_worklist", {"status": "SCHEDULED"}).structured_content["entries"]
    result = call_tool(
        ris_server,
        "create_synthetic_cr_study",
        {"accession_number": worklist[0]["accession_number"], "send_to_pacs": False},
    ).structured_content
    assert result["files"] and all(Path(f).is_relative_to(user_data_dir()) for f in result["files"])
    assert loose_modes(user_data_dir()) == {}
