"""MCP prompts: the workflows a Slicer user asks for, each a short plan in the catalog's own tool calls.

Every step is written `tool_name {json arguments}` (or `` `tool_name` `` in prose) so that
Testing/test_core_prompts.py can check each prompt against the live catalog: the tool exists
and the arguments validate against its input schema. Placeholders `<like_this>` stand for a
value the assistant takes from an earlier answer; the test fills them with sample values.
No prompt puts patient names into free text: the plans carry identifiers only.
"""

from __future__ import annotations

import datetime as _dt
import json
from typing import Annotated, Any

from mcp.server.mcpserver import Context, MCPServer
from pydantic import Field

from ..core.services import services_of

GATED = {
    "execute_python": "execute_python",
    "dicom_move": "move_series, move_study, pacs_retrieve",
    "dicom_send": "send_to_pacs, create_synthetic_cr_study with send_to_pacs",
    "fhir_write": "fhir_create_resource, fhir_update_resource, fhir_create_imaging_study_from_pacs",
    "ris_write": "create_order, create_mwl_from_order, cancel_mwl, create_synthetic_cr_study",
}


def call(tool: str, **arguments: Any) -> str:
    """One step as the prompts write it: the tool name and its JSON arguments."""
    return f"{tool} {json.dumps(arguments)}"


def review_fhir_patient_study(
    patient: Annotated[str, Field(description="the patient's FHIR id, MRN or identifier (not a name)")],
    modality: Annotated[str | None, Field(description="only studies of this modality, e.g. CT or MR")] = None,
    fhir_server: Annotated[str | None, Field(description="FHIR server name from the config")] = None,
) -> str:
    """Find a patient's imaging studies on the FHIR server, load one from the PACS and show it."""
    steps = []
    if fhir_server:
        steps.append(f"Use the FHIR server {fhir_server}: " + call("switch_fhir_server", name=fhir_server))
    search = {"patient": "<patient_id>"} | ({"modality": modality} if modality else {})
    steps += [
        "Find the patient: " + call("fhir_search_patient", identifier=patient) + "; if nothing matches, "
        "the value may be a FHIR id: " + call("fhir_read_resource", resource_type="Patient", id=patient),
        "List the patient's studies: " + call("fhir_search_imaging_study", **search),
        "Show the user the studies (date, modality, description, number of series) and ask which one to "
        "open when there is more than one.",
        "Map the ImagingStudy to its DICOM study: "
        + call("fhir_dicom_study_for_imaging_study", imaging_study_id="<imaging_study_id>"),
        "List its series: " + call("query_series", study_instance_uid="<study_uid>"),
        "Load the series the user wants (or the whole study): "
        + call("load_series", series_instance_uid="<series_uid>", study_instance_uid="<study_uid>")
        + " or "
        + call("load_study", study_instance_uid="<study_uid>"),
        "Lay out the views and look: "
        + call("set_layout", layout="FourUp")
        + ", then "
        + call("capture_screenshot", view_type="full"),
        "Describe what is loaded (node names, dimensions, spacing) from "
        + call("list_scene_nodes", limit=20)
        + ".",
    ]
    return _plan(f"Review an imaging study of patient {patient} from the FHIR server.", steps)


def prepare_modality_worklist(
    date: Annotated[str | None, Field(description="the day, YYYY-MM-DD (default: today)")] = None,
    station_aet: Annotated[
        str | None, Field(description="AE title of the modality (default: the virtual CR)")
    ] = None,
) -> str:
    """Put the day's ORDERED imaging orders on a modality's worklist and check the result."""
    day = date or _dt.date.today().isoformat()
    station = {"scheduled_station_aet": station_aet} if station_aet else {}
    steps = [
        "List the orders waiting to be scheduled: " + call("list_orders", status="ORDERED"),
        f"Keep those ordered on {day} (their ordered_at date); show the user the list (accession, "
        "procedure, priority; MRN, not names) and ask before scheduling them.",
        "Schedule each one, STAT and HIGH first: "
        + call("create_mwl_from_order", order_id="<order_id>", **station)
        + " (needs allow.ris_write; if it answers OPERATION_DISABLED, tell the user which key turns it on "
        "and stop).",
        "Check the worklist the modality will see: "
        + call(
            "list_worklist",
            date=day,
            status="SCHEDULED",
            **({"station_aet": station_aet} if station_aet else {}),
        ),
        "Report how many entries were created, their times and any order that failed and why.",
    ]
    return _plan(f"Prepare the modality worklist for {day}.", steps)


