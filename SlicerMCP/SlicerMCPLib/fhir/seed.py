"""Deterministic synthetic patients and studies shared by the FHIR seed and the DICOM test data.

The same call always yields the same MRNs, accession numbers and UIDs (`2.25.<uuid5>`), so
DICOM test studies generated from `SEED_STUDIES` and the ImagingStudies written by
`slicer-mcp fhir seed` describe the same studies. Names are invented; no real person.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from typing import Any

from . import resources
from .client import FhirClient
from .linking import DicomSeriesRecord, DicomStudyRecord, create_imaging_study

log = logging.getLogger(__name__)

_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:slicer-mcp:seed")
MRN_SYSTEM = "urn:slicer-mcp:mrn"
ORDER_SYSTEM = "urn:slicer-mcp:placer-order"
REPORT_SYSTEM = "urn:slicer-mcp:report"
LOINC = "http://loinc.org"


def seed_uid(*parts: str | int) -> str:
    """A DICOM UID that depends only on `parts` (UUID-derived, root 2.25, at most 44 characters)."""
    key = "/".join(str(p) for p in parts)
    return f"2.25.{uuid.uuid5(_NAMESPACE, key).int}"


@dataclass(frozen=True)
class SeedPatient:
    mrn: str
    family: str
    given: str
    birth_date: str  # YYYY-MM-DD
    gender: str  # FHIR administrative gender


@dataclass(frozen=True)
class SeedSeries:
    number: int
    modality: str
    description: str
    instances: int
    body_part: str

    def uid(self, study_uid: str) -> str:
        return seed_uid(study_uid, "series", self.number)


@dataclass(frozen=True)
class SeedStudy:
    mrn: str
    index: int  # 1, 2... per patient
    accession: str
    date: str  # YYYYMMDD (DICOM StudyDate)
    time: str  # HHMMSS
    description: str
    procedure_loinc: str
    series: tuple[SeedSeries, ...]
    conclusion: str

    @property
    def uid(self) -> str:
        return seed_uid("study", self.mrn, self.index)

    @property
    def day(self) -> str:
        """The study date as a FHIR date (YYYY-MM-DD)."""
        return f"{self.date[:4]}-{self.date[4:6]}-{self.date[6:]}"

    def record(self) -> DicomStudyRecord:
        """The study as a PACS query would report it."""
        return DicomStudyRecord(
            study_instance_uid=self.uid,
            patient_id=self.mrn,
            accession_number=self.accession,
            study_date=self.date,
            study_time=self.time,
            study_description=self.description,
            series=[
                DicomSeriesRecord(
                    series_instance_uid=s.uid(self.uid),
                    modality=s.modality,
                    series_number=s.number,
                    series_description=s.description,
                    number_of_instances=s.instances,
                    body_part_examined=s.body_part,
                )
                for s in self.series
            ],
        )


SEED_PATIENTS: tuple[SeedPatient, ...] = (
    SeedPatient("SMCP-0001", "Testwood", "Ada", "1958-03-14", "female"),
    SeedPatient("SMCP-0002", "Samplefield", "Boris", "1962-11-02", "male"),
    SeedPatient("SMCP-0003", "Demoford", "Chiara", "1975-06-30", "female"),
    SeedPatient("SMCP-0004", "Mockridge", "Dmitri", "1983-01-21", "male"),
    SeedPatient("SMCP-0005", "Fakeley", "Eun", "1990-09-09", "other"),
)

_CT_CHEST = (SeedSeries(1, "CT", "Axial 5mm", 8, "CHEST"), SeedSeries(2, "CT", "Axial 1mm lung", 12, "CHEST"))
_MR_HEAD = (SeedSeries(1, "MR", "T1 sagittal", 6, "HEAD"), SeedSeries(2, "MR", "T2 axial", 6, "HEAD"))
_CT_ABDOMEN = (SeedSeries(1, "CT", "Portal venous", 10, "ABDOMEN"),)
_CR_CHEST = (SeedSeries(1, "CR", "PA", 1, "CHEST"),)

SEED_STUDIES: tuple[SeedStudy, ...] = (
    SeedStudy(
        "SMCP-0001",
        1,
        "ACC-0001",
        "20240115",
        "093000",
        "CT Chest",
        "24627-2",
        _CT_CHEST,
        "No acute findings.",
    ),
    SeedStudy(
        "SMCP-0001",
        2,
        "ACC-0002",
        "20250220",
        "101500",
        "CT Chest follow-up",
        "24627-2",
        _CT_CHEST,
        "Stable.",
    ),
    SeedStudy(
        "SMCP-0002", 1, "ACC-0003", "20240311", "140000", "MR Head", "24590-2", _MR_HEAD, "Normal brain MRI."
    ),
    SeedStudy(
        "SMCP-0003", 1, "ACC-0004", "20240402", "080000", "CT Abdomen", "24558-9", _CT_ABDOMEN, "No mass."
    ),
    SeedStudy(
        "SMCP-0004", 1, "ACC-0005", "20240518", "113000", "Chest X-ray", "36643-5", _CR_CHEST, "Clear lungs."
    ),
    SeedStudy(
        "SMCP-0005", 1, "ACC-0006", "20240623", "153000", "MR Head", "24590-2", _MR_HEAD, "Small cyst."
    ),
)


def patient_resource(p: SeedPatient) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "identifier": [{"use": "usual", "system": MRN_SYSTEM, "value": p.mrn}],
        "name": [{"use": "official", "family": p.family, "given": [p.given]}],
        "gender": p.gender,
        "birthDate": p.birth_date,
        "active": True,
    }


def _procedure(study: SeedStudy) -> dict[str, Any]:
    return {"coding": [{"system": LOINC, "code": study.procedure_loinc, "display": study.description}]}


def service_request_resource(study: SeedStudy, patient_ref: str) -> dict[str, Any]:
    return {
        "resourceType": "ServiceRequest",
        "identifier": [{"system": ORDER_SYSTEM, "value": study.accession}],
        "status": "completed",
        "intent": "order",
        "category": [
            {"coding": [{"system": "http://snomed.info/sct", "code": "363679005", "display": "Imaging"}]}
        ],
        "code": _procedure(study),
        "subject": {"reference": patient_ref},
        "authoredOn": study.day,
    }


def diagnostic_report_resource(
    study: SeedStudy, patient_ref: str, order_ref: str, imaging_study_ref: str
) -> dict[str, Any]:
    return {
        "resourceType": "DiagnosticReport",
        "identifier": [{"system": REPORT_SYSTEM, "value": study.accession}],
        "basedOn": [{"reference": order_ref}],
        "status": "final",
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/v2-0074",
                        "code": "RAD",
                        "display": "Radiology",
                    }
                ]
            }
        ],
        "code": _procedure(study),
        "subject": {"reference": patient_ref},
        "effectiveDateTime": study.day,
        "imagingStudy": [{"reference": imaging_study_ref}],
        "conclusion": study.conclusion,
    }


@dataclass
class SeedReport:
    patients: dict[str, str] = field(default_factory=dict)  # MRN -> Patient/<id>
    imaging_studies: dict[str, str] = field(default_factory=dict)  # Study UID -> ImagingStudy/<id>
    service_requests: int = 0
    diagnostic_reports: int = 0


def seed(client: FhirClient, endpoint: tuple[str, str] | None = None) -> SeedReport:
    """Write the synthetic data set; conditional creates make a second run change nothing.

    `endpoint` (node name, DICOMweb root) links the ImagingStudies to the PACS holding them.
    """
    report = SeedReport()
    for p in SEED_PATIENTS:
        result = resources.create(
            client, patient_resource(p), if_none_exist=f"identifier={MRN_SYSTEM}|{p.mrn}"
        )
        report.patients[p.mrn] = f"Patient/{result.id}"
    for study in SEED_STUDIES:
        patient_ref = report.patients[study.mrn]
        order = resources.create(
            client,
            service_request_resource(study, patient_ref),
            if_none_exist=f"identifier={ORDER_SYSTEM}|{study.accession}",
        )
        order_ref = f"ServiceRequest/{order.id}"
        report.service_requests += 1
        imaging = create_imaging_study(
            client, study.record(), patient=patient_ref, endpoint=endpoint, based_on=[order_ref]
        )
        report.imaging_studies[study.uid] = f"ImagingStudy/{imaging.id}"
        resources.create(
            client,
            diagnostic_report_resource(study, patient_ref, order_ref, f"ImagingStudy/{imaging.id}"),
            if_none_exist=f"identifier={REPORT_SYSTEM}|{study.accession}",
        )
        report.diagnostic_reports += 1
    log.info(
        "FHIR seed on %s: %d patients, %d imaging studies",
        client.name,
        len(report.patients),
        len(SEED_STUDIES),
    )
    return report
