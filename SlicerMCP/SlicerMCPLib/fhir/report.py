"""A radiology DiagnosticReport with one Observation per measurement, written in one transaction.

The report: status, category RAD, LOINC 18748-4 "Diagnostic imaging study", the ImagingStudy's
subject and order (basedOn), `imagingStudy`, the caller's conclusion, `result` pointing at the
Observations; optionally the PDF it came from (`presentedForm`). Each Observation: the same
status, category imaging, a SNOMED CT (or LOINC) code, a UCUM valueQuantity, the segment as
`bodySite` text and its SNOMED CT type, `derivedFrom` the ImagingStudy, and the SR tracking UID
as identifier. Every resource and the Bundle are validated against the R4 models before
anything is sent; the server's answer is read back resource by resource.
"""

from __future__ import annotations

import base64
import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, Field

from ..core.errors import ErrorCode, InvalidParameter, SlicerMCPError
from ..dicom.codes import CONCEPTS, DIAGNOSTIC_IMAGING_REPORT, UCUM_URI, UNITS, Code, segment_codes
from . import resources
from .client import FhirClient
from .linking import DICOM_UID_SYSTEM

ReportStatus = Literal["preliminary", "final", "amended"]
RAD = {"system": "http://terminology.hl7.org/CodeSystem/v2-0074", "code": "RAD", "display": "Radiology"}
IMAGING = {
    "system": "http://terminology.hl7.org/CodeSystem/observation-category",
    "code": "imaging",
    "display": "Imaging",
}


@dataclass
class ReportValue:
    """One measured value for an Observation."""

    label: str  # segment label or markup name
    quantity: str
    value: float
    unit: str
    terminology: str | None = None
    tracking_uid: str | None = None


class ReportResult(BaseModel):
    diagnostic_report_id: str
    status: ReportStatus
    subject: str
    imaging_study: str | None
    observation_ids: list[str]
    conclusion: str
    read_back: bool = Field(description="every resource read back from the server and matching what was sent")
    observations: list[dict[str, Any]] = Field(
        description="label, code, value, unit of each Observation as stored"
    )


def _uuid() -> str:
    return f"urn:uuid:{uuid.uuid4()}"


def _now() -> str:
    return dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()


def observation(
    value: ReportValue, status: str, subject: str, study_ref: str | None, when: str
) -> dict[str, Any]:
    concept = CONCEPTS.get(value.quantity)
    if concept is None or value.unit not in UNITS:
        raise InvalidParameter(
            f"cannot report {value.quantity} in {value.unit!r}: use one of {', '.join(CONCEPTS)} with a UCUM unit"
        )
    codings = [concept.name.fhir()]
    if concept.loinc is not None:
        codings.append(concept.loinc.fhir())
    text = f"{value.label} {value.quantity.replace('_', ' ')}"
    if concept.derivation is not None:
        text = f"{value.label} {concept.derivation.meaning.lower()} {concept.name.meaning.lower()}"
    resource: dict[str, Any] = {
        "resourceType": "Observation",
        "status": status,
        "category": [{"coding": [IMAGING]}],
        "code": {"coding": codings, "text": text},
        "subject": {"reference": subject},
        "effectiveDateTime": when,
        "valueQuantity": {
            "value": value.value,
            "unit": UNITS[value.unit],
            "system": UCUM_URI,
            "code": value.unit,
        },
    }
    if concept.derivation is not None:
        resource["method"] = {"coding": [concept.derivation.fhir()]}
    _, kind = segment_codes(value.label, value.terminology)
    resource["bodySite"] = {"coding": [kind.fhir()], "text": value.label}
    if study_ref:
        resource["derivedFrom"] = [{"reference": study_ref}]
    if value.tracking_uid:
        resource["identifier"] = [{"system": DICOM_UID_SYSTEM, "value": f"urn:oid:{value.tracking_uid}"}]
    return resource


