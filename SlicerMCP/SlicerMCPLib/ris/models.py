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
