"""Typed results of the DICOM tools (structured output for the MCP client)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from ..core.models import NodeSummary

QueryLevel = Literal["patient", "study", "series", "instance"]
AttributePreset = Literal["minimal", "standard", "extended"]


class DicomNodeInfo(BaseModel):
    name: str
    description: str
    ae_title: str
    host: str
    port: int
    dicomweb_url: str | None = None
    retrieve_method: str = Field(description="the method retrieve_* and load_* use for this node")
    current: bool


class DicomNodeList(BaseModel):
    current_node: str | None
    calling_aet: str
    nodes: list[DicomNodeInfo]


class SwitchResult(BaseModel):
    success: bool
    current_node: str
    message: str


class EchoResult(BaseModel):
    node: str
    ae_title: str
    host: str
    port: int
    calling_aet: str
    success: bool
    status: str = Field(description="DIMSE status code and category")
    association_ms: float = Field(description="time to open the association")
    echo_ms: float = Field(description="C-ECHO round-trip time")
    accepted_contexts: list[dict[str, str]]


class QueryResult(BaseModel):
    level: QueryLevel
    node: str
    records: list[dict[str, Any]] = Field(description="one mapping keyword -> value per match")
    count: int = Field(description="records returned")
    pending_responses: int = Field(description="C-FIND pending responses received (matches seen)")
    limit: int
    has_more: bool = Field(description="the node had more matches than the limit; narrow the filters")
    attributes: list[str] = Field(description="the attributes requested")


class AttributePresets(BaseModel):
    presets: dict[str, dict[str, list[str]]] = Field(description="level -> preset -> DICOM keywords")


class PdfPage(BaseModel):
    page: int
    text: str


class PdfText(BaseModel):
    sop_instance_uid: str
    document_title: str | None = None
    page_count: int
    pages: list[PdfPage]
    text: str = Field(description="all pages joined by form feeds")


class MoveResult(BaseModel):
    success: bool
    level: Literal["study", "series"]
    destination: str = Field(description="destination AE title")
    completed: int
    failed: int
    warning: int
    status: str
    message: str


class RetrieveResult(BaseModel):
    method: Literal["dicomweb", "c-get", "c-move"]
    level: Literal["study", "series"]
    study_instance_uid: str
    series_instance_uids: list[str]
    directory: str = Field(description="folder holding the retrieved instances as <SOPInstanceUID>.dcm")
    instances: int
    bytes: int
    seconds: float


class LoadedSeries(BaseModel):
    series_instance_uid: str
    node: NodeSummary
    slices: int
    warnings: list[str] = Field(default_factory=list)


class SkippedSeries(BaseModel):
    series_instance_uid: str
    reason: str


class LoadResult(BaseModel):
    method: Literal["dicomweb", "c-get", "c-move"]
    study_instance_uid: str
    loaded: list[LoadedSeries]
    skipped: list[SkippedSeries] = Field(default_factory=list, description="series that are not volumes")
    retrieve_seconds: float
    load_seconds: float


class SendFailure(BaseModel):
    sop_instance_uid: str
    status: str


class SendResult(BaseModel):
    success: bool
    destination: str
    sent: int
    warning: int
    failed: int
    failures: list[SendFailure] = Field(default_factory=list)
    series_instance_uid: str | None = Field(
        default=None, description="the new series, when a volume was sent"
    )
    study_instance_uid: str | None = None
