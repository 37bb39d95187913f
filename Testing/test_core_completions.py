"""completion/complete through the SDK client: scene node ids and names, segments, config names.

The scene is the real headless one; nodes added straight to the scene (not through a tool)
must complete too, since names come from the scene's change notes.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from mcp import Client
from mcp_types import PromptReference, ResourceTemplateReference

from fixtures.scene import SEGMENT_NAMES, make_segmentation_file
from SlicerMCPLib.core.domain_config import DicomNode, FhirServer
from SlicerMCPLib.tools.completions import SOURCES

NODE_TEMPLATE = ResourceTemplateReference(uri="slicer://node/{node_id}")


def complete(server: Any, ref: Any, name: str, value: str, context: dict[str, str] | None = None) -> Any:
    async def main() -> Any:
        async with Client(server) as client:
            return (await client.complete(ref, {"name": name, "value": value}, context)).completion

    return asyncio.run(main())


def test_node_ids_complete_from_the_scene_by_id_or_name(mcp_server, run_on_scene) -> None:
    def add() -> str:
        import slicer

        return slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "Liver CT").GetID()

    node_id = run_on_scene(add)
    by_id = complete(mcp_server, NODE_TEMPLATE, "node_id", "vtkMRMLScalarVol")
    assert node_id in by_id.values
    by_name = complete(mcp_server, NODE_TEMPLATE, "node_id", "liver")
    assert by_name.values == [node_id]
    assert not any(
        "Camera" in v or "View" in v for v in complete(mcp_server, NODE_TEMPLATE, "node_id", "").values
    )


def test_segment_names_of_the_segmentation_in_context(
    mcp_server, headless_backend, scene_thread, tmp_path: Path
) -> None:
    path = make_segmentation_file(tmp_path, scene_thread, headless_backend)
    loaded = asyncio.run(headless_backend.load_volume(path, False, None))
    seg_id = loaded.nodes[0].id
    ref = PromptReference(name="segment_and_measure_lesion")
    got = complete(mcp_server, ref, "segment", "", {"node_id": seg_id})
    assert sorted(got.values) == sorted(SEGMENT_NAMES.values())
    first = sorted(SEGMENT_NAMES.values())[0]
    assert complete(mcp_server, ref, "segment", first[:2], {"node_id": seg_id}).values[0] == first


def test_volume_argument_offers_scene_volumes_and_samples(mcp_server) -> None:
    got = complete(mcp_server, PromptReference(name="segment_and_measure_lesion"), "volume", "MRBrain")
    assert got.values[:2] == ["MRBrainTumor1", "MRBrainTumor2"]


def test_config_names_complete(headless_services, mcp_server) -> None:
    config = headless_services.config
    config.nodes = {
        "orthanc": DicomNode(host="127.0.0.1", port=4242, ae_title="ORTHANC"),
        "archive": DicomNode(host="127.0.0.1", port=4243, ae_title="ARCHIVE"),
    }
    config.fhir_servers = {"hospital": FhirServer(base_url="https://fhir.example.org/r4")}
    review = PromptReference(name="review_fhir_patient_study")
    assert complete(mcp_server, review, "fhir_server", "h").values == ["hospital"]
    assert complete(mcp_server, review, "modality", "c").values[:2] == ["CT", "CR"]
    assert complete(mcp_server, review, "destination_node", "ar").values == ["archive"]
    worklist = PromptReference(name="prepare_modality_worklist")
    aets = complete(mcp_server, worklist, "station_aet", "").values
    assert {"ORTHANC", "ARCHIVE", config.mini_ris.modality.ae_title} <= set(aets)
    assert "FourUp" in complete(mcp_server, review, "layout", "four").values


def test_unknown_argument_completes_to_nothing(mcp_server) -> None:
    got = complete(mcp_server, PromptReference(name="working_safely"), "no_such_argument", "x")
    assert got.values == []


def test_every_prompt_argument_that_names_a_thing_has_a_source(mcp_server) -> None:
    async def main() -> Any:
        async with Client(mcp_server) as client:
            return (await client.list_prompts()).prompts

    free_text = {"patient", "patient_id", "lesion", "date"}  # identifiers and words only the user knows
    for prompt in asyncio.run(main()):
        for argument in prompt.arguments or []:
            assert argument.name in SOURCES or argument.name in free_text, (prompt.name, argument.name)