def report_bundle(
    *,
    subject: str,
    imaging_study: dict[str, Any] | None,
    conclusion: str,
    status: ReportStatus,
    values: list[ReportValue],
    code: Code = DIAGNOSTIC_IMAGING_REPORT,
    sr_uid: str | None = None,
    pdf: tuple[bytes, str] | None = None,
) -> dict[str, Any]:
    """The transaction Bundle (DiagnosticReport + Observations), every resource validated."""
    when = _now()
    study_ref = f"ImagingStudy/{imaging_study['id']}" if imaging_study else None
    entries = []
    result_refs = []
    for value in values:
        full_url = _uuid()
        entries.append((full_url, observation(value, status, subject, study_ref, when)))
        result_refs.append({"reference": full_url})
    report: dict[str, Any] = {
        "resourceType": "DiagnosticReport",
        "status": status,
        "category": [{"coding": [RAD]}],
        "code": {"coding": [code.fhir()], "text": code.meaning},
        "subject": {"reference": subject},
        "effectiveDateTime": when,
        "issued": when,
        "conclusion": conclusion,
    }
    if imaging_study:
        report["imagingStudy"] = [{"reference": study_ref}]
        if imaging_study.get("basedOn"):
            report["basedOn"] = imaging_study["basedOn"]
    if result_refs:
        report["result"] = result_refs
    if sr_uid:
        report["identifier"] = [{"system": DICOM_UID_SYSTEM, "value": f"urn:oid:{sr_uid}"}]
    if pdf is not None:
        data, title = pdf
        report["presentedForm"] = [
            {
                "contentType": "application/pdf",
                "data": base64.b64encode(data).decode("ascii"),
                "title": title[:200],
            }
        ]
    entries.append((_uuid(), report))
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"fullUrl": url, "resource": res, "request": {"method": "POST", "url": res["resourceType"]}}
            for url, res in entries
        ],
    }
    for _, res in entries:
        resources.validate(res)
    resources.validate(bundle)
    return bundle


def _location_id(entry: dict[str, Any], rtype: str) -> str:
    location = str((entry.get("response") or {}).get("location") or "")
    parts = location.split("/_history")[0].rstrip("/").split("/")
    if len(parts) < 2 or parts[-2] != rtype:
        raise SlicerMCPError(
            f"the FHIR server's transaction answer has no {rtype} location; the report may be half written, "
            "check the server",
            code=ErrorCode.FHIR_HTTP_ERROR,
            details={"entry": entry.get("response")},
        )
    return parts[-1]


def send_report(client: FhirClient, bundle: dict[str, Any]) -> ReportResult:
    """POST the transaction, then read the report and each Observation back and compare."""
    answer = client.request("POST", "", json_body=bundle).body
    entries = answer.get("entry") or []
    if answer.get("type") != "transaction-response" or len(entries) != len(bundle["entry"]):
        raise SlicerMCPError(
            "the FHIR server did not answer the transaction with one response per entry",
            code=ErrorCode.FHIR_HTTP_ERROR,
            details={"type": answer.get("type"), "entries": len(entries)},
        )
    sent = [e["resource"] for e in bundle["entry"]]
    ids = [_location_id(e, s["resourceType"]) for e, s in zip(entries, sent, strict=True)]
    report_id, observation_ids = ids[-1], ids[:-1]
    report = resources.read(client, "DiagnosticReport", report_id).resource
    stored = [resources.read(client, "Observation", oid).resource for oid in observation_ids]
    results = {str(r.get("reference", "")) for r in report.get("result") or []}
    matches = (
        report.get("status") == sent[-1]["status"]
        and report.get("conclusion") == sent[-1]["conclusion"]
        and results == {f"Observation/{oid}" for oid in observation_ids}
        and all(
            o.get("valueQuantity", {}).get("value") == s["valueQuantity"]["value"]
            and o.get("valueQuantity", {}).get("code") == s["valueQuantity"]["code"]
            for o, s in zip(stored, sent, strict=False)
        )
    )
    if not matches:
        raise SlicerMCPError(
            f"DiagnosticReport/{report_id} read back differs from what was sent; check the FHIR server",
            code=ErrorCode.FHIR_HTTP_ERROR,
            details={"diagnostic_report_id": report_id},
        )
    return ReportResult(
        diagnostic_report_id=report_id,
        status=report["status"],
        subject=report["subject"]["reference"],
        imaging_study=((report.get("imagingStudy") or [{}])[0]).get("reference"),
        observation_ids=observation_ids,
        conclusion=report.get("conclusion", ""),
        read_back=True,
        observations=[
            {
                "id": o["id"],
                "label": (o.get("bodySite") or {}).get("text"),
                "code": o["code"]["coding"][0]["code"],
                "text": o["code"].get("text"),
                "value": o["valueQuantity"]["value"],
                "unit": o["valueQuantity"]["code"],
            }
            for o in stored
        ],
    )