def segment_and_measure_lesion(
    volume: Annotated[str, Field(description="volume node id or name in the scene, or a sample data name")],
    lesion: Annotated[str, Field(description="what to segment, e.g. 'the enhancing tumour'")] = "the lesion",
) -> str:
    """Segment a lesion in a volume, measure it and report the figures with a picture."""
    steps = [
        f"Find the volume {volume!r}: "
        + call("list_scene_nodes", class_name="vtkMRMLScalarVolumeNode")
        + "; if it is not there and it is a sample name, "
        + call("load_sample_data", name=volume)
        + ".",
        "Look at it first: " + call("capture_screenshot", view_type="axial", scroll_position=0.5) + ".",
        "If the scene already holds a segmentation of it, use that: "
        + call("list_scene_nodes", class_name="vtkMRMLSegmentationNode")
        + ". Otherwise segment it with `execute_python` (threshold or region growing on the volume's "
        "array through slicer.util; needs allow.execute_python): say in one line what the code will do "
        "before running it.",
        "Measure each segment: "
        + call("measure_volume", node_id="<segmentation_id>")
        + ' (one segment: add "segment": "<segment_name>").',
        "Check the segmentation visually: "
        + call("capture_screenshot", view_type="3d")
        + " and "
        + call("capture_screenshot", view_type="axial", scroll_position=0.5)
        + ".",
        f"Report {lesion}: volume in mL and mm³, voxel count, the volume node it was measured on, and "
        "the method used. Keep identifiers to node ids; put no patient name in the report.",
    ]
    return _plan(f"Segment and measure {lesion} in {volume}.", steps)


def compare_time_points(
    patient_id: Annotated[str, Field(description="the patient's DICOM PatientID (MRN)")],
    modality: Annotated[str | None, Field(description="only studies of this modality, e.g. CT")] = None,
) -> str:
    """Load an earlier and a later study of one patient side by side and compare them."""
    query = {"patient_id": patient_id} | ({"modality_in_study": modality} if modality else {})
    steps = [
        "List the patient's studies: " + call("query_studies", **query),
        "Pick the two time points (ask the user when there are more than two): the earlier and the later "
        "study, by date.",
        "For each, list its series and pick the matching one (same modality and description): "
        + call("query_series", study_instance_uid="<study_uid>"),
        "Load both: "
        + call("load_series", series_instance_uid="<series_uid>", study_instance_uid="<study_uid>"),
        "Show them side by side: "
        + call("set_layout", layout="SideBySide")
        + ", then "
        + call("capture_screenshot", view_type="full"),
        "If both have segmentations, measure each: "
        + call("measure_volume", node_id="<segmentation_id>")
        + ", and give the change in mL and percent.",
        "Report dates, series compared and what changed; identifiers only, no patient names.",
    ]
    return _plan(f"Compare two time points of patient {patient_id}.", steps)


async def working_safely(ctx: Context) -> str:
    """How to work with this server safely: what is gated now, what to confirm, no PHI in free text."""
    config = services_of(ctx).config
    allow = config.allow
    lines = [
        "You are working in a 3D Slicer scene through SlicerMCP. Work safely:",
        "",
        "Operations that change the world outside the scene or run code are gated by allow.* in the config:",
    ]
    for key, tools in GATED.items():
        state = "ON" if getattr(allow, key) else "off"
        lines.append(f"- allow.{key} ({state}): {tools}")
    person = "on" if allow.confirm_with_person else "off"
    lines += [
        "",
        f"allow.confirm_with_person is {person}: when on, a gated operation that is off asks the person "
        "through the client (elicitation) and runs only if they accept; you cannot answer for them.",
        "When a tool answers OPERATION_DISABLED, tell the user which allow key it names; never work "
        "around it (no `execute_python` to do what a gated tool refuses).",
        "Before any gated call, even when allowed, say exactly what it will do (destination node, study "
        "and series UIDs, FHIR resource, code) and wait for the user's go-ahead.",
        "`clear_scene` removes every node: ask first.",
        "No PHI in free text: do not put patient names, birth dates or addresses into series "
        "descriptions, FHIR narratives, order reasons, code or its comments; refer to patients by MRN or "
        "FHIR id. Results you show the user may carry names; do not copy them elsewhere.",
        "Errors come back as JSON {error: {code, message, details}}; the message says what to do next.",
        "Start by looking: " + call("list_scene_nodes", limit=20) + " or the slicer://scene resource.",
    ]
    return "\n".join(lines)


def _plan(goal: str, steps: list[str]) -> str:
    numbered = "\n".join(f"{i}. {s}" for i, s in enumerate(steps, 1))
    return (
        f"{goal}\n\nSteps (each tool call is the tool's name and its JSON arguments; <placeholders> come "
        f"from earlier answers):\n"
        f"{numbered}\n\nIf a step fails, read the error's message: it says what to do next."
    )


PROMPTS = (
    (review_fhir_patient_study, "Review a study from a FHIR patient"),
    (prepare_modality_worklist, "Prepare the day's modality worklist"),
    (segment_and_measure_lesion, "Segment and measure a lesion"),
    (compare_time_points, "Compare two time points"),
    (working_safely, "Working safely with SlicerMCP"),
)


def register_prompts(server: MCPServer) -> None:
    for fn, title in PROMPTS:
        server.prompt(title=title)(fn)
