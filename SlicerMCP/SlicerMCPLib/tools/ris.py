"""Mini-RIS tools: patients, orders, the modality worklist, MPPS status and the virtual CR.

Database and DICOM work runs in a worker thread (`_run`, tools/running.py); writes need `allow.ris_write` (and sending
the synthetic study to the PACS also `allow.dicom_send`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from mcp.server.mcpserver import Context, MCPServer
from pydantic import BaseModel, Field

from ..core.errors import InvalidParameter
from ..core.progress import Progress
from ..core.services import Services, services_of
from ..dicom.validation import check_text
from ..ris.db import RisNotFound
from ..ris.links import links_of, with_stored_results
from ..ris.models import MppsRecord, MwlEntry, Order, OrderLink, Patient, Priority
from ..ris.reports import OrderReport, OrderResult, order_results, reports_for
from ..ris.schema import CT_PROCEDURES, PROCEDURES
from ..ris.service import RisService
from .annotations import ADDS, ADDS_FROM_REMOTE, CANCELS, READS
from .confirm import asks_person
from .running import DomainRunner

ProcedureCode = Literal[tuple(p[0] for p in PROCEDURES + CT_PROCEDURES)]  # type: ignore[valid-type]
Limit = Annotated[int, Field(ge=1, le=1000, description="at most this many records")]
Accession = Annotated[str, Field(min_length=1, max_length=16, description="accession number of the order")]


class PatientList(BaseModel):
    count: int
    patients: list[Patient]


class OrderList(BaseModel):
    count: int
    orders: list[Order]


class Worklist(BaseModel):
    count: int
    entries: list[MwlEntry]


class MwlCreated(BaseModel):
    """The new worklist entry: what the modality will see (with dicom-mcp's fields: success,
    message, patient_id)."""

    success: bool = Field(description="always true: a failure is a tool error")
    message: str
    mwl_id: int
    accession_number: str
    study_instance_uid: str
    patient_id: str = Field(description="the patient's MRN, the worklist's PatientID")
    patient_mrn: str
    patient_name: str = Field(description="DICOM PN, Family^Given")
    procedure_code: str
    procedure: str
    modality: str
    scheduled_station_aet: str
    scheduled_time: str = Field(description="ISO 8601 local time")
    scheduled_procedure_step_id: str


class SyntheticStudy(BaseModel):
    accession_number: str
    study_instance_uid: str
    series_instance_uids: list[str] = Field(description="one series per view")
    sop_instance_uids: list[str]
    image_count: int
    body_part: str
    views: list[str]
    image_mode: str = Field(description="the generator that made the pixels (ai falls back to simple)")
    mpps_sop_instance_uid: str
    mpps_status: str
    sent_to_pacs: str | None = Field(None, description="PACS node name when sent")
    sent: int
    files: list[str] = Field(default_factory=list, description="files written when not sent to a PACS")
    notes: list[str] = Field(default_factory=list)


class ProcedureStepStatus(BaseModel):
    accession_number: str
    order_status: str
    worklist: list[MwlEntry]
    performed_steps: list[MppsRecord] = Field(description="MPPS instances with their status history")
    results: list[OrderResult] = Field(
        default_factory=list, description="instances the completed steps performed: images, SEG, SR"
    )
    reports: list[OrderReport] = Field(default_factory=list, description="reports recorded for the order")
    stored_results: list[OrderLink] = Field(
        default_factory=list,
        description="SEG/SR stored in the PACS and DiagnosticReports in FHIR for the order",
    )


def _ris_text(services: Services) -> str:
    ris = services.config.mini_ris
    where = f"MySQL {ris.database} at {ris.host}:{ris.port}" if ris.backend == "mysql" else "SQLite"
    return f"the mini-RIS ({where})"


OrderPerson = asks_person(
    "ris_write",
    lambda services, patient_mrn, procedure_code, priority, reason, accession_number: (
        f"Create a {priority} order {procedure_code} for the patient with MRN {patient_mrn}"
        f"{' (accession ' + accession_number + ')' if accession_number else ''} in {_ris_text(services)}"
        f"{chr(10) + 'reason: ' + reason if reason else ''}"
    ),
)
MwlPerson = asks_person(
    "ris_write",
    lambda services, order_id, scheduled_station_aet, scheduled_time: (
        f"Schedule order {order_id} on the worklist of "
        f"{scheduled_station_aet or services.config.mini_ris.modality.ae_title}"
        f" at {scheduled_time or 'the next free quarter hour'} in {_ris_text(services)}"
    ),
)
CancelPerson = asks_person(
    "ris_write", lambda services, mwl_id: f"Cancel worklist entry {mwl_id} in {_ris_text(services)}"
)
AcquirePerson = asks_person(
    ("ris_write", "dicom_send"),
    lambda services, accession_number, send_to_pacs: (
        f"Acquire a synthetic CR study for accession {accession_number} as the virtual modality "
        f"{services.config.mini_ris.modality.ae_title} (worklist query, MPPS)"
        + (", and C-STORE the images to the PACS" if send_to_pacs else ", writing the images to files")
    ),
)


_run = DomainRunner(RisService)


async def list_mini_ris_patients(
    ctx: Context,
    mrn: Annotated[
        str | None, Field(description="exact medical record number, e.g. MRN1001", max_length=64)
    ] = None,
    name: Annotated[
        str | None, Field(description="part of the family or given name, case-insensitive", max_length=200)
    ] = None,
    limit: Limit = 100,
) -> PatientList:
    """Patients in the mini-RIS (MRN, name, birth date, sex). Use it to find the MRN for create_order."""
    patients = await _run(ctx, lambda ris, _: ris.store.list_patients(mrn, name, limit))
    return PatientList(count=len(patients), patients=patients)


async def list_orders(
    ctx: Context,
    status: Annotated[
        Literal["ORDERED", "SCHEDULED", "IN_PROGRESS", "COMPLETED", "DISCONTINUED", "CANCELLED"] | None,
        Field(description="only orders in this state"),
    ] = None,
    patient_mrn: Annotated[str | None, Field(description="only this patient's orders")] = None,
    accession_number: Annotated[
        str | None, Field(description="only the order with this accession number")
    ] = None,
    limit: Limit = 100,
) -> OrderList:
    """Imaging orders, newest first, with patient, procedure (views, expected image count), priority,
    state and stored_results (the SEG/SR stored in the PACS and the FHIR DiagnosticReports linked to
    the order). ORDERED orders are waiting for create_mwl_from_order."""
    orders = await _run(
        ctx,
        lambda ris, _: with_stored_results(
            ris.store, ris.store.list_orders(status, patient_mrn, accession_number, limit)
        ),
    )
    return OrderList(count=len(orders), orders=orders)


async def create_order(
    ctx: Context,
    patient_mrn: Annotated[str, Field(min_length=1, description="MRN from list_mini_ris_patients")],
    procedure_code: Annotated[
        ProcedureCode, Field(description="one of the 14 CR/XR procedures, or CT-ABD-LESION (the virtual CT)")
    ],
    priority: Annotated[Priority, Field(description="request priority")] = "ROUTINE",
    reason: Annotated[str | None, Field(max_length=200, description="reason for the study")] = None,
    accession_number: Annotated[
        str | None, Field(min_length=1, max_length=16, description="leave out to get a new unique one")
    ] = None,
    person: OrderPerson = None,
) -> Order:
    """Create an imaging order (state ORDERED) with a unique accession number. Next step:
    create_mwl_from_order to put it on a modality's worklist. Needs allow.ris_write."""
    services_of(ctx).require_allowed("ris_write", "Writing to the mini-RIS", person)
    return await _run(
        ctx,
        lambda ris, _: ris.store.create_order(
            patient_mrn, procedure_code, priority=priority, reason=reason, accession_number=accession_number
        ),
    )


