"""The radiology loop, end to end, through the MCP tools, on real peers: the RIS (SQLite and MariaDB)
with its MWL/MPPS SCP, Orthanc as the PACS, sekmet-fhir as the FHIR server, the headless scene.

order -> worklist -> the virtual CT acquires a study with a lesion of known volume -> PACS ->
FHIR ImagingStudy -> load -> threshold + islands -> statistics (within 5 % of the truth) ->
SEG + SR to the PACS -> DiagnosticReport + Observations -> MPPS COMPLETED -> everything asked
back from each peer and compared (UIDs, patient, accession, values).

Set SLICER_MCP_DOC_SHOTS=<folder> to keep the screenshots (docs/images/results-*.png come from it).
"""

from __future__ import annotations

import base64
import io
import os
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
import requests
from PIL import Image

from fixtures.core import free_port
from fixtures.orthanc import Orthanc, orthanc_config
from fixtures.scene import call_tool
from SlicerMCPLib.core.services import Services
from SlicerMCPLib.dicom.service import DicomService
from SlicerMCPLib.fhir.service import FhirService
from SlicerMCPLib.ris.service import RisService
from SlicerMCPLib.serving.server import build_server

STATION = "VIRTUALCT"
MRN = "MRN1002"  # a patient the RIS seed holds


@pytest.fixture
def loop_server(orthanc: Orthanc, fhir_peer: Any, clean_backend: Any, ris_settings: dict[str, Any]) -> Any:
    config = orthanc_config(
        orthanc,
        allow={"ris_write": True, "dicom_send": True, "fhir_write": True},
        mini_ris={**ris_settings, "mwl_port": free_port(), "modality": {"ae_title": STATION}},
        fhir_servers={"local": fhir_peer.server_config()},
        current_fhir="local",
    )
    services = Services(config=config, backend=clean_backend)
    yield build_server(services)
    for kind in (RisService, DicomService, FhirService):
        domain = services.existing(kind)
        if domain is not None:
            domain.close()


def ok(result: Any) -> dict[str, Any]:
    assert not result.is_error, result.content[0].text
    return result.structured_content


def _shot(server: Any, name: str, args: dict[str, Any], folder: Path) -> None:
    result = call_tool(server, "capture_screenshot", args)
    assert not result.is_error, result.content[0].text
    png = base64.b64decode(next(c for c in result.content if c.type == "image").data)
    image = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    assert image.std() > 5, f"{name}: a blank screenshot"
    (folder / f"results-{name}.png").write_bytes(png)


