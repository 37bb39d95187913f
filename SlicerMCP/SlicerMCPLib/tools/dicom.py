"""DICOM tools with the dicom-mcp names: nodes, C-ECHO, C-FIND, retrieve, load, move, send, PDF text.

Network, disk and decoding run in worker threads (`_run`, tools/running.py); only the final
`backend.add_volume` of load_* reaches the scene. Progress from those threads reaches the
client as MCP progress notifications (about 20 per operation).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

from mcp.server.mcpserver import Context, MCPServer
from pydantic import Field

from ..core.domain_config import RetrieveMethod
from ..core.errors import InvalidParameter, SlicerMCPError
from ..core.localhost import absolute_user_path
from ..core.services import Services, services_of
from ..dicom.models import (
    AttributePreset,
    AttributePresets,
    DicomNodeList,
    EchoResult,
    LoadedSeries,
    LoadResult,
    MoveResult,
    PdfText,
    QueryLevel,
    QueryResult,
    RetrieveResult,
    SendResult,
    SwitchResult,
)
from ..dicom.move import Target
from ..dicom.query import PRESETS, attribute_list
from ..dicom.retrieve import choose_method
from ..dicom.service import DicomService
from ..dicom.validation import check_ae_title, check_code, check_date, check_text, check_uid
from .annotations import ADDS_FROM_REMOTE, COPIES_REMOTE, READS, READS_REMOTE, SETS
from .client_log import client_log
from .confirm import asks_person
from .running import DomainRunner
from .seg_load import load_seg, series_modality

Uid = Annotated[str, Field(min_length=1, max_length=64, description="a DICOM UID (digits and dots)")]
Preset = Annotated[
    AttributePreset, Field(description="which attributes come back: minimal, standard or extended")
]
Extra = Annotated[
    list[str] | None,
    Field(description="DICOM keywords to return besides the preset, e.g. ['InstitutionName']"),
]
Excluded = Annotated[list[str] | None, Field(description="DICOM keywords to leave out of the preset")]
Limit = Annotated[
    int, Field(ge=1, le=10_000, description="at most this many records; has_more tells if more matched")
]
Method = Annotated[
    RetrieveMethod | None,
    Field(description="dicomweb, c-get or c-move; default: the node's configured or best method"),
]
SeriesStudy = Annotated[
    str | None, Field(description="the series' study UID (looked up with a C-FIND if omitted)")
]
MOVE_WHAT = "Moving studies and series to another DICOM node"
DestinationNode = Annotated[
    str, Field(min_length=1, description="name of a configured node (list_dicom_nodes)")
]


_run = DomainRunner(DicomService)


def node_text(services: Services, name: str | None) -> str:
    """A node as the person confirming a transfer sees it: name, AE title, address."""
    try:
        chosen, node = services.domain(DicomService).node(name)
    except SlicerMCPError:
        return f"node {name!r} (not configured)" if name else "the current node (none chosen)"
    return f"{chosen} ({node.ae_title} at {node.host}:{node.port})"


def _shown_move(services: Services, destination_node: str, what: str) -> str:
    source = node_text(services, None)
    return f"C-MOVE {what}\nfrom {source}\nto {node_text(services, destination_node)}"


MoveSeriesPerson = asks_person(
    "dicom_move",
    lambda services, destination_node, series_instance_uid, study_instance_uid: _shown_move(
        services,
        destination_node,
        f"series {series_instance_uid} (study {study_instance_uid or 'looked up'})",
    ),
)
MoveStudyPerson = asks_person(
    "dicom_move",
    lambda services, destination_node, study_instance_uid: _shown_move(
        services, destination_node, f"the whole study {study_instance_uid}"
    ),
)
RetrievePerson = asks_person(
    "dicom_move",
    lambda services, study_instance_uid, destination_ae_title, series_instance_uid: (
        f"C-MOVE {'series ' + series_instance_uid + ' of ' if series_instance_uid else ''}"
        f"study {study_instance_uid}\nfrom {node_text(services, None)}\nto the AE title {destination_ae_title}"
    ),
)


def _shown_send(
    services: Services,
    destination_node: str | None,
    file_paths: list[str] | None,
    volume_node_id: str | None,
    reference_series_instance_uid: str | None,
    series_description: str | None,
) -> str:
    if file_paths:
        what = f"{len(file_paths)} DICOM file(s) or folder(s):\n" + "\n".join(f"  {p}" for p in file_paths)
    else:
        what = f"the scene volume {volume_node_id} as a new series"
        if reference_series_instance_uid:
            what += f" of the patient and study of series {reference_series_instance_uid}"
        if series_description:
            what += f", described {series_description!r}"
    return f"C-STORE {what}\nto {node_text(services, destination_node)}"


SendPerson = asks_person(
    "dicom_send",
    lambda services, destination_node, file_paths, volume_node_id, reference_series_instance_uid, series_description: (
        _shown_send(
            services,
            destination_node,
            file_paths,
            volume_node_id,
            reference_series_instance_uid,
            series_description,
        )
    ),
)


def _filters(**values: tuple[str | None, str]) -> dict[str, str]:
    """Matching keys from tool arguments: (value, kind) with kind uid, text, date or code."""
    checks = {"uid": check_uid, "text": check_text, "date": check_date, "code": check_code}
    out = {}
    for keyword, (value, kind) in values.items():
        if value:
            out[keyword] = checks[kind](value, keyword)
    return out


async def _query(
    ctx: Context,
    level: QueryLevel,
    filters: dict[str, str],
    preset: AttributePreset,
    extra: list[str] | None,
    excluded: list[str] | None,
    limit: int,
) -> QueryResult:
    attributes = attribute_list(level, preset, extra, excluded)
    return await _run(
        ctx,
        lambda dicom, progress: dicom.query(
            level, attributes, filters, limit, lambda n: progress(n, None, f"{n} matches")
        ),
    )


async def _series_target(ctx: Context, series_uid: str, study_uid: str | None) -> Target:
    """A series target; the study UID is looked up with a C-FIND when not given."""
    check_uid(series_uid, "series_instance_uid")
    if study_uid:
        return Target(check_uid(study_uid, "study_instance_uid"), series_uid)
    found = await _run(
        ctx,
        lambda dicom, _: dicom.query("series", ["StudyInstanceUID"], {"SeriesInstanceUID": series_uid}, 1),
    )
    if not found.records or not found.records[0].get("StudyInstanceUID"):
        raise InvalidParameter(
            f"series {series_uid} was not found on the current node; check it with query_series",
            details={"series_instance_uid": series_uid},
        )
    return Target(check_uid(str(found.records[0]["StudyInstanceUID"]), "StudyInstanceUID"), series_uid)


# -- nodes -----------------------------------------------------------------------------------------


async def list_dicom_nodes(ctx: Context) -> DicomNodeList:
    """List the configured DICOM nodes (PACS) with AE title, address, DICOMweb URL and retrieve method,
    which one is current, and our calling AE title."""
    return services_of(ctx).domain(DicomService).list_nodes()


async def switch_dicom_node(
    ctx: Context,
    node_name: Annotated[str, Field(min_length=1, description="a node name from list_dicom_nodes")],
) -> SwitchResult:
    """Make another configured node the current one; queries, retrieves and loads then use it."""
    name = services_of(ctx).domain(DicomService).switch(node_name)
    return SwitchResult(success=True, current_node=name, message=f"Switched to DICOM node: {name}")


async def verify_connection(ctx: Context) -> EchoResult:
    """C-ECHO the current node: round-trip time and the presentation contexts it accepted.
    Use it first when a node seems unreachable."""
    return await _run(ctx, lambda dicom, _: dicom.verify())


# -- query -----------------------------------------------------------------------------------------


async def query_patients(
    ctx: Context,
    name_pattern: Annotated[str, Field(description="patient name, wildcards * and ?, e.g. DOE^J*")] = "",
    patient_id: Annotated[str, Field(description="patient ID (wildcards allowed)")] = "",
    birth_date: Annotated[str, Field(description="YYYYMMDD or a range YYYYMMDD-YYYYMMDD")] = "",
    attribute_preset: Preset = "standard",
    additional_attributes: Extra = None,
    exclude_attributes: Excluded = None,
    limit: Limit = 100,
) -> QueryResult:
    """Find patients on the current node (C-FIND, PATIENT level). Returns records, their count and has_more."""
    filters = _filters(
        PatientName=(name_pattern, "text"),
        PatientID=(patient_id, "text"),
        PatientBirthDate=(birth_date, "date"),
    )
    return await _query(
        ctx, "patient", filters, attribute_preset, additional_attributes, exclude_attributes, limit
    )


async def query_studies(
    ctx: Context,
    patient_id: Annotated[str, Field(description="patient ID (wildcards allowed)")] = "",
    study_date: Annotated[str, Field(description="YYYYMMDD or a range like 20240101-20240131")] = "",
    modality_in_study: Annotated[str, Field(description="a modality in the study, e.g. CT or MR")] = "",
    study_description: Annotated[str, Field(description="description, wildcards allowed, e.g. CHEST*")] = "",
    accession_number: Annotated[str, Field(description="accession number")] = "",
    study_instance_uid: Annotated[str, Field(description="one study's UID (no wildcards)")] = "",
    patient_name: Annotated[str, Field(description="patient name, wildcards allowed")] = "",
    attribute_preset: Preset = "standard",
    additional_attributes: Extra = None,
    exclude_attributes: Excluded = None,
    limit: Limit = 100,
) -> QueryResult:
    """Find studies on the current node (Study Root C-FIND). Returns records with StudyInstanceUID,
    date, description, modalities..., their count and has_more."""
    filters = _filters(
        PatientID=(patient_id, "text"),
        PatientName=(patient_name, "text"),
        StudyDate=(study_date, "date"),
        ModalitiesInStudy=(modality_in_study, "code"),
        StudyDescription=(study_description, "text"),
        AccessionNumber=(accession_number, "text"),
        StudyInstanceUID=(study_instance_uid, "uid"),
    )
    return await _query(
        ctx, "study", filters, attribute_preset, additional_attributes, exclude_attributes, limit
    )


async def query_series(
    ctx: Context,
    study_instance_uid: Annotated[str, Field(description="the study's UID (required by Study Root)")],
    modality: Annotated[str, Field(description="e.g. CT, MR, DOC")] = "",
    series_number: Annotated[str, Field(description="series number")] = "",
    series_description: Annotated[str, Field(description="description, wildcards allowed")] = "",
    series_instance_uid: Annotated[str, Field(description="one series' UID")] = "",
    attribute_preset: Preset = "standard",
    additional_attributes: Extra = None,
    exclude_attributes: Excluded = None,
    limit: Limit = 100,
) -> QueryResult:
    """List the series of a study (C-FIND, SERIES level) with modality, number, description and
    instance count."""
    if series_number and not series_number.isdigit():
        raise InvalidParameter("series_number must be a whole number", details={"parameter": "series_number"})
    filters = _filters(
        StudyInstanceUID=(study_instance_uid, "uid"),
        Modality=(modality, "code"),
        SeriesDescription=(series_description, "text"),
        SeriesInstanceUID=(series_instance_uid, "uid"),
    )
    if not study_instance_uid:
        raise InvalidParameter("study_instance_uid is required", details={"parameter": "study_instance_uid"})
    if series_number:
        filters["SeriesNumber"] = series_number
    return await _query(
        ctx, "series", filters, attribute_preset, additional_attributes, exclude_attributes, limit
    )


async def query_instances(
    ctx: Context,
    series_instance_uid: Annotated[str, Field(description="the series' UID")],
    instance_number: Annotated[str, Field(description="instance number")] = "",
    sop_instance_uid: Annotated[str, Field(description="one instance's UID")] = "",
    study_instance_uid: Annotated[
        str, Field(description="the study's UID (optional, speeds up strict PACS)")
    ] = "",
    attribute_preset: Preset = "standard",
    additional_attributes: Extra = None,
    exclude_attributes: Excluded = None,
    limit: Limit = 100,
) -> QueryResult:
    """List the instances (images, documents) of a series (C-FIND, IMAGE level)."""
    if instance_number and not instance_number.isdigit():
        raise InvalidParameter(
            "instance_number must be a whole number", details={"parameter": "instance_number"}
        )
    filters = _filters(
        StudyInstanceUID=(study_instance_uid, "uid"),
        SeriesInstanceUID=(series_instance_uid, "uid"),
        SOPInstanceUID=(sop_instance_uid, "uid"),
    )
    if not series_instance_uid:
        raise InvalidParameter(
            "series_instance_uid is required", details={"parameter": "series_instance_uid"}
        )
    if instance_number:
        filters["InstanceNumber"] = instance_number
    return await _query(
        ctx, "instance", filters, attribute_preset, additional_attributes, exclude_attributes, limit
    )


async def get_attribute_presets(ctx: Context) -> AttributePresets:
    """The DICOM attributes each attribute_preset (minimal, standard, extended) returns, per query level."""
    return AttributePresets(presets=PRESETS)


# -- documents -------------------------------------------------------------------------------------


async def extract_pdf_text_from_dicom(
    ctx: Context, study_instance_uid: Uid, series_instance_uid: Uid, sop_instance_uid: Uid
) -> PdfText:
    """Retrieve one Encapsulated PDF instance (e.g. a scanned report) and return its text per page."""
    target = Target(
        check_uid(study_instance_uid, "study_instance_uid"),
        check_uid(series_instance_uid, "series_instance_uid"),
        check_uid(sop_instance_uid, "sop_instance_uid"),
    )
    return await _run(ctx, lambda dicom, _: dicom.pdf_text(target))


# -- move ------------------------------------------------------------------------------------------


async def _move(ctx: Context, target: Target, destination_node: str, person: Any) -> MoveResult:
    services_of(ctx).require_allowed("dicom_move", MOVE_WHAT, person)
    return await _run(ctx, lambda dicom, progress: dicom.move(target, destination_node, progress))


async def move_series(
    ctx: Context,
    destination_node: DestinationNode,
    series_instance_uid: Uid,
    study_instance_uid: SeriesStudy = None,
    person: MoveSeriesPerson = None,
) -> MoveResult:
    """Ask the current node to send a series to another configured node (C-MOVE). Returns completed,
    failed and warning sub-operation counts. Off unless allow.dicom_move is true."""
    services_of(ctx).require_allowed("dicom_move", MOVE_WHAT, person)
    return await _move(
        ctx, await _series_target(ctx, series_instance_uid, study_instance_uid), destination_node, person
    )


async def move_study(
    ctx: Context, destination_node: DestinationNode, study_instance_uid: Uid, person: MoveStudyPerson = None
) -> MoveResult:
    """Ask the current node to send a whole study to another configured node (C-MOVE). Returns
    sub-operation counts. Off unless allow.dicom_move is true."""
    target = Target(check_uid(study_instance_uid, "study_instance_uid"))
    return await _move(ctx, target, destination_node, person)


async def pacs_retrieve(
    ctx: Context,
    study_instance_uid: Uid,
    destination_ae_title: Annotated[
        str,
        Field(min_length=1, max_length=16, description="AE title the PACS knows as a C-MOVE destination"),
    ],
    series_instance_uid: Annotated[
        str | None, Field(description="only this series of the study (series-level retrieve)")
    ] = None,
    person: RetrievePerson = None,
) -> MoveResult:
    """dicom-hl7-mcp's C-MOVE: ask the current node to send a study (or one of its series) to an
    AE title it knows, e.g. a workstation that is not in this config; move_study/move_series do the
    same by node name. Returns sub-operation counts. Off unless allow.dicom_move is true
    (DICOM_HL7_PACS_ALLOW_RETRIEVE=true turns it on too)."""
    services = services_of(ctx)
    services.require_allowed("dicom_move", MOVE_WHAT, person)
    target = Target(
        check_uid(study_instance_uid, "study_instance_uid"),
        check_uid(series_instance_uid, "series_instance_uid") if series_instance_uid else None,
    )
    aet = check_ae_title(destination_ae_title, "destination_ae_title")
    return await _run(ctx, lambda dicom, progress: dicom.move_to_ae(target, aet, progress))


# -- retrieve and load -----------------------------------------------------------------------------


async def retrieve_series(
    ctx: Context,
    series_instance_uid: Uid,
    study_instance_uid: SeriesStudy = None,
    method: Method = None,
) -> RetrieveResult:
    """Download a series to local storage (DICOMweb, C-GET or C-MOVE), checking every expected
    instance arrived. Returns the folder and counts; RETRIEVE_INCOMPLETE lists missing instances."""
    target = await _series_target(ctx, series_instance_uid, study_instance_uid)
    return await _run(ctx, lambda dicom, progress: dicom.retrieve_to_storage(target, method, progress))


async def retrieve_study(ctx: Context, study_instance_uid: Uid, method: Method = None) -> RetrieveResult:
    """Download a whole study to local storage, checking every expected instance arrived."""
    target = Target(check_uid(study_instance_uid, "study_instance_uid"))
    return await _run(ctx, lambda dicom, progress: dicom.retrieve_to_storage(target, method, progress))


async def _load(ctx: Context, target: Target, method: RetrieveMethod | None) -> LoadResult:
    services = services_of(ctx)
    if target.series_uid and await _run(ctx, lambda dicom, _: series_modality(dicom, target)) == "SEG":
        return await _load_seg(ctx, target, method)
    # decoded straight into memory the scene can take over (no copy of the voxels when adding them)
    allocate = services.backend.allocate_voxels
    await client_log(
        ctx, "debug", "loading", study_instance_uid=target.study_uid, series_instance_uid=target.series_uid
    )
    chosen, decoded, skipped, t_retrieve, t_decode = await _run(
        ctx, lambda dicom, progress: dicom.retrieve_and_decode(target, method, progress, allocate=allocate)
    )
    loaded = []
    for i, item in enumerate(decoded, 1):
        await client_log(ctx, "info", f"adding series {i} of {len(decoded)} to the scene")
        node = await services.backend.add_volume(item.loaded.volume)
        loaded.append(
            LoadedSeries(
                series_instance_uid=item.series_uid,
                node=node,
                slices=item.loaded.slices,
                warnings=item.loaded.warnings,
            )
        )
    return LoadResult(
        method=chosen,
        study_instance_uid=target.study_uid,
        loaded=loaded,
        skipped=skipped,
        retrieve_seconds=round(t_retrieve, 3),
        load_seconds=round(t_decode, 3),
    )


async def _load_seg(ctx: Context, target: Target, method: RetrieveMethod | None) -> LoadResult:
    """A SEG series becomes a segmentation over its source volume (loaded first if not in the scene)."""
    started = time.perf_counter()

    async def load_source(source: Target) -> list[LoadedSeries]:
        return (await _load(ctx, source, method)).loaded

    services = services_of(ctx)
    service = services.domain(DicomService)
    sources, segmentations = await load_seg(services, service, target, load_source)
    loaded = [
        LoadedSeries(series_instance_uid=str(target.series_uid), node=n, slices=0) for n in segmentations
    ]
    return LoadResult(
        method=method or choose_method(service.node()[1]),
        study_instance_uid=target.study_uid,
        loaded=sources + loaded,
        retrieve_seconds=0.0,
        load_seconds=round(time.perf_counter() - started, 3),
    )


async def load_series(
    ctx: Context,
    series_instance_uid: Uid,
    study_instance_uid: SeriesStudy = None,
    method: Method = None,
) -> LoadResult:
    """Retrieve a series and load it into the scene as a volume (name = series description,
    DICOM UIDs as node attributes). Refuses a partial series (RETRIEVE_INCOMPLETE). A DICOM SEG
    series loads as a segmentation node over its source volume (loaded too if not in the scene).
    Non-image instances inside the series (an SR, a PDF) are left out and counted by modality in
    the series' warnings."""
    return await _load(ctx, await _series_target(ctx, series_instance_uid, study_instance_uid), method)