async def create_mwl_from_order(
    ctx: Context,
    order_id: Annotated[int, Field(ge=1, description="order id from list_orders or create_order")],
    scheduled_station_aet: Annotated[
        str | None,
        Field(
            min_length=1,
            max_length=16,
            description="AE title of the modality that will do it (default: the virtual CR, "
            "mini_ris.modality.ae_title)",
        ),
    ] = None,
    scheduled_time: Annotated[
        str | None,
        Field(
            description="local start time, ISO 8601, e.g. 2025-06-01T10:30 (default: the station's next "
            "free quarter hour from now)"
        ),
    ] = None,
    person: MwlPerson = None,
) -> MwlCreated:
    """Schedule an order on the modality worklist: creates one Scheduled Procedure Step with a new
    Study Instance UID, in one transaction. Returns accession, Study Instance UID, patient,
    procedure, modality, time and the mwl id. Needs allow.ris_write."""
    services_of(ctx).require_allowed("ris_write", "Writing to the mini-RIS", person)
    when = None
    if scheduled_time is not None:
        try:
            when = datetime.fromisoformat(scheduled_time)
        except ValueError as exc:
            raise InvalidParameter(
                f"scheduled_time {scheduled_time!r} is not ISO 8601 (e.g. 2025-06-01T10:30)",
                details={"scheduled_time": scheduled_time},
            ) from exc
    station = services_of(ctx).config.mini_ris.modality
    aet = scheduled_station_aet or station.ae_title
    name = station.station_name if aet == station.ae_title else None
    e = await _run(
        ctx,
        lambda ris, _: ris.store.create_mwl(
            order_id, aet, when, station_name=name, performing_physician=None
        ),
    )
    return MwlCreated(
        success=True,
        message=f"MWL created successfully for order {order_id}",
        patient_id=e.patient.mrn,
        mwl_id=e.mwl_id,
        accession_number=e.accession_number,
        study_instance_uid=e.study_instance_uid,
        patient_mrn=e.patient.mrn,
        patient_name=e.patient.dicom_name,
        procedure_code=e.procedure.code,
        procedure=e.procedure.description,
        modality=e.modality,
        scheduled_station_aet=e.scheduled_station_aet,
        scheduled_time=datetime.strptime(e.scheduled_date + e.scheduled_time, "%Y%m%d%H%M%S").isoformat(
            timespec="minutes"
        ),
        scheduled_procedure_step_id=e.scheduled_procedure_step_id,
    )


