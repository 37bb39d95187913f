"""The whole chain with real peers: a FHIR patient, a CT in Orthanc, the ImagingStudy made from a
C-FIND of the PACS, then "load the last CT of this patient" into the headless scene and back
from the loaded series to the ImagingStudy, all through one MCP client session."""

from __future__ import annotations

import uuid

from pydicom.uid import generate_uid

from fixtures.fhir import call
from fixtures.orthanc import make_ct_series, orthanc_config
from SlicerMCPLib.core.services import Services
from SlicerMCPLib.dicom.service import DicomService


def test_fhir_patient_to_loaded_ct_and_back(fhir_peer, orthanc, clean_backend) -> None:
    mrn = "E2E" + uuid.uuid4().hex[:10].upper()
    study_uid = generate_uid()
    spec, datasets = make_ct_series(mrn, study_uid=study_uid, slices=6, shuffle=False)
    orthanc.upload(datasets)
    config = orthanc_config(
        orthanc,
        fhir_servers={"local": fhir_peer.server_config()},
        current_fhir="local",
        allow={"fhir_write": True},
    )
    services = Services(config=config, backend=clean_backend)
    patient = {
        "resourceType": "Patient",
        "identifier": [{"system": "urn:test:mrn", "value": mrn}],
        "name": [{"family": "Chain", "given": ["Eve"]}],
    }
    try:
        results = call(
            services,
            ("fhir_create_resource", {"resource": patient}),
            # PatientID in the PACS == identifier in FHIR: the tool finds the patient itself
            ("fhir_create_imaging_study_from_pacs", {"study_instance_uid": study_uid, "node": "orthanc"}),
            ("fhir_search_patient", {"identifier": f"urn:test:mrn|{mrn}"}),
        )
        for is_error, body in results:
            assert not is_error, body
        created_patient, imaging, found = (body for _, body in results)
        study = imaging["resource"]
        assert study["subject"]["reference"] == f"Patient/{created_patient['id']}"
        assert [s["uid"] for s in study["series"]] == [spec.series_uid]
        assert study["series"][0]["numberOfInstances"] == 6 and study["modality"][0]["code"] == "CT"
        assert study["started"] == "2024-03-01T10:00:00Z"

        pid = found["patients"][0]["id"]
        (_, studies), (_, loaded) = call(
            services,
            ("fhir_search_imaging_study", {"patient": pid, "modality": "CT"}),
            ("load_study", {"study_instance_uid": study_uid}),
        )
        assert studies["imaging_studies"][0]["study_instance_uid"] == study_uid, studies
        assert "error" not in loaded and len(loaded["loaded"]) == 1, loaded

        # back: the loaded volume carries its DICOM UIDs, which lead to the ImagingStudy
        ((_, nodes),) = call(services, ("list_scene_nodes", {"class_name": "vtkMRMLScalarVolumeNode"}))
        assert nodes["total"] == 1 and nodes["nodes"][0]["volume"]["dimensions"] == [
            spec.columns,
            spec.rows,
            6,
        ]
        ((_, node),) = call(services, ("get_node", {"node_id": nodes["nodes"][0]["id"]}))
        series_uid = node["attributes"]["DICOM.SeriesInstanceUID"]
        assert series_uid == spec.series_uid
        ((_, back),) = call(services, ("fhir_imaging_study_for_series", {"series_instance_uid": series_uid}))
        assert [s["id"] for s in back["imaging_studies"]] == [imaging["id"]]
        assert back["imaging_studies"][0]["patient"] == f"Patient/{pid}"
    finally:
        dicom = services.existing(DicomService)
        if dicom is not None:
            dicom.close()