async def load_study(ctx: Context, study_instance_uid: Uid, method: Method = None) -> LoadResult:
    """Retrieve a study and load each image series as a volume; non-image series (PDF, SR) are
    listed as skipped."""
    return await _load(ctx, Target(check_uid(study_instance_uid, "study_instance_uid")), method)


# -- send ------------------------------------------------------------------------------------------


async def send_to_pacs(
    ctx: Context,
    destination_node: Annotated[
        str | None, Field(description="configured node to send to (default: the current node)")
    ] = None,
    file_paths: Annotated[
        list[str] | None, Field(description="absolute paths of DICOM files or folders of them to send")
    ] = None,
    volume_node_id: Annotated[
        str | None, Field(description="a scalar volume node to send as a new DICOM series")
    ] = None,
    reference_series_instance_uid: Annotated[
        str | None, Field(description="with volume_node_id: take patient and study from this series")
    ] = None,
    series_description: Annotated[
        str | None, Field(max_length=64, description="new series' description")
    ] = None,
    person: SendPerson = None,
) -> SendResult:
    """Send DICOM files, or a scene volume as a new series (new UIDs), to a node by C-STORE.
    Returns sent, warning and failed counts. Off unless allow.dicom_send is true."""
    services = services_of(ctx)
    services.require_allowed("dicom_send", "Sending DICOM data to a node", person)
    if bool(file_paths) == bool(volume_node_id):
        raise InvalidParameter("give either file_paths or volume_node_id (exactly one)")
    if file_paths:
        files = _dicom_files(file_paths)
        return await _run(
            ctx, lambda dicom, progress: dicom.send_files_or_datasets(files, destination_node, progress)
        )
    volume = await services.backend.export_volume(str(volume_node_id))
    reference = None
    if reference_series_instance_uid:
        reference = await _series_target(ctx, reference_series_instance_uid, None)
    return await _run(
        ctx,
        lambda dicom, progress: dicom.send_volume(
            volume, destination_node, reference, series_description, progress
        ),
    )


