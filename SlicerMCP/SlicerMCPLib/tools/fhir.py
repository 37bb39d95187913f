"""FHIR tools: servers from the config, Patient and ImagingStudy search, read/create/update, and
the links between ImagingStudy resources and DICOM studies (names as in dicom-mcp).

All HTTP work runs in a worker thread (`_run`, tools/running.py); writes need `allow.fhir_write`.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from mcp.server.mcpserver import Context, MCPServer
from pydantic import Field

from ..core.errors import InvalidParameter, SlicerMCPError
from ..core.progress import Progress
from ..core.services import Services, services_of
from ..dicom.service import DicomService
from ..fhir import linking, resources
from ..fhir.linking import DicomStudyRecord
from ..fhir.models import (
    DicomStudyLink,
    FhirCapability,
    FhirServerList,
    FhirSwitchResult,
    ImagingStudySearchResult,
    PatientSearchResult,
    ResourceResult,
    imaging_study_summary,
    patient_summary,
)
from ..fhir.search import imaging_study_params, patient_params, search
from ..fhir.service import FhirService
from .annotations import ADDS_FROM_REMOTE, COPIES_REMOTE, OVERWRITES_REMOTE, READS, READS_REMOTE, SETS
from .confirm import asks_person
from .running import DomainRunner

Limit = Annotated[
    int, Field(ge=1, le=500, description="at most this many matches (pages are followed up to it)")
]
Uid = Annotated[str, Field(min_length=1, max_length=64, description="DICOM UID, digits and dots")]


def fhir_server_text(services: Services) -> str:
    """The FHIR server a write goes to, as the person confirming it sees it."""
    service = services.domain(FhirService)
    try:
        name, _ = service.server()  # the same choice of server the write makes
    except SlicerMCPError:
        return "the current FHIR server (none chosen)"
    return f"FHIR server {name} ({service.servers[name].url})"


def _resource_text(resource: dict[str, Any]) -> str:
    return json.dumps(resource, indent=1, ensure_ascii=False)


CreatePerson = asks_person(
    "fhir_write",
    lambda services, resource: (
        f"Create a {resource.get('resourceType', '?')} on {fhir_server_text(services)}:\n{_resource_text(resource)}"
    ),
)
UpdatePerson = asks_person(
    "fhir_write",
    lambda services, resource, version_id: (
        f"Replace {resource.get('resourceType', '?')}/{resource.get('id', '?')}"
        f"{' at version ' + version_id if version_id else ''} on {fhir_server_text(services)} with:\n"
        f"{_resource_text(resource)}"
    ),
)
ImagingStudyPerson = asks_person(
    "fhir_write",
    lambda services, study_instance_uid, node, patient, study: (
        f"Create an ImagingStudy on {fhir_server_text(services)} for DICOM study "
        f"{study_instance_uid or (study.study_instance_uid if study else '?')}"
        f"{' (from node ' + node + ')' if node else ''}"
        f"{', for Patient/' + patient if patient else ', for the Patient whose identifier is its PatientID'}"
    ),
)


_run = DomainRunner(FhirService, within=FhirService.within_call)  # a total deadline per call


async def verify_fhir_connection(
    ctx: Context,
    server: Annotated[
        str | None, Field(description="a name from list_fhir_servers (default: the current one)")
    ] = None,
) -> FhirCapability:
    """Check a FHIR server answers: reads its CapabilityStatement (/metadata) and returns the FHIR
    version, the software and the resource types it serves. Use it first when FHIR calls fail."""
    return await _run(ctx, lambda fhir, _: fhir.verify(server))


async def list_fhir_servers(ctx: Context) -> FhirServerList:
    """The FHIR servers in the config (name, url, auth kind; never secrets) and which is current."""
    return services_of(ctx).domain(FhirService).list_servers()


async def switch_fhir_server(
    ctx: Context, name: Annotated[str, Field(min_length=1, description="a name from list_fhir_servers")]
) -> FhirSwitchResult:
    """Make another configured FHIR server the current one for the following FHIR tools."""
    fhir = services_of(ctx).domain(FhirService)
    previous = fhir.current
    current = fhir.switch(name)
    return FhirSwitchResult(previous=previous, current=current, url=fhir.server(current)[1].url)


async def fhir_search_patient(
    ctx: Context,
    name: Annotated[
        str | None, Field(description="any part of the name (string search, starts-with)")
    ] = None,
    family: Annotated[str | None, Field(description="family name")] = None,
    given: Annotated[str | None, Field(description="given name")] = None,
    identifier: Annotated[
        str | None, Field(description="MRN or other identifier: 'value' or 'system|value'")
    ] = None,
    birthdate: Annotated[
        list[str] | None,
        Field(
            description="R4 date values with optional prefix, ANDed: e.g. ['ge1960-01-01', 'lt1970'] "
            "(prefixes eq ne gt lt ge le sa eb ap; '>=1960' is accepted too)"
        ),
    ] = None,
    gender: Annotated[
        Literal["male", "female", "other", "unknown"] | None, Field(description="gender")
    ] = None,
    limit: Limit = 20,
) -> PatientSearchResult:
    """Search FHIR Patients. Returns id, identifiers (MRN), name, birth date and gender per match;
    has_more says more matches exist than `limit`. Use the id with fhir_search_imaging_study."""
    params = patient_params(
        name=name, family=family, given=given, identifier=identifier, birthdate=birthdate, gender=gender
    )
    if not params:
        raise InvalidParameter(
            "give at least one search criterion (name, family, given, identifier, birthdate...)"
        )
    page = await _run(ctx, lambda fhir, _: search(fhir.client(), "Patient", params, limit))
    return PatientSearchResult(
        total=page.total,
        returned=len(page.resources),
        has_more=page.has_more,
        pages_read=page.pages_read,
        patients=[patient_summary(r) for r in page.resources],
    )


async def fhir_search_imaging_study(
    ctx: Context,
    patient: Annotated[str | None, Field(description="FHIR Patient id or 'Patient/<id>'")] = None,
    study_instance_uid: Annotated[str | None, Field(description="DICOM Study Instance UID")] = None,
    identifier: Annotated[str | None, Field(description="other identifier, e.g. an accession number")] = None,
    modality: Annotated[str | None, Field(description="DICOM modality code, e.g. CT, MR, CR")] = None,
    started_from: Annotated[
        str | None, Field(description="started on or after this date (YYYY-MM-DD)")
    ] = None,
    started_to: Annotated[
        str | None, Field(description="started on or before this date (YYYY-MM-DD)")
    ] = None,
    status: Annotated[
        Literal["registered", "available", "cancelled", "entered-in-error", "unknown"] | None,
        Field(description="ImagingStudy status"),
    ] = None,
    limit: Limit = 20,
) -> ImagingStudySearchResult:
    """Search FHIR ImagingStudies (by patient, Study UID, modality, date range, status). Each match
    has its DICOM Study Instance UID, series UIDs and modalities: pass the study UID to the DICOM
    tools (load_study) to load the images."""
    params = imaging_study_params(
        patient=patient,
        study_instance_uid=study_instance_uid,
        identifier=identifier,
        modality=modality,
        started_from=started_from,
        started_to=started_to,
        status=status,
    )
    if not params:
        raise InvalidParameter(
            "give at least one search criterion (patient, study_instance_uid, modality...)"
        )
    # newest first across pages; the local sort keeps that order on servers that ignore _sort
    page = await _run(
        ctx, lambda fhir, _: search(fhir.client(), "ImagingStudy", [*params, ("_sort", "-started")], limit)
    )
    studies = sorted(
        (imaging_study_summary(r) for r in page.resources), key=lambda x: x.started or "", reverse=True
    )
    return ImagingStudySearchResult(
        total=page.total,
        returned=len(studies),
        has_more=page.has_more,
        pages_read=page.pages_read,
        imaging_studies=studies,
    )


async def fhir_read_resource(
    ctx: Context,
    resource_type: Annotated[
        str, Field(min_length=1, max_length=64, description="e.g. Patient, DiagnosticReport")
    ],
    id: Annotated[str, Field(min_length=1, max_length=64, description="logical id of the resource")],
    version_id: Annotated[
        str | None, Field(description="read this version (vread) instead of the latest")
    ] = None,
) -> ResourceResult:
    """Read one FHIR resource of any type (optionally a past version). The result's version_id is
    what fhir_update_resource needs to detect concurrent changes."""
    return await _run(ctx, lambda fhir, _: resources.read(fhir.client(), resource_type, id, version_id))


async def fhir_create_resource(
    ctx: Context,
    resource: Annotated[dict[str, Any], Field(description="the FHIR R4 resource as JSON, with resourceType")],
    person: CreatePerson = None,
) -> ResourceResult:
    """Create a FHIR resource (the server assigns the id). It is validated against the R4 model
    first. Off unless allow.fhir_write is true."""
    services = services_of(ctx)
    services.require_allowed("fhir_write", "Writing to the FHIR server", person)
    return await _run(ctx, lambda fhir, _: resources.create(fhir.client(), resource))


async def fhir_update_resource(
    ctx: Context,
    resource: Annotated[
        dict[str, Any], Field(description="the whole changed resource, with resourceType and id")
    ],
    version_id: Annotated[
        str | None, Field(description="the version you read (default: the resource's meta.versionId)")
    ] = None,
    person: UpdatePerson = None,
) -> ResourceResult:
    """Replace a FHIR resource, only if it is still at the version you read (If-Match): a change
    made by someone else meanwhile fails with FHIR_CONFLICT instead of being overwritten.
    Validated against the R4 model first. Off unless allow.fhir_write is true."""
    services = services_of(ctx)
    services.require_allowed("fhir_write", "Writing to the FHIR server", person)
    return await _run(ctx, lambda fhir, _: resources.update(fhir.client(), resource, version_id))


async def fhir_imaging_study_for_series(
    ctx: Context,
    series_instance_uid: Annotated[str | None, Field(description="DICOM Series Instance UID")] = None,
    study_instance_uid: Annotated[str | None, Field(description="DICOM Study Instance UID")] = None,
) -> ImagingStudySearchResult:
    """Find the FHIR ImagingStudy that describes a DICOM series or study (e.g. one loaded in the
    scene), to get to its patient, order and reports."""
    found = await _run(
        ctx,
        lambda fhir, _: linking.imaging_studies_for_uid(
            fhir.client(), study_instance_uid=study_instance_uid, series_instance_uid=series_instance_uid
        ),
    )
    return ImagingStudySearchResult(
        total=len(found),
        returned=len(found),
        has_more=False,
        pages_read=1,
        imaging_studies=[imaging_study_summary(r) for r in found],
    )


async def fhir_dicom_study_for_imaging_study(
    ctx: Context,
    imaging_study_id: Annotated[str, Field(min_length=1, max_length=64, description="FHIR ImagingStudy id")],
) -> DicomStudyLink:
    """The DICOM Study Instance UID, series UIDs and PACS (Endpoint) addresses of an ImagingStudy:
    hand the study UID to the DICOM tools to load the images into the scene."""
    return await _run(ctx, lambda fhir, _: linking.dicom_link(fhir.client(), imaging_study_id))


async def fhir_create_imaging_study_from_pacs(
    ctx: Context,
    study_instance_uid: Annotated[
        str | None, Field(description="DICOM Study Instance UID to look up in the PACS (C-FIND)")
    ] = None,
    node: Annotated[
        str | None,
        Field(
            description="DICOM node holding the study (default: the current one); its dicomweb_url becomes the Endpoint"
        ),
    ] = None,
    patient: Annotated[
        str | None,
        Field(description="FHIR Patient id; default: the Patient whose identifier is the study's PatientID"),
    ] = None,
    study: Annotated[
        DicomStudyRecord | None,
        Field(
            description="the study as already queried (UID, PatientID, date, series); skips the PACS query"
        ),
    ] = None,
    person: ImagingStudyPerson = None,
) -> ResourceResult:
    """Create the FHIR ImagingStudy (series, modalities, Endpoint to the PACS) for a DICOM study in
    a PACS, found by its Study Instance UID; returns the existing one if the FHIR server already
    has that Study UID. Off unless allow.fhir_write is true."""
    services = services_of(ctx)
    services.require_allowed("fhir_write", "Writing to the FHIR server", person)
    if study is None and not study_instance_uid:
        raise InvalidParameter("pass study_instance_uid (looked up in the PACS) or a study record")
    dicom = services.domain(DicomService)
    node_name, dicom_node = None, None
    if study is None or node is not None or dicom.current is not None:
        node_name, dicom_node = dicom.node(node)  # the DICOM tools' choice of node and their errors
    endpoint = (
        (node_name, dicom_node.dicomweb_url) if dicom_node is not None and dicom_node.dicomweb_url else None
    )

    def work(fhir: FhirService, _: Progress) -> ResourceResult:
        record = study
        if record is None:
            record = linking.study_record_from_pacs(
                dicom_node, dicom.calling_aet, node_name, study_instance_uid
            )
        return linking.create_imaging_study(fhir.client(), record, patient=patient, endpoint=endpoint)

    return await _run(ctx, work)


def register(server: MCPServer) -> None:
    server.add_tool(verify_fhir_connection, title="Verify FHIR connection", annotations=READS_REMOTE)
    server.add_tool(list_fhir_servers, title="List FHIR servers", annotations=READS)
    server.add_tool(switch_fhir_server, title="Switch FHIR server", annotations=SETS)
    server.add_tool(fhir_search_patient, title="Search FHIR patients", annotations=READS_REMOTE)
    server.add_tool(fhir_search_imaging_study, title="Search FHIR imaging studies", annotations=READS_REMOTE)
    server.add_tool(fhir_read_resource, title="Read FHIR resource", annotations=READS_REMOTE)
    server.add_tool(fhir_create_resource, title="Create FHIR resource", annotations=ADDS_FROM_REMOTE)
    server.add_tool(fhir_update_resource, title="Update FHIR resource", annotations=OVERWRITES_REMOTE)
    server.add_tool(
        fhir_imaging_study_for_series, title="ImagingStudy for DICOM series", annotations=READS_REMOTE
    )
    server.add_tool(
        fhir_dicom_study_for_imaging_study, title="DICOM study of ImagingStudy", annotations=READS_REMOTE
    )
    server.add_tool(
        fhir_create_imaging_study_from_pacs,
        title="Create ImagingStudy from PACS study",
        annotations=COPIES_REMOTE,
    )
