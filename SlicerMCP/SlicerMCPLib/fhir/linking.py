"""ImagingStudy <-> DICOM: find the ImagingStudy of a Study/Series Instance UID and back, and
build an ImagingStudy (series, endpoint) from a study record found in a PACS.

R4 keeps the Study Instance UID in `ImagingStudy.identifier` with system `urn:dicom:uid`
and value `urn:oid:<uid>`; series carry their own `uid`. The PACS is referenced through an
Endpoint resource (connection type dicom-wado-rs) whose address is the node's DICOMweb root.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from pydantic import BaseModel, Field

from ..core.domain_config import DicomNode
from ..core.errors import ErrorCode, InvalidParameter, SlicerMCPError
from ..dicom.validation import value_text
from . import resources
from .client import FhirClient
from .models import DCM_SYSTEM, DICOM_UID_SYSTEM, DicomStudyLink, ResourceResult, study_uid_of
from .search import dicom_uid, imaging_study_params, literal, reference, resource_id, search

ACCESSION_TYPE = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "ACSN"}]}
ENDPOINT_CONNECTION = {
    "system": "http://terminology.hl7.org/CodeSystem/endpoint-connection-type",
    "code": "dicom-wado-rs",
}
ENDPOINT_IDENTIFIER_SYSTEM = "urn:slicer-mcp:dicom-node"


class DicomSeriesRecord(BaseModel):
    series_instance_uid: str
    modality: str | None = None
    series_number: int | None = None
    series_description: str | None = None
    number_of_instances: int | None = Field(default=None, ge=0)
    body_part_examined: str | None = None


class DicomStudyRecord(BaseModel):
    """The study-level facts a PACS query returns (what a C-FIND / QIDO-RS study + series answer holds)."""

    study_instance_uid: str
    patient_id: str | None = Field(
        default=None, description="DICOM PatientID (the MRN), to find the FHIR Patient"
    )
    accession_number: str | None = None
    study_date: str | None = Field(default=None, description="YYYYMMDD or YYYY-MM-DD")
    study_time: str | None = Field(default=None, description="HHMMSS")
    study_description: str | None = None
    modalities: list[str] = Field(default_factory=list)
    series: list[DicomSeriesRecord] = Field(default_factory=list)


def _text_or_none(value: Any) -> str | None:
    """A C-FIND value as text, None when the PACS sent none."""
    return value_text(value) or None


def study_record_from_pacs(
    node: DicomNode, calling_aet: str, node_name: str, study_uid: str
) -> DicomStudyRecord:
    """Ask the PACS (C-FIND, study then series level) what it holds for one Study Instance UID."""
    from ..dicom.query import find  # the DICOM stack loads only when a PACS is asked

    uid = dicom_uid(study_uid, "study_instance_uid")
    study_keys = [
        "StudyInstanceUID",
        "PatientID",
        "AccessionNumber",
        "StudyDate",
        "StudyTime",
        "StudyDescription",
    ]
    studies = find(
        node,
        calling_aet,
        "study",
        [*study_keys, "ModalitiesInStudy"],
        {"StudyInstanceUID": uid},
        limit=1,
        node_name=node_name,
    ).records
    if not studies:
        raise SlicerMCPError(
            f"DICOM node {node_name!r} has no study {uid}; check the UID with the DICOM query tools",
            code=ErrorCode.DICOM_QUERY_FAILED,
            details={"node": node_name, "study_instance_uid": uid},
        )
    series_keys = [
        "SeriesInstanceUID",
        "Modality",
        "SeriesNumber",
        "SeriesDescription",
        "NumberOfSeriesRelatedInstances",
        "BodyPartExamined",
    ]
    series = find(
        node, calling_aet, "series", series_keys, {"StudyInstanceUID": uid}, limit=1000, node_name=node_name
    ).records
    found = studies[0]
    modalities = found.get("ModalitiesInStudy") or []
    return DicomStudyRecord(
        study_instance_uid=uid,
        patient_id=_text_or_none(found.get("PatientID")),
        accession_number=_text_or_none(found.get("AccessionNumber")),
        study_date=_text_or_none(found.get("StudyDate")),
        study_time=_text_or_none(found.get("StudyTime")),
        study_description=_text_or_none(found.get("StudyDescription")),
        modalities=[modalities] if isinstance(modalities, str) else list(modalities),
        series=[
            DicomSeriesRecord(
                series_instance_uid=str(s["SeriesInstanceUID"]),
                modality=_text_or_none(s.get("Modality")),
                series_number=s.get("SeriesNumber"),
                series_description=_text_or_none(s.get("SeriesDescription")),
                number_of_instances=s.get("NumberOfSeriesRelatedInstances"),
                body_part_examined=_text_or_none(s.get("BodyPartExamined")),
            )
            for s in sorted(series, key=lambda s: (s.get("SeriesNumber") is None, s.get("SeriesNumber") or 0))
            if s.get("SeriesInstanceUID")
        ],
    )


def _started(record: DicomStudyRecord) -> str | None:
    """DICOM date/time -> FHIR dateTime (date only when the time is unknown)."""
    if not record.study_date:
        return None
    raw = record.study_date.replace("-", "")
    try:
        day = datetime.strptime(raw, "%Y%m%d").date()
    except ValueError as exc:
        raise InvalidParameter(f"study_date {record.study_date!r} is not YYYYMMDD") from exc
    time = (record.study_time or "").split(".")[0]
    if len(time) >= 4 and time.isdigit():
        hh, mm, ss = time[0:2], time[2:4], time[4:6] or "00"
        return f"{day.isoformat()}T{hh}:{mm}:{ss}Z"
    return date.isoformat(day)


def imaging_study_resource(
    record: DicomStudyRecord,
    patient_ref: str,
    *,
    endpoint_ref: str | None = None,
    based_on: list[str] | None = None,
    status: str = "available",
) -> dict[str, Any]:
    """An R4 ImagingStudy describing `record` for the patient `patient_ref`."""
    uid = dicom_uid(record.study_instance_uid, "study_instance_uid")
    identifiers: list[dict[str, Any]] = [{"system": DICOM_UID_SYSTEM, "value": f"urn:oid:{uid}"}]
    if record.accession_number:
        identifiers.append({"type": ACCESSION_TYPE, "value": record.accession_number})
    modalities = list(dict.fromkeys([*record.modalities, *(s.modality for s in record.series if s.modality)]))
    series = []
    for s in record.series:
        entry: dict[str, Any] = {
            "uid": dicom_uid(s.series_instance_uid, "series_instance_uid"),
            "modality": {"system": DCM_SYSTEM, "code": s.modality or "OT"},
        }
        if s.series_number is not None:
            entry["number"] = s.series_number
        if s.series_description:
            entry["description"] = s.series_description
        if s.number_of_instances is not None:
            entry["numberOfInstances"] = s.number_of_instances
        if s.body_part_examined:
            entry["bodySite"] = {"display": s.body_part_examined}
        if endpoint_ref:
            entry["endpoint"] = [{"reference": endpoint_ref}]
        series.append(entry)
    study: dict[str, Any] = {
        "resourceType": "ImagingStudy",
        "status": status,
        "identifier": identifiers,
        "subject": {"reference": patient_ref},
        "modality": [{"system": DCM_SYSTEM, "code": m} for m in modalities],
        "numberOfSeries": len(series),
    }
    if series and all(s.number_of_instances is not None for s in record.series):
        study["numberOfInstances"] = sum(s.number_of_instances or 0 for s in record.series)
    if (started := _started(record)) is not None:
        study["started"] = started
    if record.study_description:
        study["description"] = record.study_description
    if based_on:
        study["basedOn"] = [{"reference": ref} for ref in based_on]
    if endpoint_ref:
        study["endpoint"] = [{"reference": endpoint_ref}]
    if series:
        study["series"] = series
    return study


def endpoint_resource(node_name: str, dicomweb_url: str) -> dict[str, Any]:
    """An Endpoint for a PACS's DICOMweb root (the address the pixels can be fetched from)."""
    return {
        "resourceType": "Endpoint",
        "status": "active",
        "identifier": [{"system": ENDPOINT_IDENTIFIER_SYSTEM, "value": node_name}],
        "name": f"DICOMweb of {node_name}",
        "connectionType": ENDPOINT_CONNECTION,
        "payloadType": [{"text": "DICOM"}],
        "payloadMimeType": ["application/dicom"],
        "address": dicomweb_url.rstrip("/"),
    }


