"""What an order has produced: the results its performed steps list (SEG, SR, images) and its reports.

Results come from the MPPS records (the Performed Series Sequence names every instance with
its SOP class); reports are the FHIR DiagnosticReports recorded for the order when the
procedure step was completed (table `order_reports`, migration 2).
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from .db import RisNotFound
from .models import MppsRecord
from .store import RisStore, now_iso

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


def _order_id(store: RisStore, accession_number: str) -> int:
    orders = store.list_orders(accession_number=accession_number, limit=1)
    if not orders:
        raise RisNotFound(
            f"no order with accession {accession_number}", details={"accession": accession_number}
        )
    return orders[0].id


def record_report(
    store: RisStore,
    accession_number: str,
    reference: str,
    status: str,
    conclusion: str | None,
    sr_uid: str | None,
) -> OrderReport:
    order_id = _order_id(store, accession_number)
    stamp = now_iso()
    with store.db.transaction() as tx:
        tx.execute(
            "INSERT INTO order_reports (order_id, reference, status, conclusion, sr_sop_instance_uid, recorded_at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (order_id, reference, status, conclusion, sr_uid, stamp),
        )
    return OrderReport(
        reference=reference,
        status=status,
        conclusion=conclusion,
        sr_sop_instance_uid=sr_uid,
        recorded_at=stamp,
    )


def reports_for(store: RisStore, accession_number: str) -> list[OrderReport]:
    order_id = _order_id(store, accession_number)
    with store.db.transaction() as tx:
        rows = tx.execute(
            "SELECT reference, status, conclusion, sr_sop_instance_uid, recorded_at FROM order_reports"
            " WHERE order_id = ? ORDER BY id",
            (order_id,),
        ).all()
    return [OrderReport(**row) for row in rows]