def test_order_to_report_and_completed_step(
    loop_server: Any, orthanc: Orthanc, fhir_peer: Any, tmp_path: Path
) -> None:
    s = loop_server
    shots = Path(os.environ.get("SLICER_MCP_DOC_SHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)

    # RIS: order and worklist; FHIR: the same patient, known by the MRN
    order = ok(call_tool(s, "create_order", {"patient_mrn": MRN, "procedure_code": "CT-ABD-LESION"}))
    accession = order["accession_number"]
    now = datetime.now().replace(second=0, microsecond=0).isoformat()
    mwl = ok(
        call_tool(
            s,
            "create_mwl_from_order",
            {"order_id": order["id"], "scheduled_station_aet": STATION, "scheduled_time": now},
        )
    )
    patient = ok(
        call_tool(
            s,
            "fhir_create_resource",
            {
                "resource": {
                    "resourceType": "Patient",
                    "identifier": [{"system": "urn:ris:mrn", "value": MRN + accession}],
                }
            },
        )
    )

    # the virtual CT acquires: worklist C-FIND, MPPS, C-STORE of 48 slices, MPPS COMPLETED
    ct = ok(
        call_tool(s, "create_synthetic_ct_study", {"accession_number": accession, "lesion_diameter_mm": 20})
    )
    assert ct["study_instance_uid"] == mwl["study_instance_uid"] and ct["image_count"] == 48
    truth_mm3 = ct["lesion_volume_mm3"]
    assert truth_mm3 == pytest.approx(4 / 3 * np.pi * 10**3)
    series = ok(call_tool(s, "query_series", {"study_instance_uid": ct["study_instance_uid"]}))["records"]
    assert [r["SeriesInstanceUID"] for r in series] == [ct["series_instance_uid"]]

    # PACS -> FHIR ImagingStudy (the patient found by the study's PatientID, made unique per run)
    imaging = ok(
        call_tool(
            s,
            "fhir_create_imaging_study_from_pacs",
            {"study_instance_uid": ct["study_instance_uid"], "node": "orthanc", "patient": patient["id"]},
        )
    )

    # load, threshold, islands, statistics
    loaded = ok(call_tool(s, "load_series", {"series_instance_uid": ct["series_instance_uid"]}))
    volume_id = loaded["loaded"][0]["node"]["id"]
    seg = ok(
        call_tool(
            s, "create_segmentation", {"volume_id": volume_id, "segments": ["Lesion"], "name": "Findings"}
        )
    )
    seg_id = seg["segmentation_id"]
    ok(
        call_tool(
            s,
            "segment_threshold",
            {"segmentation_id": seg_id, "segment": "Lesion", "lower": 120, "upper": 600},
        )
    )
    two_islands = ok(call_tool(s, "segment_statistics", {"segmentation_id": seg_id, "surface": False}))[
        "segments"
    ][0]
    ok(
        call_tool(
            s, "segment_islands", {"segmentation_id": seg_id, "segment": "Lesion", "mode": "keep_largest"}
        )
    )
    stats = ok(call_tool(s, "segment_statistics", {"segmentation_id": seg_id}))["segments"][0]
    assert stats["voxel_count"] < two_islands["voxel_count"]  # the calcification is gone
    assert abs(stats["volume_mm3"] - truth_mm3) / truth_mm3 < 0.05, (stats["volume_mm3"], truth_mm3)
    assert stats["mean"] == pytest.approx(ct["lesion_hu"], abs=3)
    line = ok(
        call_tool(s, "place_markup", {"type": "line", "points": [[-18, 6, 0], [2, 6, 0]], "name": "D-1"})
    )
    _shot(s, "axial", {"view_type": "axial", "scroll_position": 0.5, "size": 512}, shots)
    _shot(s, "3d", {"view_type": "3d", "look_from_axis": "anterior", "size": 512}, shots)

    # SEG + SR, stored and verified in the PACS
    seg_out = ok(call_tool(s, "export_dicom_seg", {"segmentation_node_id": seg_id, "segments": ["Lesion"]}))
    assert seg_out["segments"][0]["voxels"] == stats["voxel_count"]
    assert seg_out["segments"][0]["volume_mm3"] == pytest.approx(stats["volume_mm3"], rel=1e-6)
    sr_out = ok(
        call_tool(
            s,
            "export_dicom_sr",
            {
                "seg_sop_instance_uid": seg_out["sop_instance_uid"],
                "measurements": [
                    {"segment": "Lesion", "quantity": "mean", "value": stats["mean"], "unit": "[hnsf'U]"},
                    {"segment": "Lesion", "quantity": "maximum", "value": stats["max"], "unit": "[hnsf'U]"},
                ],
                "markups": [
                    {"name": "D-1", "quantity": "diameter", "value": line["length_mm"], "unit": "mm"}
                ],
            },
        )
    )
    results = [seg_out["sop_instance_uid"], sr_out["sop_instance_uid"]]
    stored = ok(call_tool(s, "store_results_to_pacs", {"sop_instance_uids": results}))
    assert stored["success"] and stored["verified"] == 2
    (on_order,) = stored["ris_orders"]  # the verified SEG and SR, linked to the order of their accession
    assert on_order["accession_number"] == accession and on_order["linked"], on_order
    assert on_order["order_id"] == order["id"]
    assert [(x["kind"], x["identifier"]) for x in on_order["stored_results"]] == [
        ("SEG", seg_out["sop_instance_uid"]),
        ("SR", sr_out["sop_instance_uid"]),
    ]

    # the report, in FHIR
    conclusion = f"Solitary lesion of {stats['volume_ml']:.2f} mL, mean {stats['mean']:.0f} HU."
    report = ok(
        call_tool(
            s,
            "fhir_create_report",
            {"conclusion": conclusion, "sr_sop_instance_uid": sr_out["sop_instance_uid"]},
        )
    )
    assert len(report["observation_ids"]) == 4  # volume, mean, maximum, diameter
    report_ref = f"DiagnosticReport/{report['diagnostic_report_id']}"
    assert report["ris_order"]["linked"] and report["ris_order"]["accession_number"] == accession

    # the order lists all three before the step is completed: the SEG and SR in the PACS, the report in FHIR
    (listed,) = ok(call_tool(s, "list_orders", {"accession_number": accession}))["orders"]
    shown = {x["kind"]: x for x in listed["stored_results"]}
    assert len(listed["stored_results"]) == 3 and set(shown) == {"SEG", "SR", "DiagnosticReport"}
    assert (shown["SEG"]["identifier"], shown["SEG"]["series_instance_uid"], shown["SEG"]["location"]) == (
        seg_out["sop_instance_uid"],
        seg_out["series_instance_uid"],
        "orthanc",
    )
    assert (shown["SR"]["identifier"], shown["SR"]["study_instance_uid"]) == (
        sr_out["sop_instance_uid"],
        ct["study_instance_uid"],
    )
    assert (shown["DiagnosticReport"]["identifier"], shown["DiagnosticReport"]["status"]) == (
        report_ref,
        "preliminary",
    )
    assert shown["DiagnosticReport"]["derived_from"] == sr_out["sop_instance_uid"]
    assert (
        shown["DiagnosticReport"]["conclusion"] == conclusion
        and shown["DiagnosticReport"]["location"] == "local"
    )

    # the reading step completed on the RIS, over DICOM MPPS, with the report on the order
    done = ok(
        call_tool(
            s,
            "complete_procedure_step",
            {
                "accession_number": accession,
                "sop_instance_uids": results,
                "diagnostic_report": report_ref,
                "conclusion": conclusion,
            },
        )
    )
    assert done["mpps_status"] == "COMPLETED"
    assert sorted(done["performed_series"]) == sorted(
        [seg_out["series_instance_uid"], sr_out["series_instance_uid"]]
    )

    # -- everything asked back, peer by peer -------------------------------------------------------
    status = ok(call_tool(s, "get_procedure_step_status", {"accession_number": accession}))
    assert [m["status"] for m in status["performed_steps"]] == ["COMPLETED", "COMPLETED"]  # the CT's, ours
    kinds = sorted(r["kind"] for r in status["results"])
    assert kinds == ["IMAGE"] * 48 + ["SEG", "SR"]
    assert status["reports"][0]["reference"] == report_ref
    assert status["reports"][0]["sr_sop_instance_uid"] == sr_out["sop_instance_uid"]
    # still one row each: completing the step linked the same three again
    assert [(x["kind"], x["identifier"]) for x in status["stored_results"]] == [
        ("SEG", seg_out["sop_instance_uid"]),
        ("SR", sr_out["sop_instance_uid"]),
        ("DiagnosticReport", report_ref),
    ]
    assert done["stored_results"] == status["stored_results"]
    on_ris = {x["kind"]: x["identifier"] for x in status["stored_results"]}

    instances = ok(
        call_tool(
            s,
            "query_studies",
            {"study_instance_uid": ct["study_instance_uid"], "attribute_preset": "extended"},
        )
    )["records"][0]
    assert instances["AccessionNumber"] == accession and instances["PatientID"] == MRN
    assert int(instances["NumberOfStudyRelatedInstances"]) == 50
    for uid in (on_ris["SEG"], on_ris["SR"]):  # what Orthanc holds under the UIDs the RIS lists
        data = requests.get(f"{orthanc.url}/instances/{orthanc.orthanc_id(uid)}/file", timeout=10).content
        ds = pydicom.dcmread(io.BytesIO(data))
        assert (ds.PatientID, ds.AccessionNumber, ds.StudyInstanceUID) == (
            MRN,
            accession,
            ct["study_instance_uid"],
        )

    stored_report = fhir_peer.read(on_ris["DiagnosticReport"])  # the reference the RIS holds resolves
    assert stored_report["subject"]["reference"] == f"Patient/{patient['id']}"
    assert stored_report["imagingStudy"] == [{"reference": f"ImagingStudy/{imaging['id']}"}]
    assert stored_report["conclusion"] == conclusion
    observations = {o: fhir_peer.read(f"Observation/{o}") for o in report["observation_ids"]}
    volume_obs = next(o for o in observations.values() if o["code"]["coding"][0]["code"] == "118565006")
    assert volume_obs["valueQuantity"]["value"] == pytest.approx(stats["volume_mm3"], rel=1e-6)
    assert volume_obs["derivedFrom"] == [{"reference": f"ImagingStudy/{imaging['id']}"}]
    imaging_back = fhir_peer.read(f"ImagingStudy/{imaging['id']}")
    assert imaging_back["identifier"][0]["value"] == f"urn:oid:{ct['study_instance_uid']}"

    # the SEG from the PACS loads back over the CT voxel for voxel (same voxel count as measured)
    ok(call_tool(s, "clear_scene", {}))
    back = ok(call_tool(s, "load_series", {"series_instance_uid": seg_out["series_instance_uid"]}))
    seg_node = back["loaded"][-1]["node"]
    assert seg_node["class_name"] == "vtkMRMLSegmentationNode"
    again = ok(call_tool(s, "segment_statistics", {"segmentation_id": seg_node["id"], "surface": False}))
    assert again["segments"][0]["voxel_count"] == stats["voxel_count"]
    _shot(s, "seg-reloaded", {"view_type": "axial", "scroll_position": 0.5, "size": 512}, shots)
