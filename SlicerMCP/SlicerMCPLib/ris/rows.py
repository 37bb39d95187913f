"""The store's SELECTs and the mapping of their rows to the models (pure functions, no I/O)."""

from __future__ import annotations

import json
from typing import Any

from .models import MppsRecord, MwlEntry, Order, Patient, Procedure

ORDER_SELECT = """
SELECT o.id AS o_id, o.accession_number, o.status AS o_status, o.priority, o.reason, o.ordered_at,
       o.requested_procedure_id,
       p.id AS p_id, p.mrn, p.family_name, p.given_name, p.birth_date, p.sex,
       pr.code AS pr_code, pr.description AS pr_description, pr.modality AS pr_modality,
       pr.body_part, pr.views, pr.image_count,
       rp.family_name AS rp_family, rp.given_name AS rp_given
FROM orders o
JOIN patients p ON p.id = o.patient_id
JOIN procedures pr ON pr.code = o.procedure_code
LEFT JOIN providers rp ON rp.id = o.referring_provider_id
"""

MWL_SELECT = ORDER_SELECT.replace(
    "SELECT o.id AS o_id,",
    "SELECT m.id AS m_id, m.status AS m_status, m.study_instance_uid, m.sps_id, m.station_aet, m.station_name,"
    " m.modality AS m_modality, m.sps_date, m.sps_time, m.performing_physician, o.id AS o_id,",
).replace("FROM orders o", "FROM mwl_entries m JOIN orders o ON o.id = m.order_id")


def patient_of(r: dict[str, Any]) -> Patient:
    return Patient(
        id=r["p_id"],
        mrn=r["mrn"],
        family_name=r["family_name"],
        given_name=r["given_name"],
        birth_date=r["birth_date"],
        sex=r["sex"],
    )


def procedure_of(r: dict[str, Any], prefix: str = "pr_") -> Procedure:
    return Procedure(
        code=r[f"{prefix}code"],
        description=r[f"{prefix}description"],
        modality=r[f"{prefix}modality"],
        body_part=r["body_part"],
        views=r["views"].split(","),
        image_count=r["image_count"],
    )


def _requested(r: dict[str, Any]) -> dict[str, Any]:
    """The request an order and its worklist entries share: accession, patient, procedure, referrer."""
    return {
        "accession_number": r["accession_number"],
        "requested_procedure_id": r["requested_procedure_id"],
        "priority": r["priority"],
        "patient": patient_of(r),
        "procedure": procedure_of(r),
        "referring_physician": f"{r['rp_family']}^{r['rp_given']}" if r.get("rp_family") else None,
    }


def order_of(r: dict[str, Any]) -> Order:
    return Order(
        id=r["o_id"], status=r["o_status"], reason=r["reason"], ordered_at=r["ordered_at"], **_requested(r)
    )


def mwl_of(r: dict[str, Any]) -> MwlEntry:
    return MwlEntry(
        mwl_id=r["m_id"],
        status=r["m_status"],
        study_instance_uid=r["study_instance_uid"],
        scheduled_procedure_step_id=r["sps_id"],
        scheduled_station_aet=r["station_aet"],
        scheduled_station_name=r["station_name"],
        modality=r["m_modality"],
        scheduled_date=r["sps_date"],
        scheduled_time=r["sps_time"],
        performing_physician=r["performing_physician"],
        order_id=r["o_id"],
        **_requested(r),
    )


def mpps_of(row: dict[str, Any], history: list[dict[str, Any]]) -> MppsRecord:
    def stamp(d: str | None, t: str | None) -> str | None:
        return f"{d} {t or ''}".strip() if d else None

    return MppsRecord(
        sop_instance_uid=row["sop_instance_uid"],
        status=row["status"],
        mwl_id=row["mwl_id"],
        station_aet=row["station_aet"],
        modality=row["modality"],
        study_instance_uid=row["study_instance_uid"],
        start=stamp(row["start_date"], row["start_time"]),
        end=stamp(row["end_date"], row["end_time"]),
        series=json.loads(row["series_json"] or "[]"),
        history=[{"status": h["status"], "at": h["changed_at"], "note": h["note"]} for h in history],
    )