def _dicom_files(paths: list[str]) -> list[Path]:
    files: list[Path] = []
    for raw in paths:
        path = absolute_user_path(raw, "paths")
        if path.is_dir():
            files.extend(sorted(p for p in path.rglob("*") if p.is_file()))
        elif path.is_file():
            files.append(path)
        else:
            raise InvalidParameter(f"no such file or folder: {path}", details={"path": str(path)})
    if not files:
        raise InvalidParameter("the given folders hold no files")
    return files


def register(server: MCPServer) -> None:
    server.add_tool(list_dicom_nodes, title="List DICOM nodes", annotations=READS)
    server.add_tool(
        switch_dicom_node,
        title="Switch DICOM node",
        annotations=SETS,
    )
    server.add_tool(verify_connection, title="Verify DICOM connection (C-ECHO)", annotations=READS_REMOTE)
    server.add_tool(query_patients, title="Query patients", annotations=READS_REMOTE)
    server.add_tool(query_studies, title="Query studies", annotations=READS_REMOTE)
    server.add_tool(query_series, title="Query series", annotations=READS_REMOTE)
    server.add_tool(query_instances, title="Query instances", annotations=READS_REMOTE)
    server.add_tool(get_attribute_presets, title="Get attribute presets", annotations=READS)
    server.add_tool(
        extract_pdf_text_from_dicom, title="Extract PDF text from DICOM", annotations=READS_REMOTE
    )
    server.add_tool(move_series, title="Move series to another node", annotations=COPIES_REMOTE)
    server.add_tool(move_study, title="Move study to another node", annotations=COPIES_REMOTE)
    server.add_tool(pacs_retrieve, title="C-MOVE to an AE title", annotations=COPIES_REMOTE)
    server.add_tool(retrieve_series, title="Retrieve series to local storage", annotations=COPIES_REMOTE)
    server.add_tool(retrieve_study, title="Retrieve study to local storage", annotations=COPIES_REMOTE)
    server.add_tool(load_series, title="Load DICOM series into the scene", annotations=ADDS_FROM_REMOTE)
    server.add_tool(load_study, title="Load DICOM study into the scene", annotations=ADDS_FROM_REMOTE)
    server.add_tool(
        send_to_pacs,
        title="Send to PACS (C-STORE)",
        annotations=ADDS_FROM_REMOTE,
    )
