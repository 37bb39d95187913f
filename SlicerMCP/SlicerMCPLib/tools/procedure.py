"""Closing the loop on the RIS: the reading step performed (MPPS COMPLETED with its SEG and SR) and
the report recorded with the order.

SlicerMCP acts as the post-processing workstation: it sends its own MPPS (N-CREATE, then N-SET
COMPLETED listing the results it stored) to the RIS's MPPS SCP over DICOM, as a modality does,
and records the FHIR DiagnosticReport on the order.
"""

from __future__ import annotations

from typing import Annotated

from mcp.server.mcpserver import Context, MCPServer
from pydantic import BaseModel, Field

from ..core.errors import InvalidParameter
from ..core.progress import Progress
from ..core.services import services_of
from ..dicom.service import DicomService
from ..ris.db import RisNotFound
from ..ris.links import link_results, object_link
from ..ris.models import OrderLink
from ..ris.mpps_scu import perform_step, series_item
from ..ris.reports import OrderReport, OrderResult, order_results, record_report
from ..ris.service import RisService
from ..ris.virtual_ct import VirtualCT
from .annotations import ADDS_FROM_REMOTE
from .results import results_registry
from .running import DomainRunner

_run = DomainRunner(RisService)


class CompletedStep(BaseModel):
    accession_number: str
    mpps_sop_instance_uid: str
    mpps_status: str
    performed_series: list[str] = Field(description="Series Instance UIDs the step lists")
    results: list[OrderResult] = Field(description="what the order now shows as produced")
    report: OrderReport | None = None
    stored_results: list[OrderLink] = Field(
        default_factory=list, description="SEG, SR and DiagnosticReports the order lists now"
    )


async def complete_procedure_step(
    ctx: Context,
    accession_number: Annotated[
        str, Field(min_length=1, max_length=16, description="the order's accession number")
    ],
    sop_instance_uids: Annotated[
        list[str],
        Field(min_length=1, max_length=100, description="stored SEG/SR UIDs (store_results_to_pacs)"),
    ],
    diagnostic_report: Annotated[
        str | None, Field(description="the FHIR report to record with the order, e.g. DiagnosticReport/12")
    ] = None,
    report_status: Annotated[str, Field(max_length=16, description="the report's status")] = "preliminary",
    conclusion: Annotated[
        str | None, Field(max_length=4000, description="the report's conclusion, shown with the order")
    ] = None,
) -> CompletedStep:
    """Tell the RIS the reading step is done: a Modality Performed Procedure Step (N-CREATE, then N-SET
    COMPLETED) for the order's worklist entry listing the SEG and SR series (Referenced Non-Image
    Composite SOP Instance Sequence), sent over DICOM to the mini-RIS MPPS SCP; the SEG, SR and the FHIR
    report are linked to the order. Returns what the order shows afterwards. Needs allow.ris_write."""
    services = services_of(ctx)
    services.require_allowed("ris_write", "Completing a procedure step on the mini-RIS")
    objects = results_registry(services).datasets_for(sop_instance_uids)
    dicom = services.domain(DicomService)
    pacs_aet = dicom.node()[1].ae_title if dicom.current else ""
    by_series: dict[str, list] = {}
    for _, ds, _ in objects:
        by_series.setdefault(str(ds.SeriesInstanceUID), []).append(ds)
    series = [
        series_item(
            uid,
            str(items[0].get("SeriesDescription", "") or items[0].Modality),
            "Segmentation and quantification",
            [(str(d.SOPClassUID), str(d.SOPInstanceUID)) for d in items],
            pacs_aet,
        )
        for uid, items in by_series.items()
    ]
    modality = (
        "SEG" if any(str(ds.Modality) == "SEG" for _, ds, _ in objects) else str(objects[0][1].Modality)
    )

    def work(ris: RisService, _: Progress) -> CompletedStep:
        entries = ris.store.list_worklist(accession_number=accession_number)
        if not entries:
            raise RisNotFound(
                f"accession {accession_number} has no worklist entry; schedule it with create_mwl_from_order",
                details={"accession": accession_number},
            )
        if str(objects[0][1].StudyInstanceUID) != entries[0].study_instance_uid:
            raise InvalidParameter(
                "the results belong to another study than the order's worklist entry",
                details={"study_instance_uid": str(objects[0][1].StudyInstanceUID)},
            )
        uid = perform_step(
            ris.ensure_scp(),
            dicom.calling_aet,
            entries[0],
            series,
            modality=modality,
            description="Reading and quantification",
        )
        produced = [object_link(kind, ds) for kind, ds, _ in objects if kind in ("SEG", "SR")]
        _, shown = link_results(ris.store, accession_number, produced)
        report = None
        if diagnostic_report:
            sr_uid = next((str(ds.SOPInstanceUID) for kind, ds, _ in objects if kind == "SR"), None)
            report = record_report(
                ris.store, accession_number, diagnostic_report, report_status, conclusion, sr_uid
            )
            _, shown = link_results(ris.store, accession_number, [])
        steps = [m for e in entries for m in ris.store.mpps_for_mwl(e.mwl_id)]
        record = ris.store.get_mpps(uid)
        return CompletedStep(
            accession_number=accession_number,
            mpps_sop_instance_uid=uid,
            mpps_status=record.status,
            performed_series=[x["series_instance_uid"] for x in record.series],
            results=order_results(steps),
            report=report,
            stored_results=shown,
        )

    return await _run(ctx, work)


