"""FHIR reports of results: a DiagnosticReport with Observations from measurements or an exported SR,
and a DiagnosticReport from a DICOM encapsulated PDF report (dicom-mcp's "Reporting").

Both write one transaction Bundle behind allow.fhir_write, validated before sending, and read
the stored resources back (fhir/report.py).
"""

from __future__ import annotations

import io
from typing import Annotated, Any

import pydicom
from mcp.server.mcpserver import Context, MCPServer
from pydantic import BaseModel, Field

from ..core.errors import InvalidParameter
from ..core.progress import Progress
from ..core.services import services_of
from ..dicom.move import Target
from ..dicom.pdf import pdf_text
from ..dicom.service import DicomService
from ..dicom.validation import check_uid, check_vr
from ..fhir import linking, resources
from ..fhir.models import accession_of
from ..fhir.report import ReportResult, ReportStatus, ReportValue, report_bundle, send_report
from ..fhir.service import FhirService
from ..ris.models import ResultLink
from .annotations import ADDS_FROM_REMOTE
from .confirm import asks_person
from .fhir import fhir_server_text
from .order_links import RisOrderUpdate, link_to_orders
from .results import Quantity, Unit, results_registry
from .running import DomainRunner

_run = DomainRunner(FhirService, within=FhirService.within_call)  # a total deadline per call
_run_dicom = DomainRunner(DicomService)


class ReportMeasurement(BaseModel):
    label: str = Field(
        min_length=1, max_length=64, description="what was measured, e.g. the segment 'Lesion'"
    )
    quantity: Quantity
    value: float
    unit: Unit


def _imaging_study(
    fhir: FhirService, imaging_study_id: str | None, study_uid: str | None
) -> dict[str, Any] | None:
    if imaging_study_id:
        return resources.read(fhir.client(), "ImagingStudy", imaging_study_id).resource
    if not study_uid:
        return None
    found = linking.imaging_studies_for_uid(fhir.client(), study_instance_uid=study_uid, limit=2)
    return found[0] if found else None


def _subject(
    fhir: FhirService, study: dict[str, Any] | None, patient: str | None, patient_id: str | None
) -> str:
    if patient:
        return f"Patient/{patient.removeprefix('Patient/')}"
    if study and (study.get("subject") or {}).get("reference"):
        return str(study["subject"]["reference"])
    found = linking.find_patient_by_identifier(fhir.client(), patient_id) if patient_id else None
    if found is None:
        raise InvalidParameter(
            "no subject for the report: pass patient (a FHIR Patient id) or an imaging study whose subject is set",
            details={"patient_id": patient_id},
        )
    return found


class ReportWritten(ReportResult):
    ris_order: RisOrderUpdate | None = Field(
        None,
        description="the mini-RIS order that now lists the report, or why not (None: no accession known)",
    )


def _accession(*candidates: str | None) -> str | None:
    return next((text.strip() for text in candidates if text and text.strip()), None)


async def _show_on_order(
    ctx: Context, written: ReportResult, accession: str | None, location: str, derived_from: str | None
) -> ReportWritten:
    """The report linked to the RIS order of `accession` (ris_order says how that went)."""
    if not accession:
        return ReportWritten(**written.model_dump())
    link = ResultLink(
        kind="DiagnosticReport",
        identifier=f"DiagnosticReport/{written.diagnostic_report_id}",
        location=location,
        status=written.status,
        conclusion=written.conclusion,
        derived_from=derived_from,
    )
    updates = await link_to_orders(ctx, {accession: [link]})
    return ReportWritten(**written.model_dump(), ris_order=updates[0])


AccessionParam = Annotated[
    str | None,
    Field(
        max_length=16,
        description="the mini-RIS order to show the report on (default: the SR's, PDF's or ImagingStudy's accession)",
    ),
]


