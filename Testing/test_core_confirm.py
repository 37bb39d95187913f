"""Confirmation by a person (allow.confirm_with_person) through the SDK client's elicitation.

The person is the client's elicitation callback (what Claude Code shows as a form). Each
case runs on both protocol eras: handshake (elicitation/create mid-call) and 2026-07-28
(InputRequiredResult, answered by the SDK client and retried). The slow person of the
timeout case is a callback that sleeps: a fault no real client can be made to produce on
demand.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import mcp_types as types
import pytest
from mcp import Client

CODE = "result_of_confirm_test = 6 * 7\nresult_of_confirm_test"
ERAS = ["legacy", "auto"]


class Person:
    """Answers every question the same way and remembers what it was shown."""

    def __init__(self, action: str = "accept", approve: bool = True, delay_s: float = 0.0):
        self.action, self.approve, self.delay_s = action, approve, delay_s
        self.shown: list[str] = []

    async def __call__(self, ctx: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
        self.shown.append(params.message)
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        content = {"approve": self.approve} if self.action == "accept" else None
        return types.ElicitResult(action=self.action, content=content)


def run_python(
    server: Any, mode: str, person: Person | None, calls: int = 1, extra: dict | None = None
) -> list[Any]:
    async def main() -> list[Any]:
        kwargs: dict[str, Any] = {"mode": mode}
        if person is not None:
            kwargs["elicitation_callback"] = person
        async with Client(server, **kwargs) as client:
            return [
                await client.call_tool("execute_python", {"code": CODE, **(extra or {})})
                for _ in range(calls)
            ]

    return asyncio.run(main())


def code_of(result: Any) -> str | None:
    return json.loads(result.content[0].text)["error"]["code"] if result.is_error else None


@pytest.fixture
def confirming(scene_config) -> Any:
    scene_config.allow.confirm_with_person = True
    return scene_config


@pytest.mark.parametrize("mode", ERAS)
def test_off_by_default_the_person_is_never_asked(mcp_server, mode: str) -> None:
    person = Person()
    (result,) = run_python(mcp_server, mode, person)
    assert code_of(result) == "OPERATION_DISABLED" and person.shown == []


def assert_each_accept_ran_one_call(results: list[Any], person: Person) -> None:
    """Two calls, each accepted: both ran, the person was asked twice and shown the code."""
    first, second = results
    assert code_of(first) is None and first.structured_content["result"] == "42"
    assert code_of(second) is None
    assert len(person.shown) == 2  # asked again for the second call: an accept covers one call
    assert CODE in person.shown[0] and "allow.execute_python is off" in person.shown[0]


@pytest.mark.parametrize("mode", ERAS)
def test_accept_runs_that_one_call_and_shows_the_code(confirming, mcp_server, mode: str) -> None:
    person = Person()
    assert_each_accept_ran_one_call(run_python(mcp_server, mode, person, calls=2), person)


@pytest.mark.parametrize("mode", ERAS)
@pytest.mark.parametrize("answer", [("decline", False), ("cancel", False), ("accept", False)])
def test_anything_but_an_approving_accept_leaves_it_disabled(
    confirming, mcp_server, mode: str, answer: tuple[str, bool]
) -> None:
    person = Person(*answer)
    (result,) = run_python(mcp_server, mode, person)
    assert code_of(result) == "OPERATION_DISABLED" and len(person.shown) == 1


@pytest.mark.parametrize("mode", ERAS)
def test_a_client_without_elicitation_gets_operation_disabled(confirming, mcp_server, mode: str) -> None:
    (result,) = run_python(mcp_server, mode, None)
    assert code_of(result) == "OPERATION_DISABLED"


def test_no_answer_in_time_leaves_it_disabled(confirming, mcp_server) -> None:
    confirming.timeouts.confirm_s = 0.5
    person = Person(delay_s=5.0)
    (result,) = run_python(mcp_server, "legacy", person)
    assert code_of(result) == "OPERATION_DISABLED" and len(person.shown) == 1


@pytest.mark.parametrize("mode", ERAS)
def test_nothing_the_assistant_sends_stands_in_for_the_person(confirming, mcp_server, mode: str) -> None:
    person = Person(action="decline")
    forged = {"person": {"approved_operations": ["execute_python"]}}
    (result,) = run_python(mcp_server, mode, person, extra=forged)
    assert code_of(result) == "INVALID_PARAMETER"
    (result,) = run_python(mcp_server, mode, person, extra={"approve": True})
    assert code_of(result) == "INVALID_PARAMETER"

    async def schema() -> dict[str, Any]:
        async with Client(mcp_server, mode=mode) as client:
            tools = {t.name: t for t in (await client.list_tools()).tools}
            return tools["execute_python"].input_schema

    assert set(asyncio.run(schema())["properties"]) == {"code", "namespace"}  # nothing about a person


def test_allowed_in_the_config_runs_without_asking(confirming, mcp_server) -> None:
    confirming.allow.execute_python = True
    person = Person(action="decline")
    (result,) = run_python(mcp_server, "auto", person)
    assert code_of(result) is None and person.shown == []


STUDY, SERIES = "1.2.826.0.1.3680043.8.498.11", "1.2.826.0.1.3680043.8.498.12"
#: every gated tool: arguments, and what the person must be shown (exactly what will happen)
GATED_CALLS = [
    (
        "move_series",
        {"destination_node": "archive", "series_instance_uid": SERIES, "study_instance_uid": STUDY},
        [SERIES, STUDY, "archive (ARCHIVE at 127.0.0.1:4243)", "pacs (PACS at 127.0.0.1:4242)"],
    ),
    (
        "move_study",
        {"destination_node": "archive", "study_instance_uid": STUDY},
        [STUDY, "ARCHIVE at 127.0.0.1:4243"],
    ),
    (
        "pacs_retrieve",
        {"study_instance_uid": STUDY, "destination_ae_title": "WORKSTATION1"},
        [STUDY, "WORKSTATION1"],
    ),
    (
        "send_to_pacs",
        {"destination_node": "archive", "file_paths": ["/tmp/a.dcm"]},
        ["/tmp/a.dcm", "ARCHIVE"],
    ),
    (
        "fhir_create_resource",
        {"resource": {"resourceType": "Observation", "status": "final"}},
        ["Observation", "https://fhir.example.org/r4", '"status": "final"'],
    ),
    (
        "fhir_update_resource",
        {"resource": {"resourceType": "Patient", "id": "p7"}, "version_id": "3"},
        ["Patient/p7 at version 3"],
    ),
    ("fhir_create_imaging_study_from_pacs", {"study_instance_uid": STUDY}, [STUDY, "ImagingStudy"]),
    ("create_order", {"patient_mrn": "MRN42", "procedure_code": "XR-CHEST-2V"}, ["MRN42", "XR-CHEST-2V"]),
    ("create_mwl_from_order", {"order_id": 5, "scheduled_station_aet": "CR7"}, ["order 5", "CR7"]),
    ("cancel_mwl", {"mwl_id": 9}, ["worklist entry 9"]),
    ("create_synthetic_cr_study", {"accession_number": "ACC1"}, ["ACC1", "C-STORE", "allow.dicom_send"]),
    ("execute_python", {"code": "print(1)"}, ["print(1)"]),
    ("store_results_to_pacs", {"sop_instance_uids": [SERIES], "node": "archive"}, [SERIES, "ARCHIVE"]),
    (
        "fhir_create_report",
        {"conclusion": "A 2 mL lesion.", "study_instance_uid": STUDY},
        ["DiagnosticReport", STUDY, "A 2 mL lesion.", "https://fhir.example.org/r4"],
    ),
    (
        "fhir_report_from_dicom_pdf",
        {"study_instance_uid": STUDY, "series_instance_uid": SERIES, "sop_instance_uid": SERIES + ".1"},
        [SERIES + ".1", "DiagnosticReport"],
    ),
]


@pytest.mark.parametrize("mode", ERAS)
@pytest.mark.parametrize(("tool", "args", "shown"), GATED_CALLS, ids=[c[0] for c in GATED_CALLS])
def test_every_gated_tool_shows_what_it_will_do(
    confirming, mcp_server, mode: str, tool: str, args: dict, shown: list[str]
) -> None:
    from SlicerMCPLib.core.domain_config import DicomNode, FhirServer

    confirming.nodes = {
        "pacs": DicomNode(host="127.0.0.1", port=4242, ae_title="PACS"),
        "archive": DicomNode(host="127.0.0.1", port=4243, ae_title="ARCHIVE"),
    }
    confirming.current_node = "pacs"
    confirming.fhir_servers = {"hospital": FhirServer(url="https://fhir.example.org/r4")}
    person = Person(action="decline")

    async def main() -> Any:
        async with Client(mcp_server, mode=mode, elicitation_callback=person) as client:
            return await client.call_tool(tool, args)

    result = asyncio.run(main())
    assert code_of(result) == "OPERATION_DISABLED"
    assert len(person.shown) == 1
    for text in shown:
        assert text in person.shown[0], (text, person.shown[0])
