"""What the RIS store returns: typed records, also the structured output of the RIS tools."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

OrderStatus = Literal["ORDERED", "SCHEDULED", "IN_PROGRESS", "COMPLETED", "DISCONTINUED", "CANCELLED"]
MwlStatus = Literal["SCHEDULED", "IN_PROGRESS", "COMPLETED", "DISCONTINUED", "CANCELLED"]
MppsStatus = Literal["IN PROGRESS", "COMPLETED", "DISCONTINUED"]
Priority = Literal["STAT", "HIGH", "ROUTINE", "MEDIUM", "LOW"]


class Patient(BaseModel):
    id: int
    mrn: str
    family_name: str
    given_name: str
    birth_date: str | None = Field(None, description="YYYYMMDD")
    sex: str | None = None

    @property
    def dicom_name(self) -> str:
        return f"{self.family_name}^{self.given_name}"


class Procedure(BaseModel):
    code: str
    description: str
    modality: str
    body_part: str
    views: list[str]
    image_count: int


LinkKind = Literal["SEG", "SR", "DiagnosticReport"]


class ResultLink(BaseModel):
    """A result an order produced outside the RIS: a SEG or SR in a PACS, a DiagnosticReport in FHIR."""

    kind: LinkKind
    identifier: str = Field(description="SOP Instance UID (SEG, SR) or FHIR reference DiagnosticReport/<id>")
    study_instance_uid: str | None = None
    series_instance_uid: str | None = None
    location: str | None = Field(None, description="the PACS node or FHIR server it was stored on")
    status: str | None = Field(None, description="a DiagnosticReport's status (preliminary, final...)")
    conclusion: str | None = Field(None, description="a DiagnosticReport's conclusion")
    derived_from: str | None = Field(
        None, description="a DiagnosticReport's source: the SR (or DICOM PDF) SOP Instance UID"
    )


class OrderLink(ResultLink):
    """A result as the order lists it: when the RIS linked it."""

    recorded_at: str = Field(description="when the RIS first linked it (UTC, ISO 8601)")


class Order(BaseModel):
    id: int
    accession_number: str
    status: OrderStatus
    priority: Priority
    reason: str | None = None
    ordered_at: str
    requested_procedure_id: str
    patient: Patient
    procedure: Procedure
    referring_physician: str | None = Field(None, description="DICOM PN, Family^Given")
    stored_results: list[OrderLink] = Field(
        default_factory=list,
        description="SEG/SR stored in the PACS and DiagnosticReports written to FHIR for this order, oldest first",
    )


class MwlEntry(BaseModel):
    """One scheduled procedure step on the worklist, with the order it came from."""

    mwl_id: int
    status: MwlStatus
    accession_number: str
    study_instance_uid: str
    requested_procedure_id: str
    priority: Priority = "ROUTINE"
    scheduled_procedure_step_id: str
    scheduled_station_aet: str
    scheduled_station_name: str | None = None
    modality: str
    scheduled_date: str = Field(description="YYYYMMDD")
    scheduled_time: str = Field(description="HHMMSS")
    performing_physician: str | None = None
    order_id: int
    patient: Patient
    procedure: Procedure
    referring_physician: str | None = None


class MppsRecord(BaseModel):
    sop_instance_uid: str
    status: MppsStatus
    mwl_id: int | None = None
    station_aet: str | None = None
    modality: str | None = None
    study_instance_uid: str | None = None
    start: str | None = Field(None, description="YYYYMMDD HHMMSS")
    end: str | None = None
    series: list[dict] = Field(
        default_factory=list, description="performed series: uid, description, instances"
    )
    history: list[dict] = Field(default_factory=list, description="status changes, oldest first")