ReportPerson = asks_person(
    "fhir_write",
    lambda services, conclusion, imaging_study_id, study_instance_uid, sr_sop_instance_uid, measurements, status: (
        f"Write a {status} DiagnosticReport on {fhir_server_text(services)} about "
        f"{'ImagingStudy/' + imaging_study_id if imaging_study_id else 'DICOM study ' + str(study_instance_uid)}"
        f"{', with the values of SR ' + sr_sop_instance_uid if sr_sop_instance_uid else ''}"
        f"{', ' + str(len(measurements)) + ' measurement(s)' if measurements else ''}"
        f", conclusion:\n{conclusion}"
    ),
)
PdfReportPerson = asks_person(
    "fhir_write",
    lambda services, sop_instance_uid, status: (
        f"Write a {status} DiagnosticReport on {fhir_server_text(services)} from the DICOM PDF {sop_instance_uid}"
        " (the PDF attached)"
    ),
)


async def fhir_create_report(
    ctx: Context,
    conclusion: Annotated[
        str, Field(min_length=1, max_length=4000, description="the report's conclusion text")
    ],
    imaging_study_id: Annotated[
        str | None, Field(description="FHIR ImagingStudy id the report is about")
    ] = None,
    study_instance_uid: Annotated[
        str | None,
        Field(
            description="or the DICOM study: its ImagingStudy is looked up (fhir_imaging_study_for_series)"
        ),
    ] = None,
    sr_sop_instance_uid: Annotated[
        str | None, Field(description="an SR from export_dicom_sr: each of its values becomes an Observation")
    ] = None,
    measurements: Annotated[
        list[ReportMeasurement] | None, Field(description="values to report besides the SR's")
    ] = None,
    status: Annotated[
        ReportStatus, Field(description="preliminary until a radiologist signs it")
    ] = "preliminary",
    patient: Annotated[
        str | None, Field(description="FHIR Patient id (default: the ImagingStudy's subject)")
    ] = None,
    accession_number: AccessionParam = None,
    person: ReportPerson = None,
) -> ReportWritten:
    """Write a radiology DiagnosticReport to the FHIR server in one transaction: status, LOINC code,
    subject, imagingStudy, your conclusion, and one Observation per measurement (SNOMED CT code, UCUM
    valueQuantity, derivedFrom the ImagingStudy). Everything is validated before sending and read back,
    then the report is linked to the mini-RIS order of its accession number (when allow.ris_write is
    on; ris_order says). Off unless allow.fhir_write is true."""
    services = services_of(ctx)
    services.require_allowed("fhir_write", "Writing a report to the FHIR server", person)
    if accession_number is not None:
        accession_number = check_vr(accession_number, "SH", "accession_number", required=False)
    values: list[ReportValue] = []
    sr_uid = sr_accession = None
    if sr_sop_instance_uid:
        sr = results_registry(services).get(sr_sop_instance_uid, "SR")
        sr_uid = sr_sop_instance_uid
        sr_accession = str(sr.dataset.get("AccessionNumber", "") or "")
        study_instance_uid = study_instance_uid or str(sr.dataset.StudyInstanceUID)
        for f in sr.findings:
            values += [
                ReportValue(f.label, v.quantity, v.value, v.unit, f.terminology, f.tracking_uid)
                for v in f.values
            ]
        values += [ReportValue(name, v.quantity, v.value, v.unit) for name, v in sr.markups]
    values += [ReportValue(m.label, m.quantity, m.value, m.unit) for m in measurements or []]

    def work(fhir: FhirService, _: Progress) -> tuple[ReportResult, str | None, str]:
        study = _imaging_study(fhir, imaging_study_id, study_instance_uid)
        subject = _subject(fhir, study, patient, None)
        bundle = report_bundle(
            subject=subject,
            imaging_study=study,
            conclusion=conclusion,
            status=status,
            values=values,
            sr_uid=sr_uid,
        )
        return send_report(fhir.client(), bundle), accession_of(study) if study else None, fhir.server()[0]

    written, study_accession, server = await _run(ctx, work)
    return await _show_on_order(
        ctx, written, _accession(accession_number, sr_accession, study_accession), server, sr_uid
    )