async def list_worklist(
    ctx: Context,
    status: Annotated[
        Literal["SCHEDULED", "IN_PROGRESS", "COMPLETED", "DISCONTINUED", "CANCELLED"] | None,
        Field(description="only entries in this state (the DICOM worklist serves SCHEDULED and IN_PROGRESS)"),
    ] = None,
    date: Annotated[str | None, Field(description="scheduled date, YYYY-MM-DD or YYYYMMDD")] = None,
    station_aet: Annotated[str | None, Field(description="scheduled station AE title")] = None,
    accession_number: Annotated[str | None, Field(description="only this accession number")] = None,
    limit: Limit = 200,
) -> Worklist:
    """Worklist entries (scheduled procedure steps) in time order with patient, procedure, station
    and state; the same entries the MWL SCP serves to modalities."""
    entries = await _run(
        ctx, lambda ris, _: ris.store.list_worklist(status, date, station_aet, accession_number, limit)
    )
    return Worklist(count=len(entries), entries=entries)


async def cancel_mwl(
    ctx: Context,
    mwl_id: Annotated[int, Field(ge=1, description="worklist entry id from list_worklist")],
    person: CancelPerson = None,
) -> MwlEntry:
    """Take a SCHEDULED entry off the worklist (state CANCELLED); its order can be scheduled again.
    A started step cannot be cancelled (the modality ends it with MPPS DISCONTINUED). Needs allow.ris_write."""
    services_of(ctx).require_allowed("ris_write", "Writing to the mini-RIS", person)
    return await _run(ctx, lambda ris, _: ris.store.cancel_mwl(mwl_id))


