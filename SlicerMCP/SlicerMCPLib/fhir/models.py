"""Result models of the FHIR tools and the summaries made from raw FHIR JSON."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

DICOM_UID_SYSTEM = "urn:dicom:uid"
DCM_SYSTEM = "http://dicom.nema.org/resources/ontology/DCM"


class FhirServerInfo(BaseModel):
    name: str
    url: str
    description: str = ""
    auth: str = Field(description="bearer, api-key or none (the secret itself is never shown)")
    current: bool


class FhirServerList(BaseModel):
    current: str | None
    servers: list[FhirServerInfo]


class FhirSwitchResult(BaseModel):
    previous: str | None
    current: str
    url: str


class FhirCapability(BaseModel):
    server: str
    url: str
    fhir_version: str | None
    software_name: str | None = None
    software_version: str | None = None
    implementation: str | None = None
    resources: list[str] = Field(description="resource types the server lists in its CapabilityStatement")
    response_ms: float


class PatientSummary(BaseModel):
    id: str
    version_id: str | None = None
    identifiers: list[str] = Field(
        default_factory=list, description="'system|value' of each identifier (MRN...)"
    )
    name: str | None = None
    family: str | None = None
    given: list[str] = Field(default_factory=list)
    birth_date: str | None = None
    gender: str | None = None


class SeriesSummary(BaseModel):
    uid: str | None
    number: int | None = None
    modality: str | None = None
    description: str | None = None
    number_of_instances: int | None = None
    body_site: str | None = None


class ImagingStudySummary(BaseModel):
    id: str
    version_id: str | None = None
    status: str | None = None
    study_instance_uid: str | None = Field(
        description="DICOM Study Instance UID (identifier system urn:dicom:uid)"
    )
    accession_number: str | None = None
    patient: str | None = Field(default=None, description="subject reference, e.g. Patient/123")
    started: str | None = None
    modalities: list[str] = Field(default_factory=list)
    description: str | None = None
    number_of_series: int | None = None
    number_of_instances: int | None = None
    endpoints: list[str] = Field(
        default_factory=list, description="Endpoint references (where to retrieve it)"
    )
    series: list[SeriesSummary] = Field(default_factory=list)


class PatientSearchResult(BaseModel):
    total: int | None = Field(description="matches the server counted (may be absent)")
    returned: int
    has_more: bool = Field(
        description="more matches exist beyond `limit`; search again with a narrower query"
    )
    pages_read: int
    patients: list[PatientSummary]


class ImagingStudySearchResult(BaseModel):
    total: int | None
    returned: int
    has_more: bool
    pages_read: int
    imaging_studies: list[ImagingStudySummary]


class ResourceResult(BaseModel):
    resource_type: str
    id: str
    version_id: str | None = Field(
        description="pass this to fhir_update_resource so concurrent changes are detected"
    )
    last_updated: str | None = None
    resource: dict[str, Any]


class DicomStudyLink(BaseModel):
    """Where the pixels of an ImagingStudy are: the UIDs to hand to the DICOM tools."""

    imaging_study_id: str
    study_instance_uid: str | None
    series_instance_uids: list[str]
    patient: str | None
    endpoint_addresses: list[str] = Field(default_factory=list)
    hint: str


def _text_of_name(name: dict[str, Any]) -> str:
    if name.get("text"):
        return str(name["text"])
    return " ".join([*name.get("given", []), name.get("family", "")]).strip()


def _identifier_strings(resource: dict[str, Any]) -> list[str]:
    out = []
    for ident in resource.get("identifier") or []:
        system, value = ident.get("system"), ident.get("value")
        if value:
            out.append(f"{system}|{value}" if system else str(value))
    return out


def patient_summary(resource: dict[str, Any]) -> PatientSummary:
    names = resource.get("name") or []
    official = next((n for n in names if n.get("use") == "official"), names[0] if names else {})
    return PatientSummary(
        id=str(resource.get("id")),
        version_id=(resource.get("meta") or {}).get("versionId"),
        identifiers=_identifier_strings(resource),
        name=_text_of_name(official) or None,
        family=official.get("family"),
        given=list(official.get("given") or []),
        birth_date=resource.get("birthDate"),
        gender=resource.get("gender"),
    )


def study_uid_of(resource: dict[str, Any]) -> str | None:
    """The Study Instance UID of an R4 ImagingStudy (identifier urn:dicom:uid, value urn:oid:<uid>)."""
    for ident in resource.get("identifier") or []:
        if ident.get("system") == DICOM_UID_SYSTEM and ident.get("value"):
            return str(ident["value"]).removeprefix("urn:oid:")
    return None


def accession_of(resource: dict[str, Any]) -> str | None:
    """The accession number of an ImagingStudy (the identifier typed ACSN), if it has one."""
    for ident in resource.get("identifier") or []:
        codings = (ident.get("type") or {}).get("coding") or []
        if any(c.get("code") == "ACSN" for c in codings):
            return ident.get("value")
    return None


def _code(concept: dict[str, Any] | None) -> str | None:
    """A Coding's code (or a CodeableConcept's first code / text)."""
    if not concept:
        return None
    if "code" in concept:
        return concept.get("code")
    codings = concept.get("coding") or []
    return (codings[0].get("code") if codings else None) or concept.get("text")


def imaging_study_summary(resource: dict[str, Any]) -> ImagingStudySummary:
    series = [
        SeriesSummary(
            uid=s.get("uid"),
            number=s.get("number"),
            modality=_code(s.get("modality")),
            description=s.get("description"),
            number_of_instances=s.get("numberOfInstances"),
            body_site=_code(s.get("bodySite")),
        )
        for s in resource.get("series") or []
    ]
    modalities = [m for m in (_code(c) for c in resource.get("modality") or []) if m]
    for s in series:
        if s.modality and s.modality not in modalities:
            modalities.append(s.modality)
    return ImagingStudySummary(
        id=str(resource.get("id")),
        version_id=(resource.get("meta") or {}).get("versionId"),
        status=resource.get("status"),
        study_instance_uid=study_uid_of(resource),
        accession_number=accession_of(resource),
        patient=(resource.get("subject") or {}).get("reference"),
        started=resource.get("started"),
        modalities=modalities,
        description=resource.get("description"),
        number_of_series=resource.get("numberOfSeries"),
        number_of_instances=resource.get("numberOfInstances"),
        endpoints=[e.get("reference") for e in resource.get("endpoint") or [] if e.get("reference")],
        series=series,
    )