def ensure_endpoint(client: FhirClient, node_name: str, dicomweb_url: str) -> str:
    """The reference of the Endpoint for `node_name`, created when the server has none yet."""
    result = resources.create(
        client,
        endpoint_resource(node_name, dicomweb_url),
        if_none_exist=f"identifier={ENDPOINT_IDENTIFIER_SYSTEM}|{node_name}",
    )
    return f"Endpoint/{result.id}"


def find_patient_by_identifier(client: FhirClient, identifier: str) -> str | None:
    """'Patient/<id>' of the one patient with this identifier value (matched literally), else None."""
    page = search(client, "Patient", [("identifier", literal(identifier))], limit=2)
    if len(page.resources) > 1:
        raise InvalidParameter(
            f"more than one FHIR Patient has identifier {identifier!r}; pass patient explicitly",
            details={"identifier": identifier},
        )
    return f"Patient/{page.resources[0]['id']}" if page.resources else None


def create_imaging_study(
    client: FhirClient,
    record: DicomStudyRecord,
    *,
    patient: str | None = None,
    endpoint: tuple[str, str] | None = None,
    based_on: list[str] | None = None,
) -> ResourceResult:
    """Create the ImagingStudy for `record` unless one with its Study Instance UID exists already
    (conditional create), linking the patient (given, or found by the DICOM PatientID) and the endpoint."""
    if patient:
        patient_ref = reference(patient, "Patient")
    elif record.patient_id:
        found = find_patient_by_identifier(client, record.patient_id)
        if found is None:
            raise SlicerMCPError(
                f"no FHIR Patient has identifier {record.patient_id!r} (the study's PatientID); "
                "pass patient (a FHIR Patient id) or create the patient first",
                code=ErrorCode.FHIR_HTTP_ERROR,
                details={"patient_id": record.patient_id},
            )
        patient_ref = found
    else:
        raise InvalidParameter("pass patient: the study record has no PatientID to find the FHIR Patient by")
    endpoint_ref = ensure_endpoint(client, *endpoint) if endpoint else None
    resource = imaging_study_resource(record, patient_ref, endpoint_ref=endpoint_ref, based_on=based_on)
    uid = dicom_uid(record.study_instance_uid, "study_instance_uid")
    return resources.create(client, resource, if_none_exist=f"identifier={DICOM_UID_SYSTEM}|urn:oid:{uid}")