async def create_synthetic_cr_study(
    ctx: Context,
    accession_number: Accession,
    image_mode: Annotated[
        Literal["simple", "sample", "auto", "ai"] | None,
        Field(
            description="simple: procedural anatomy outlines; sample: images shipped with the project; "
            "auto: sample when there is one, else simple; ai: external generator, falls back to simple. "
            "Default: mini_ris.modality.image_mode (auto)"
        ),
    ] = None,
    send_to_pacs: Annotated[
        bool,
        Field(
            description="C-STORE to the PACS (mini_ris.modality.pacs_node or current_node); else write files"
        ),
    ] = True,
    image_description: Annotated[
        str | None,
        Field(
            max_length=1024,
            description="what the images should show, e.g. 'pneumonia right lower lobe': stored as each "
            "image's ImageComments and sent to the ai generator (simple images cannot draw it)",
        ),
    ] = None,
    person: AcquirePerson = None,
) -> SyntheticStudy:
    """Act as the virtual CR modality for a scheduled accession: query the worklist over DICOM by
    station AE and date, send MPPS IN PROGRESS, make one synthetic image per view with the
    worklist's patient, Study Instance UID and accession, C-STORE them to the PACS, then MPPS
    COMPLETED referencing the series. Needs allow.ris_write (and allow.dicom_send to send)."""
    services = services_of(ctx)
    services.require_allowed("ris_write", "Acquiring with the virtual modality", person)
    if send_to_pacs:
        services.require_allowed("dicom_send", "Sending the synthetic study to the PACS", person)
    await ctx.report_progress(0, 3, "querying the worklist")
    mode = image_mode or services.config.mini_ris.modality.image_mode
    if image_description is not None:
        check_text(image_description, "image_description", max_length=1024)
    done = await _run(
        ctx, lambda ris, _: ris.acquire(accession_number, mode, send_to_pacs, image_description)
    )
    await ctx.report_progress(3, 3, f"MPPS {done.mpps_status}")
    pacs = services.domain(RisService).pacs_node()[0] if send_to_pacs else None
    return SyntheticStudy(
        accession_number=done.accession_number,
        study_instance_uid=done.study_instance_uid,
        series_instance_uids=done.series_instance_uids,
        sop_instance_uids=done.sop_instance_uids,
        image_count=len(done.sop_instance_uids),
        body_part=done.body_part,
        views=done.views,
        image_mode=done.image_mode,
        mpps_sop_instance_uid=done.mpps_sop_instance_uid,
        mpps_status=done.mpps_status,
        sent_to_pacs=pacs,
        sent=done.sent,
        files=done.files,
        notes=done.notes,
    )


async def get_procedure_step_status(ctx: Context, accession_number: Accession) -> ProcedureStepStatus:
    """Where an order stands: its state, its worklist entries, every MPPS (IN PROGRESS, COMPLETED,
    DISCONTINUED) with the performed series and the status history, the results those steps produced
    (images, SEG, SR) and the reports recorded for it."""

    def work(ris: RisService, _: Progress) -> ProcedureStepStatus:
        orders = ris.store.list_orders(accession_number=accession_number, limit=1)
        if not orders:
            raise RisNotFound(
                f"no order with accession {accession_number}", details={"accession": accession_number}
            )
        entries = ris.store.list_worklist(accession_number=accession_number)
        steps = [m for e in entries for m in ris.store.mpps_for_mwl(e.mwl_id)]
        return ProcedureStepStatus(
            accession_number=accession_number,
            order_status=orders[0].status,
            worklist=entries,
            performed_steps=steps,
            results=order_results(steps),
            reports=reports_for(ris.store, accession_number),
            stored_results=links_of(ris.store, [orders[0].id])[orders[0].id],
        )

    return await _run(ctx, work)


def register(server: MCPServer) -> None:
    server.add_tool(list_mini_ris_patients, title="List mini-RIS patients", annotations=READS)
    server.add_tool(list_orders, title="List imaging orders", annotations=READS)
    server.add_tool(create_order, title="Create imaging order", annotations=ADDS)
    server.add_tool(create_mwl_from_order, title="Schedule order on the worklist", annotations=ADDS)
    server.add_tool(list_worklist, title="List modality worklist", annotations=READS)
    server.add_tool(cancel_mwl, title="Cancel worklist entry", annotations=CANCELS)
    server.add_tool(
        create_synthetic_cr_study, title="Acquire synthetic CR study", annotations=ADDS_FROM_REMOTE
    )
    server.add_tool(get_procedure_step_status, title="Procedure step status", annotations=READS)