class SyntheticCtStudy(BaseModel):
    accession_number: str
    study_instance_uid: str
    series_instance_uid: str
    image_count: int
    mpps_sop_instance_uid: str
    mpps_status: str
    lesion_diameter_mm: float
    lesion_volume_mm3: float = Field(description="the lesion's true volume, 4/3 pi r^3")
    lesion_volume_ml: float
    lesion_hu: int = Field(description="the lesion's density; the body around it is body_hu (noise sd 8 HU)")
    body_hu: int
    sent_to_pacs: str


async def create_synthetic_ct_study(
    ctx: Context,
    accession_number: Annotated[
        str, Field(min_length=1, max_length=16, description="a scheduled CT-ABD-LESION order")
    ],
    lesion_diameter_mm: Annotated[
        float, Field(ge=6.0, le=40.0, description="the spherical lesion's diameter")
    ] = 20.0,
) -> SyntheticCtStudy:
    """Act as a virtual CT for a scheduled CT-ABD-LESION accession: worklist C-FIND by station AE,
    MPPS IN PROGRESS, an axial 48-slice CT (0.8 x 0.8 x 1.5 mm) of a phantom with one spherical
    lesion of known volume and a small calcification, C-STORE to the PACS, MPPS COMPLETED.
    Returns the UIDs and the lesion's true volume. Needs allow.ris_write and allow.dicom_send."""
    services = services_of(ctx)
    services.require_allowed("ris_write", "Acquiring with the virtual modality")
    services.require_allowed("dicom_send", "Sending the synthetic study to the PACS")

    def work(ris: RisService, _: Progress) -> SyntheticCtStudy:
        entries = [
            e for e in ris.store.list_worklist(accession_number=accession_number) if e.status == "SCHEDULED"
        ]
        if not entries or entries[0].modality != "CT":
            raise RisNotFound(
                f"accession {accession_number} has no SCHEDULED CT worklist entry; order CT-ABD-LESION and "
                "schedule it with create_mwl_from_order",
                details={"accession_number": accession_number},
            )
        entry = entries[0]
        station = VirtualCT(entry.scheduled_station_aet, ris.settings.modality.station_name, ris.ensure_scp())
        pacs_name, pacs = ris.pacs_node()
        done = station.acquire_ct(accession_number, entry.scheduled_date, pacs, lesion_diameter_mm)
        return SyntheticCtStudy(
            accession_number=accession_number,
            study_instance_uid=done.study_instance_uid,
            series_instance_uid=done.series_instance_uid,
            image_count=len(done.sop_instance_uids),
            mpps_sop_instance_uid=done.mpps_sop_instance_uid,
            mpps_status=done.mpps_status,
            lesion_diameter_mm=done.lesion_diameter_mm,
            lesion_volume_mm3=round(done.lesion_volume_mm3, 3),
            lesion_volume_ml=round(done.lesion_volume_mm3 / 1000, 6),
            lesion_hu=done.lesion_hu,
            body_hu=done.body_hu,
            sent_to_pacs=pacs_name,
        )

    return await _run(ctx, work)


def register(server: MCPServer) -> None:
    server.add_tool(
        create_synthetic_ct_study, title="Acquire synthetic CT study", annotations=ADDS_FROM_REMOTE
    )
    server.add_tool(
        complete_procedure_step, title="Complete procedure step (MPPS)", annotations=ADDS_FROM_REMOTE
    )
