"""Prompts: listed with their arguments, rendered through the SDK client, and honest about the catalog.

Every tool a prompt names must be in the live `tools/list` (not a copy of the names here), and
every `tool {json}` step must validate against that tool's input schema once its
<placeholders> are filled with sample values. So a prompt written for a tool that is renamed,
removed or whose arguments change fails here.
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import jsonschema
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError

from SlicerMCPLib.tools.prompts import PROMPTS

#: sample values for the placeholders the prompts use (each must validate where it is used)
PLACEHOLDERS = {
    "patient_id": "example-patient-1",
    "imaging_study_id": "example-study-1",
    "study_uid": "1.2.826.0.1.3680043.8.498.1",
    "series_uid": "1.2.826.0.1.3680043.8.498.2",
    "order_id": 1,
    "segmentation_id": "vtkMRMLSegmentationNode1",
    "segment_name": "Tumor",
}

#: arguments to render each prompt with (the required ones and every optional one once)
RENDER_ARGS: dict[str, list[dict[str, str]]] = {
    "review_fhir_patient_study": [
        {"patient": "MRN001"},
        {"patient": "p1", "modality": "CT", "fhir_server": "main"},
    ],
    "prepare_modality_worklist": [{}, {"date": "2026-12-03", "station_aet": "CR01"}],
    "segment_and_measure_lesion": [
        {"volume": "MRBrainTumor1"},
        {"volume": "vtkMRMLScalarVolumeNode1", "lesion": "x"},
    ],
    "compare_time_points": [{"patient_id": "MRN001"}, {"patient_id": "MRN001", "modality": "CT"}],
    "working_safely": [{}],
}

STEP = re.compile(r"\b([a-z][a-z0-9_]+) (\{[^{}]*\})")
BACKTICKED = re.compile(r"`([a-z][a-z0-9_]+)`")


def _fill(value: Any) -> Any:
    if isinstance(value, str) and value.startswith("<") and value.endswith(">"):
        return PLACEHOLDERS[value[1:-1]]
    return value


def steps_of(text: str) -> list[tuple[str, dict[str, Any]]]:
    return [(m.group(1), json.loads(m.group(2))) for m in STEP.finditer(text)]


async def _rendered(client: Client) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for name, variants in RENDER_ARGS.items():
        for args in variants:
            result = await client.get_prompt(name, args)
            out.setdefault(name, []).extend(m.content.text for m in result.messages)
    return out


def test_prompts_are_listed_with_their_arguments(mcp_server) -> None:
    async def main() -> Any:
        async with Client(mcp_server) as client:
            return await client.list_prompts()

    listed = {p.name: p for p in asyncio.run(main()).prompts}
    assert set(listed) == {fn.__name__ for fn, _ in PROMPTS} == set(RENDER_ARGS)
    review = {a.name: a for a in listed["review_fhir_patient_study"].arguments}
    assert review["patient"].required and not review["modality"].required
    assert "not a name" in review["patient"].description  # no PHI asked for
    assert all(p.title and p.description for p in listed.values())


def test_every_tool_a_prompt_names_exists_and_its_arguments_validate(mcp_server) -> None:
    async def main() -> tuple[dict[str, Any], dict[str, list[str]]]:
        async with Client(mcp_server) as client:
            tools = {t.name: t for t in (await client.list_tools()).tools}
            return tools, await _rendered(client)

    tools, rendered = asyncio.run(main())
    checked = 0
    for prompt, texts in rendered.items():
        for text in texts:
            for name in BACKTICKED.findall(text):
                assert name in tools, f"prompt {prompt} names {name!r}, which is not a tool"
            for name, args in steps_of(text):
                assert name in tools, f"prompt {prompt} calls {name!r}, which is not a tool"
                filled = {k: _fill(v) for k, v in args.items()}
                schema = tools[name].input_schema
                unknown = set(filled) - set(schema.get("properties", {}))
                assert not unknown, f"prompt {prompt}: {name} has no parameter {unknown}"
                jsonschema.validate(filled, schema)
                checked += 1
    assert checked >= 30  # the plans really are written as tool calls


def test_the_check_catches_a_wrong_step() -> None:
    """The parser sees a step with a wrong argument (so the test above can fail)."""
    ((name, args),) = steps_of('Load it: load_study {"study_uid": "<study_uid>"}')
    assert name == "load_study" and args == {"study_uid": "<study_uid>"}


def test_prompt_arguments_are_validated(mcp_server) -> None:
    async def main() -> None:
        async with Client(mcp_server) as client:
            with pytest.raises(MCPError):  # the SDK refuses a prompt call without its required arguments
                await client.get_prompt("review_fhir_patient_study", {})

    asyncio.run(main())


def test_working_safely_says_what_is_gated_now(headless_services, mcp_server) -> None:
    headless_services.config.allow.fhir_write = True

    async def main() -> str:
        async with Client(mcp_server) as client:
            return (await client.get_prompt("working_safely", {})).messages[0].content.text

    text = asyncio.run(main())
    assert "allow.fhir_write (ON)" in text and "allow.execute_python (off)" in text
    assert "allow.confirm_with_person is off" in text
    assert "No PHI in free text" in text