def imaging_studies_for_uid(
    client: FhirClient,
    *,
    study_instance_uid: str | None = None,
    series_instance_uid: str | None = None,
    limit: int = 20,
) -> list[dict[str, Any]]:
    """ImagingStudy resources holding this study (by identifier) or this series (by series.uid)."""
    if not study_instance_uid and not series_instance_uid:
        raise InvalidParameter("pass study_instance_uid or series_instance_uid")
    params = imaging_study_params(
        study_instance_uid=study_instance_uid, series_instance_uid=series_instance_uid
    )
    return search(client, "ImagingStudy", params, limit).resources


def dicom_link(client: FhirClient, imaging_study_id: str) -> DicomStudyLink:
    """The DICOM UIDs (and Endpoint addresses) of one ImagingStudy, ready for the DICOM tools."""
    study = resources.read(client, "ImagingStudy", resource_id(imaging_study_id)).resource
    endpoint_refs = [e.get("reference") for e in study.get("endpoint") or [] if e.get("reference")]
    for s in study.get("series") or []:
        endpoint_refs += [e.get("reference") for e in s.get("endpoint") or [] if e.get("reference")]
    addresses = []
    for ref in dict.fromkeys(endpoint_refs):
        rtype, _, rid = str(ref).rpartition("/")
        if rtype.endswith("Endpoint") and rid:
            addresses.append(resources.read(client, "Endpoint", rid).resource.get("address", ""))
    uid = study_uid_of(study)
    return DicomStudyLink(
        imaging_study_id=str(study["id"]),
        study_instance_uid=uid,
        series_instance_uids=[s["uid"] for s in study.get("series") or [] if s.get("uid")],
        patient=(study.get("subject") or {}).get("reference"),
        endpoint_addresses=[a for a in addresses if a],
        hint=(
            f"load it with the DICOM tools, e.g. load_study(study_instance_uid={uid!r})"
            if uid
            else "this ImagingStudy has no urn:dicom:uid identifier, so its DICOM study is unknown"
        ),
    )
