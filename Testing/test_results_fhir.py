"""DiagnosticReport + Observations from exported results, and from a DICOM PDF, on the real FHIR server.

sekmet-fhir runs as a process (fixtures/fhir.py); what was written is read back from it with
plain HTTP, not through our client, and compared with the SR's values.
"""

from __future__ import annotations

import base64
import uuid
from typing import Any

import numpy as np
import pytest

from fixtures.fhir import call
from fixtures.orthanc import make_ct_series, make_pdf_bytes, make_pdf_instance, orthanc_config
from SlicerMCPLib.core.errors import SlicerMCPError
from SlicerMCPLib.core.scene_backend import SegmentationArray, SegmentMask
from SlicerMCPLib.core.services import Services
from SlicerMCPLib.dicom.service import DicomService
from SlicerMCPLib.fhir.report import ReportValue, report_bundle
from SlicerMCPLib.scene import segment_io


def _services(orthanc: Any, fhir_peer: Any, backend: Any, **allow: bool) -> Services:
    config = orthanc_config(
        orthanc, fhir_servers={"local": fhir_peer.server_config()}, current_fhir="local", allow=allow
    )
    return Services(config=config, backend=backend)


def _ok(results: list[tuple[bool, dict[str, Any]]]) -> list[dict[str, Any]]:
    for is_error, body in results:
        assert not is_error, body
    return [body for _, body in results]


@pytest.fixture
def patient_with_study(fhir_peer: Any, orthanc: Any, clean_backend: Any) -> Any:
    mrn = "RPT" + uuid.uuid4().hex[:10].upper()
    spec, datasets = make_ct_series(mrn, slices=8)
    orthanc.upload(datasets)
    services = _services(orthanc, fhir_peer, clean_backend, fhir_write=True, dicom_send=True)
    patient = {"resourceType": "Patient", "identifier": [{"system": "urn:test:mrn", "value": mrn}]}
    created, imaging, loaded = _ok(
        call(
            services,
            ("fhir_create_resource", {"resource": patient}),
            (
                "fhir_create_imaging_study_from_pacs",
                {"study_instance_uid": spec.study_uid, "node": "orthanc"},
            ),
            ("load_series", {"series_instance_uid": spec.series_uid}),
        )
    )
    yield services, spec, created["id"], imaging["id"], loaded["loaded"][0]["node"]
    services.existing(DicomService).close()


def test_report_from_the_sr_has_one_observation_per_value_and_reads_back(
    patient_with_study: Any, fhir_peer: Any, clean_backend: Any, run_on_scene: Any
) -> None:
    services, spec, patient_id, imaging_id, volume = patient_with_study
    shape = tuple(reversed(volume["volume"]["dimensions"]))
    lesion = np.zeros(shape, bool)
    lesion[2:5, 6:12, 5:10] = True

    def add() -> str:
        seg = SegmentationArray("Findings", [SegmentMask("1", "Lesion", lesion)], volume["id"])
        return segment_io.add_segmentation(clean_backend.app, seg, "test").GetID()

    seg_node = run_on_scene(add)
    (seg,) = _ok(call(services, ("export_dicom_seg", {"segmentation_node_id": seg_node})))
    (sr,) = _ok(
        call(
            services,
            (
                "export_dicom_sr",
                {
                    "seg_sop_instance_uid": seg["sop_instance_uid"],
                    "measurements": [
                        {"segment": "Lesion", "quantity": "mean", "value": 55.0, "unit": "[hnsf'U]"}
                    ],
                },
            ),
        )
    )
    (report,) = _ok(
        call(
            services,
            (
                "fhir_create_report",
                {"conclusion": "Solitary lesion, 0.2 mL.", "sr_sop_instance_uid": sr["sop_instance_uid"]},
            ),
        )
    )
    assert report["read_back"] and report["status"] == "preliminary"
    assert (
        report["subject"] == f"Patient/{patient_id}"
        and report["imaging_study"] == f"ImagingStudy/{imaging_id}"
    )
    assert len(report["observation_ids"]) == 2

    # the server's own view of it
    stored = fhir_peer.read(f"DiagnosticReport/{report['diagnostic_report_id']}")
    assert stored["code"]["coding"][0] == {
        "system": "http://loinc.org",
        "code": "18748-4",
        "display": "Diagnostic imaging study",
    }
    assert (
        stored["conclusion"] == "Solitary lesion, 0.2 mL."
        and stored["category"][0]["coding"][0]["code"] == "RAD"
    )
    assert stored["identifier"][0]["value"] == f"urn:oid:{sr['sop_instance_uid']}"
    assert sorted(r["reference"] for r in stored["result"]) == sorted(
        f"Observation/{i}" for i in report["observation_ids"]
    )
    observations = [fhir_peer.read(f"Observation/{i}") for i in report["observation_ids"]]
    volume_obs = next(o for o in observations if o["code"]["coding"][0]["code"] == "118565006")
    assert volume_obs["code"]["coding"][0]["system"] == "http://snomed.info/sct"
    assert volume_obs["valueQuantity"]["system"] == "http://unitsofmeasure.org"
    assert volume_obs["valueQuantity"]["code"] == "mm3"
    assert volume_obs["valueQuantity"]["value"] == pytest.approx(lesion.sum() * 0.8 * 0.7 * 2.5)
    assert volume_obs["derivedFrom"] == [{"reference": f"ImagingStudy/{imaging_id}"}]
    assert volume_obs["subject"]["reference"] == f"Patient/{patient_id}"
    assert volume_obs["bodySite"]["coding"][0]["code"] == "52988006"  # SNOMED CT Lesion
    mean_obs = next(o for o in observations if o is not volume_obs)
    assert (
        mean_obs["valueQuantity"]["code"] == "[hnsf'U]"
        and mean_obs["method"]["coding"][0]["code"] == "373098007"
    )
    # searchable the way a FHIR client finds reports for a patient
    assert fhir_peer.count("DiagnosticReport", {"subject": f"Patient/{patient_id}"}) == 1


