"""Every DICOM tool through the SDK's in-memory MCP client against a real Orthanc."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import SimpleITK as sitk
from mcp import Client

from fixtures.core import loose_modes
from fixtures.orthanc import (
    Orthanc,
    make_ct_series,
    make_mr_series,
    make_pdf_instance,
    orthanc_config,
    stored_values,
    unique_patient,
)
from fixtures.scene import error_of
from SlicerMCPLib.dicom.volume import LPS_TO_RAS


def call(server: Any, name: str, args: dict[str, Any] | None = None, progress: list | None = None) -> Any:
    async def main() -> Any:
        async with Client(server) as client:
            if progress is None:
                return await client.call_tool(name, args or {})

            async def on_progress(done: float, total: float | None, message: str | None) -> None:
                progress.append((done, total, message))

            return await client.call_tool(name, args or {}, progress_callback=on_progress)

    return asyncio.run(main())


def ok(result: Any) -> dict[str, Any]:
    assert not result.is_error, result.content[0].text
    return result.structured_content


def test_catalog_has_the_dicom_mcp_tools(dicom_server: Any) -> None:
    async def main() -> Any:
        async with Client(dicom_server) as client:
            return await client.list_tools()

    tools = {t.name: t for t in asyncio.run(main()).tools}
    names = {
        "list_dicom_nodes", "switch_dicom_node", "verify_connection", "query_patients", "query_studies",
        "query_series", "query_instances", "get_attribute_presets", "extract_pdf_text_from_dicom", "move_series",
        "move_study", "retrieve_series", "retrieve_study", "load_series", "load_study", "send_to_pacs",
    }  # fmt: skip
    assert names <= set(tools)
    assert tools["query_studies"].annotations.read_only_hint is True
    assert tools["move_series"].annotations.read_only_hint is False
    assert tools["load_series"].annotations.open_world_hint is True
    assert tools["list_dicom_nodes"].annotations.open_world_hint is False


def test_nodes_switch_and_echo(dicom_server: Any, orthanc: Orthanc) -> None:
    nodes = ok(call(dicom_server, "list_dicom_nodes"))
    assert nodes["current_node"] == "orthanc" and nodes["calling_aet"] == "SLICERMCP"
    by_name = {n["name"]: n for n in nodes["nodes"]}
    assert by_name["orthanc"]["retrieve_method"] == "dicomweb"
    assert by_name["orthanc-dimse"]["retrieve_method"] == "c-get"
    echo = ok(call(dicom_server, "verify_connection"))
    assert echo["success"] and echo["status"].startswith("0x0000")
    assert echo["accepted_contexts"][0]["abstract_syntax"] == "1.2.840.10008.1.1"
    assert (
        ok(call(dicom_server, "switch_dicom_node", {"node_name": "orthanc-dimse"}))["current_node"]
        == "orthanc-dimse"
    )
    assert ok(call(dicom_server, "list_dicom_nodes"))["current_node"] == "orthanc-dimse"
    err = error_of(call(dicom_server, "switch_dicom_node", {"node_name": "nope"}))
    assert err["code"] == "INVALID_PARAMETER" and "orthanc-dimse" in err["message"]


def test_queries_at_every_level(dicom_server: Any, orthanc: Orthanc) -> None:
    ct, ct_ds = make_ct_series(slices=4)
    mr, mr_ds = make_mr_series(patient_id=ct.patient_id, slices=3, study_uid=ct.study_uid)
    orthanc.upload(ct_ds + mr_ds)
    patients = ok(call(dicom_server, "query_patients", {"patient_id": ct.patient_id}))
    assert patients["count"] == 1 and patients["records"][0]["PatientID"] == ct.patient_id
    assert set(patients["records"][0]) >= {"PatientName", "PatientBirthDate", "PatientSex"}
    minimal = ok(
        call(dicom_server, "query_patients", {"patient_id": ct.patient_id, "attribute_preset": "minimal"})
    )
    assert "PatientBirthDate" not in minimal["records"][0]

    studies = ok(
        call(dicom_server, "query_studies", {"patient_id": ct.patient_id, "study_date": "20240101-20241231"})
    )
    assert [s["StudyInstanceUID"] for s in studies["records"]] == [ct.study_uid]
    assert sorted(studies["records"][0]["ModalitiesInStudy"]) == ["CT", "MR"]
    none = ok(call(dicom_server, "query_studies", {"patient_id": ct.patient_id, "study_date": "20250101-"}))
    assert none["count"] == 0 and none["has_more"] is False

    series = ok(
        call(
            dicom_server,
            "query_series",
            {"study_instance_uid": ct.study_uid, "additional_attributes": ["BodyPartExamined"]},
        )
    )
    assert {s["SeriesInstanceUID"] for s in series["records"]} == {ct.series_uid, mr.series_uid}
    assert {s["NumberOfSeriesRelatedInstances"] for s in series["records"]} == {4, 3}
    assert "BodyPartExamined" in series["attributes"]
    mr_only = ok(call(dicom_server, "query_series", {"study_instance_uid": ct.study_uid, "modality": "MR"}))
    assert [s["SeriesDescription"] for s in mr_only["records"]] == [mr.description]

    instances = ok(
        call(
            dicom_server,
            "query_instances",
            {"series_instance_uid": ct.series_uid, "exclude_attributes": ["ContentDate"], "limit": 2},
        )
    )
    assert instances["count"] == 2 and instances["has_more"] is True and instances["pending_responses"] >= 3
    assert "ContentDate" not in instances["attributes"]
    presets = ok(call(dicom_server, "get_attribute_presets"))["presets"]
    assert presets["study"]["minimal"] == ["StudyInstanceUID", "StudyDate", "PatientID"]


def test_multi_patient_name_wildcard(dicom_server: Any, orthanc: Orthanc) -> None:
    tag = unique_patient("W")
    for n in range(3):
        _, ds = make_ct_series(patient_id=f"{tag}{n}", slices=1, patient_name=f"{tag}^NUMBER{n}")
        orthanc.upload(ds)
    found = ok(call(dicom_server, "query_patients", {"name_pattern": f"{tag}^*"}))
    assert sorted(r["PatientID"] for r in found["records"]) == [f"{tag}{n}" for n in range(3)]
    one = ok(call(dicom_server, "query_patients", {"name_pattern": f"{tag}^NUMBER1"}))
    assert [r["PatientID"] for r in one["records"]] == [f"{tag}1"]


@pytest.mark.parametrize(
    ("tool", "args"),
    [
        ("query_series", {"study_instance_uid": "1.2.3*"}),
        ("query_series", {"study_instance_uid": "1.2.3\\1.2.4"}),
        ("query_instances", {"series_instance_uid": "1.2", "sop_instance_uid": "1.2.?"}),
        ("query_studies", {"patient_id": "A\\B"}),
        ("query_studies", {"study_date": "2024-01-01"}),
        ("query_studies", {"modality_in_study": "CT*"}),
        ("query_patients", {"additional_attributes": ["NotAKeyword"]}),
        ("load_series", {"series_instance_uid": "1." + "1" * 70}),
    ],
)
def test_filters_are_validated(dicom_server: Any, tool: str, args: dict[str, Any]) -> None:
    assert error_of(call(dicom_server, tool, args))["code"] == "INVALID_PARAMETER"


def test_pdf_text(dicom_server: Any, orthanc: Orthanc) -> None:
    pdf = make_pdf_instance(unique_patient("DOC"), ["Findings: no acute disease", "Impression: normal"])
    orthanc.upload([pdf])
    args = {
        "study_instance_uid": pdf.StudyInstanceUID,
        "series_instance_uid": pdf.SeriesInstanceUID,
        "sop_instance_uid": pdf.SOPInstanceUID,
    }
    text = ok(call(dicom_server, "extract_pdf_text_from_dicom", args))
    assert text["page_count"] == 2
    assert text["pages"][0]["text"] == "Findings: no acute disease"
    assert text["pages"][1]["text"] == "Impression: normal"
    assert text["document_title"] == "Radiology report"


def test_pdf_text_refuses_an_image(dicom_server: Any, orthanc: Orthanc) -> None:
    ct, ds = make_ct_series(slices=1)
    orthanc.upload(ds)
    args = {
        "study_instance_uid": ct.study_uid,
        "series_instance_uid": ct.series_uid,
        "sop_instance_uid": str(ds[0].SOPInstanceUID),
    }
    assert (
        "not an Encapsulated PDF"
        in error_of(call(dicom_server, "extract_pdf_text_from_dicom", args))["message"]
    )


@pytest.mark.parametrize("method", ["dicomweb", "c-get", "c-move"])
def test_retrieve_series_by_each_method(dicom_server: Any, orthanc: Orthanc, method: str) -> None:
    ct, ds = make_ct_series(slices=6)
    orthanc.upload(ds)
    progress: list = []
    result = ok(
        call(
            dicom_server,
            "retrieve_series",
            {"series_instance_uid": ct.series_uid, "method": method},
            progress,
        )
    )
    assert result["method"] == method and result["instances"] == 6
    files = sorted(Path(result["directory"]).glob("*.dcm"))
    assert {f.stem for f in files} == {str(d.SOPInstanceUID) for d in ds}
    per_instance = [p for p in progress if p[2] and p[2].startswith("retrieved")]
    assert [p[0] for p in per_instance] == [1, 2, 3, 4, 5, 6]
    assert progress[-1][:2] == (6, 6) and "arrived" in progress[-1][2]


def test_retrieve_study(dicom_server: Any, orthanc: Orthanc) -> None:
    ct, ct_ds = make_ct_series(slices=3)
    _, mr_ds = make_mr_series(patient_id=ct.patient_id, slices=2, study_uid=ct.study_uid)
    orthanc.upload(ct_ds + mr_ds)
    result = ok(call(dicom_server, "retrieve_study", {"study_instance_uid": ct.study_uid}))
    assert result["instances"] == 5 and len(result["series_instance_uids"]) == 2
    assert len(list(Path(result["directory"]).rglob("*.dcm"))) == 5


def lps(ijk_to_ras: np.ndarray) -> np.ndarray:
    return LPS_TO_RAS @ ijk_to_ras


@pytest.mark.parametrize("method", ["dicomweb", "c-get", "c-move"])
def test_load_series_matches_simpleitk(
    dicom_server: Any, orthanc: Orthanc, headless_backend: Any, tmp_path: Path, method: str
) -> None:
    spec, ds = make_ct_series(slices=8)
    orthanc.upload(ds)
    for d in ds:
        d.save_as(tmp_path / f"{d.SOPInstanceUID}.dcm", enforce_file_format=True)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(tmp_path)))
    image = reader.Execute()

    result = ok(call(dicom_server, "load_series", {"series_instance_uid": spec.series_uid, "method": method}))
    assert result["method"] == method and len(result["loaded"]) == 1
    node = result["loaded"][0]["node"]
    assert node["name"] == spec.description
    exported = asyncio.run(headless_backend.export_volume(node["id"]))
    m = lps(exported.ijk_to_ras)
    spacing = np.linalg.norm(m[:3, :3], axis=0)
    np.testing.assert_allclose(m[:3, 3], image.GetOrigin(), atol=1e-4)
    np.testing.assert_allclose(spacing, image.GetSpacing(), atol=1e-5)
    np.testing.assert_allclose(m[:3, :3] / spacing, np.array(image.GetDirection()).reshape(3, 3), atol=1e-6)
    np.testing.assert_array_equal(exported.array, sitk.GetArrayFromImage(image))
    assert exported.array[2, 1, 0] == stored_values(spec, 2)[1, 0] - 1024

    details = ok(call(dicom_server, "get_node", {"node_id": node["id"]}))
    assert details["attributes"]["DICOM.SeriesInstanceUID"] == spec.series_uid
    assert details["attributes"]["DICOM.StudyInstanceUID"] == spec.study_uid


def test_load_study_skips_documents(dicom_server: Any, orthanc: Orthanc) -> None:
    ct, ct_ds = make_ct_series(slices=4)
    mr, mr_ds = make_mr_series(patient_id=ct.patient_id, slices=3, study_uid=ct.study_uid)
    pdf = make_pdf_instance(ct.patient_id, ["report"], study_uid=ct.study_uid)
    orthanc.upload(ct_ds + mr_ds + [pdf])
    result = ok(call(dicom_server, "load_study", {"study_instance_uid": ct.study_uid}))
    assert {s["series_instance_uid"] for s in result["loaded"]} == {ct.series_uid, mr.series_uid}
    assert [s["series_instance_uid"] for s in result["skipped"]] == [str(pdf.SeriesInstanceUID)]
    names = {s["node"]["name"] for s in result["loaded"]}
    assert names == {ct.description, mr.description}


def test_move_is_off_by_default_and_explains(dicom_server: Any) -> None:
    err = error_of(
        call(dicom_server, "move_study", {"destination_node": "dcmtk", "study_instance_uid": "1.2.3"})
    )
    assert err["code"] == "OPERATION_DISABLED"
    assert "SLICER_MCP_ALLOW_DICOM_MOVE" in err["message"]
    err = error_of(call(dicom_server, "send_to_pacs", {"file_paths": ["/nonexistent"]}))
    assert err["code"] == "OPERATION_DISABLED"


def test_send_volume_and_files(
    dicom_server: Any, dicom_services: Any, orthanc: Orthanc, tmp_path: Path
) -> None:
    dicom_services.config.allow.dicom_send = True
    spec, ds = make_ct_series(slices=5)
    orthanc.upload(ds)
    loaded = ok(call(dicom_server, "load_series", {"series_instance_uid": spec.series_uid}))
    node_id = loaded["loaded"][0]["node"]["id"]
    sent = ok(
        call(
            dicom_server,
            "send_to_pacs",
            {
                "volume_node_id": node_id,
                "reference_series_instance_uid": spec.series_uid,
                "series_description": "Sent back",
            },
        )
    )
    assert sent["sent"] == 5 and sent["failed"] == 0 and sent["study_instance_uid"] == spec.study_uid
    assert sent["series_instance_uid"] != spec.series_uid
    series = ok(call(dicom_server, "query_series", {"study_instance_uid": spec.study_uid}))
    assert {s["SeriesDescription"] for s in series["records"]} == {spec.description, "Sent back"}
    again = ok(call(dicom_server, "load_series", {"series_instance_uid": sent["series_instance_uid"]}))
    a = asyncio.run(dicom_services.backend.export_volume(node_id))
    b = asyncio.run(dicom_services.backend.export_volume(again["loaded"][0]["node"]["id"]))
    np.testing.assert_array_equal(a.array, b.array)
    np.testing.assert_allclose(a.ijk_to_ras, b.ijk_to_ras, atol=1e-5)

    other, other_ds = make_mr_series(slices=2)
    folder = tmp_path / "files"
    folder.mkdir()
    for d in other_ds:
        d.save_as(folder / f"{d.SOPInstanceUID}.dcm", enforce_file_format=True)
    sent = ok(
        call(dicom_server, "send_to_pacs", {"file_paths": [str(folder)], "destination_node": "orthanc-dimse"})
    )
    assert sent["sent"] == 2
    assert orthanc.count_instances(other.series_uid) == 2


def test_error_body_is_json(dicom_server: Any) -> None:
    result = call(dicom_server, "query_series", {"study_instance_uid": "bad uid"})
    body = json.loads(result.content[0].text)
    assert body["error"]["details"]["parameter"] == "StudyInstanceUID"


def test_dicom_mcp_config_loads_unchanged(orthanc: Orthanc, clean_backend: Any, tmp_path: Path) -> None:
    """A config file written for dicom-mcp (nodes, current_node, calling_aet) works as it is."""
    from SlicerMCPLib.core.config import load_config
    from SlicerMCPLib.core.services import Services
    from SlicerMCPLib.serving.server import build_server

    path = tmp_path / "dicom-mcp.yaml"
    path.write_text(
        "nodes:\n"
        "  main:\n"
        "    host: 127.0.0.1\n"
        f"    port: {orthanc.dicom_port}\n"
        f"    ae_title: {orthanc.aet}\n"
        "    description: Local Orthanc\n"
        "current_node: main\n"
        "calling_aet: SLICERMCP\n"
    )
    server = build_server(Services(config=load_config(path, env={}), backend=clean_backend))
    nodes = ok(call(server, "list_dicom_nodes"))
    assert (
        nodes["nodes"][0]["description"] == "Local Orthanc"
        and nodes["nodes"][0]["retrieve_method"] == "c-get"
    )
    assert ok(call(server, "verify_connection"))["success"]


def test_storage_scp_stays_on_loopback() -> None:
    from SlicerMCPLib.core.config import load_config
    from SlicerMCPLib.core.errors import ConfigError

    with pytest.raises(ConfigError, match="storage_scp"):
        load_config(env={}, overrides={"storage_scp": {"bind_address": "0.0.0.0"}})
    ok_config = load_config(
        env={}, overrides={"storage_scp": {"bind_address": "0.0.0.0", "allow_remote": True}}
    )
    assert ok_config.storage_scp.allow_remote


def test_load_series_says_which_non_image_instances_it_skipped(dicom_server: Any, orthanc: Orthanc) -> None:
    """A report object stored in the image series (as some modalities do): the slices load and the
    result counts what was left out, by modality, without patient data."""
    spec, ds = make_ct_series(slices=4)
    report = make_pdf_instance(spec.patient_id, ["Impression: normal"])
    report.StudyInstanceUID, report.SeriesInstanceUID = ds[0].StudyInstanceUID, ds[0].SeriesInstanceUID
    orthanc.upload([*ds, report])
    result = ok(call(dicom_server, "load_series", {"series_instance_uid": spec.series_uid}))
    [series] = result["loaded"]
    warnings = " ".join(series["warnings"])
    assert f"skipped 1 non-image instance(s) (by modality: 1 {report.Modality})" in warnings
    assert spec.patient_id not in warnings


@pytest.mark.parametrize("method", ["dicomweb", "c-get", "c-move"])
def test_retrieved_files_are_private_in_private_folders(
    orthanc: Orthanc, clean_backend: Any, tmp_path: Path, usual_umask: None, method: str
) -> None:
    """Retrieved instances hold names and birth dates: each file 0600, each folder we make 0700, in a
    configured storage folder that did not exist yet and in the default temp one (issue 15 item 9)."""
    from SlicerMCPLib.core.services import Services
    from SlicerMCPLib.dicom.service import DicomService
    from SlicerMCPLib.serving.server import build_server

    ct, ds = make_ct_series(slices=3)
    orthanc.upload(ds)
    for storage in (tmp_path / "pacs-copies" / "incoming", None):
        overrides = {"dicom_storage_dir": str(storage)} if storage else {}
        services = Services(config=orthanc_config(orthanc, **overrides), backend=clean_backend)
        try:
            args = {"series_instance_uid": ct.series_uid, "method": method}
            result = ok(call(build_server(services), "retrieve_series", args))
            root = services.domain(DicomService).storage_dir()
            assert len(list(root.rglob("*.dcm"))) == 3 and Path(result["directory"]).is_relative_to(root)
            made = [tmp_path / "pacs-copies"] if storage else [root]
            assert loose_modes(*made) == {}
        finally:
            services.domain(DicomService).close()