def _document(ds: pydicom.Dataset) -> bytes:
    """The PDF without the even-length padding byte (Encapsulated Document Length when given)."""
    data = bytes(ds.EncapsulatedDocument)
    length = ds.get("EncapsulatedDocumentLength")
    if length:
        return data[: int(length)]
    return data[:-1] if data.endswith(b"\0") else data


async def fhir_report_from_dicom_pdf(
    ctx: Context,
    study_instance_uid: Annotated[str, Field(min_length=1, max_length=64, description="the PDF's study")],
    series_instance_uid: Annotated[str, Field(min_length=1, max_length=64, description="the PDF's series")],
    sop_instance_uid: Annotated[str, Field(min_length=1, max_length=64, description="the PDF instance")],
    conclusion: Annotated[
        str | None, Field(max_length=4000, description="default: the PDF's first paragraph")
    ] = None,
    status: Annotated[
        ReportStatus, Field(description="the report's status (a signed PDF is final)")
    ] = "final",
    patient: Annotated[
        str | None, Field(description="FHIR Patient id (default: found by the PDF's PatientID)")
    ] = None,
    accession_number: AccessionParam = None,
    person: PdfReportPerson = None,
) -> ReportWritten:
    """Turn a DICOM encapsulated PDF report in the PACS into a FHIR DiagnosticReport: the PDF attached
    (presentedForm), its text's first paragraph as conclusion unless you give one, linked to the study's
    ImagingStudy and patient, and linked to the mini-RIS order of its accession number (when
    allow.ris_write is on; ris_order says). Off unless allow.fhir_write is true."""
    services = services_of(ctx)
    services.require_allowed("fhir_write", "Writing a report to the FHIR server", person)
    if accession_number is not None:
        accession_number = check_vr(accession_number, "SH", "accession_number", required=False)
    target = Target(
        check_uid(study_instance_uid, "study_instance_uid"),
        check_uid(series_instance_uid, "series_instance_uid"),
        check_uid(sop_instance_uid, "sop_instance_uid"),
    )

    def fetch(dicom: DicomService, _: Progress) -> tuple[pydicom.Dataset, str]:
        data = next(iter(dicom.fetch_instances(target).values()))
        raw = data if isinstance(data, bytes) else open(data, "rb").read()  # noqa: SIM115
        text = pdf_text(raw).text
        return pydicom.dcmread(io.BytesIO(raw)), text

    ds, text = await _run_dicom(ctx, fetch)
    paragraphs = [p.strip() for p in text.replace("\f", "\n\n").split("\n\n") if p.strip()]
    summary = conclusion or (paragraphs[0][:4000] if paragraphs else "")
    if not summary:
        raise InvalidParameter("the PDF has no text to take a conclusion from; pass conclusion")
    title = str(ds.get("DocumentTitle", "") or "Report")

    def work(fhir: FhirService, _: Progress) -> tuple[ReportResult, str | None, str]:
        study = _imaging_study(fhir, None, study_instance_uid)
        subject = _subject(fhir, study, patient, str(ds.get("PatientID", "")) or None)
        bundle = report_bundle(
            subject=subject,
            imaging_study=study,
            conclusion=summary,
            status=status,
            values=[],
            pdf=(_document(ds), title),
        )
        return send_report(fhir.client(), bundle), accession_of(study) if study else None, fhir.server()[0]

    written, study_accession, server = await _run(ctx, work)
    pdf_accession = str(ds.get("AccessionNumber", "") or "")
    return await _show_on_order(
        ctx, written, _accession(accession_number, pdf_accession, study_accession), server, sop_instance_uid
    )


def register(server: MCPServer) -> None:
    server.add_tool(fhir_create_report, title="Create FHIR DiagnosticReport", annotations=ADDS_FROM_REMOTE)
    server.add_tool(
        fhir_report_from_dicom_pdf, title="DiagnosticReport from DICOM PDF", annotations=ADDS_FROM_REMOTE
    )