def test_writes_are_gated(orthanc: Any, fhir_peer: Any, clean_backend: Any) -> None:
    services = _services(orthanc, fhir_peer, clean_backend)
    ((is_error, body),) = call(services, ("fhir_create_report", {"conclusion": "x", "patient": "1"}))
    assert is_error and body["code"] == "OPERATION_DISABLED" and "fhir_write" in body["message"]


def test_an_invalid_resource_is_refused_before_sending() -> None:
    with pytest.raises(SlicerMCPError) as err:
        report_bundle(
            subject="Patient/1",
            imaging_study={"id": "7", "basedOn": {"reference": "ServiceRequest/1"}},  # must be a list
            conclusion="x",
            status="final",
            values=[ReportValue("Lesion", "volume", 1.0, "mm3")],
        )
    assert err.value.code == "FHIR_VALIDATION_ERROR" and "basedOn" in err.value.message


def _report_from_pdf(services: Services, mrn: str, pdf: Any) -> list[dict[str, Any]]:
    """A FHIR Patient for `mrn`, then fhir_report_from_dicom_pdf of the PDF instance: (patient, report)."""
    patient = {"resourceType": "Patient", "identifier": [{"system": "urn:test:mrn", "value": mrn}]}
    return _ok(
        call(
            services,
            ("fhir_create_resource", {"resource": patient}),
            (
                "fhir_report_from_dicom_pdf",
                {
                    "study_instance_uid": str(pdf.StudyInstanceUID),
                    "series_instance_uid": str(pdf.SeriesInstanceUID),
                    "sop_instance_uid": str(pdf.SOPInstanceUID),
                },
            ),
        )
    )


def test_report_from_a_dicom_pdf(fhir_peer: Any, orthanc: Any, clean_backend: Any) -> None:
    mrn = "PDF" + uuid.uuid4().hex[:10].upper()
    pages = ["No acute findings. Lungs clear.", "Page two."]
    pdf = make_pdf_instance(mrn, pages)
    orthanc.upload([pdf])
    services = _services(orthanc, fhir_peer, clean_backend, fhir_write=True)
    created, report = _report_from_pdf(services, mrn, pdf)
    assert report["subject"] == f"Patient/{created['id']}" and report["status"] == "final"
    assert report["conclusion"] == pages[0] and report["observation_ids"] == []
    stored = fhir_peer.read(f"DiagnosticReport/{report['diagnostic_report_id']}")
    form = stored["presentedForm"][0]
    assert form["contentType"] == "application/pdf" and form["title"] == "Radiology report"
    assert base64.b64decode(form["data"]) == make_pdf_bytes(pages)
    services.existing(DicomService).close()


def test_report_from_a_dicom_pdf_is_listed_on_its_ris_order(
    fhir_peer: Any, orthanc: Any, clean_backend: Any, tmp_path: Any
) -> None:
    """With allow.ris_write on, the report is linked to the order of the PDF's accession number."""
    from SlicerMCPLib.ris.service import RisService

    mrn = "PDF" + uuid.uuid4().hex[:10].upper()
    pdf = make_pdf_instance(mrn, ["Stable lesion."])
    orthanc.upload([pdf])
    config = orthanc_config(
        orthanc,
        fhir_servers={"local": fhir_peer.server_config()},
        current_fhir="local",
        allow={"fhir_write": True, "ris_write": True},
        mini_ris={"sqlite_path": str(tmp_path / "ris.sqlite")},
    )
    services = Services(config=config, backend=clean_backend)
    ris = services.domain(RisService)
    order = ris.store.create_order("MRN1002", "CT-ABD-LESION", accession_number=str(pdf.AccessionNumber))
    _, report = _report_from_pdf(services, mrn, pdf)
    on_order = report["ris_order"]
    assert on_order["linked"] and on_order["order_id"] == order.id, on_order
    (link,) = on_order["stored_results"]
    assert (link["kind"], link["identifier"], link["status"], link["derived_from"]) == (
        "DiagnosticReport",
        f"DiagnosticReport/{report['diagnostic_report_id']}",
        "final",
        str(pdf.SOPInstanceUID),
    )
    assert fhir_peer.read(link["identifier"])["conclusion"] == "Stable lesion."
    services.existing(DicomService).close()
    ris.close()
