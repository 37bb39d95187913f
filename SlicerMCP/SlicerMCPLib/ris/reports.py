"""What an order has produced: the results its performed steps list (SEG, SR, images) and its reports.

Results come from the MPPS records (the Performed Series Sequence names every instance with
its SOP class); reports are the FHIR DiagnosticReports linked to the order (ris/links.py, table `order_links`).
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from .links import link_results, links_of, order_id_of
from .models import MppsRecord, OrderLink, ResultLink
from .store import RisStore

KINDS = {
    "1.2.840.10008.5.1.4.1.1.66.4": "SEG",
    "1.2.840.10008.5.1.4.1.1.88.34": "SR",
    "1.2.840.10008.5.1.4.1.1.88.33": "SR",
    "1.2.840.10008.5.1.4.1.1.88.22": "SR",
    "1.2.840.10008.5.1.4.1.1.104.1": "PDF",
}


class OrderResult(BaseModel):
    kind: str = Field(description="SEG, SR, PDF or IMAGE")
    sop_instance_uid: str
    sop_class_uid: str
    series_instance_uid: str
    mpps_sop_instance_uid: str


class OrderReport(BaseModel):
    reference: str = Field(description="the FHIR DiagnosticReport, e.g. DiagnosticReport/123")
    status: str
    conclusion: str | None = None
    sr_sop_instance_uid: str | None = None
    recorded_at: str


def order_results(steps: list[MppsRecord]) -> list[OrderResult]:
    """Every instance the COMPLETED steps performed, SEG and SR named as such."""
    out = []
    for step in steps:
        if step.status != "COMPLETED":
            continue
        for series in step.series:
            classes = series.get("sop_classes") or [""] * len(series.get("instances") or [])
            for uid, sop_class in zip(series.get("instances") or [], classes, strict=False):
                out.append(
                    OrderResult(
                        kind=KINDS.get(sop_class, "IMAGE"),
                        sop_instance_uid=uid,
                        sop_class_uid=sop_class,
                        series_instance_uid=series.get("series_instance_uid", ""),
                        mpps_sop_instance_uid=step.sop_instance_uid,
                    )
                )
    return out


def _report_of(link: OrderLink) -> OrderReport:
    return OrderReport(
        reference=link.identifier,
        status=link.status or "",
        conclusion=link.conclusion,
        sr_sop_instance_uid=link.derived_from,
        recorded_at=link.recorded_at,
    )


def record_report(
    store: RisStore,
    accession_number: str,
    reference: str,
    status: str,
    conclusion: str | None,
    sr_uid: str | None,
) -> OrderReport:
    """Link the FHIR DiagnosticReport to the order (again: its status and conclusion are updated)."""
    new = ResultLink(
        kind="DiagnosticReport",
        identifier=reference,
        status=status,
        conclusion=conclusion,
        derived_from=sr_uid,
    )
    _, links = link_results(store, accession_number, [new])
    return _report_of(next(x for x in links if x.kind == "DiagnosticReport" and x.identifier == reference))


def reports_for(store: RisStore, accession_number: str) -> list[OrderReport]:
    order_id = order_id_of(store, accession_number)
    links = links_of(store, [order_id])[order_id]
    return [_report_of(x) for x in links if x.kind == "DiagnosticReport"]
