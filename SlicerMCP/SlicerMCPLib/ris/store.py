"""The RIS store: one interface over SQLite or MySQL/MariaDB (see `db.py`).

Every write is one transaction, so an MWL entry is never half-created; UNIQUE constraints
(accession number per order, one active worklist entry per order, MPPS SOP Instance UID)
decide races between concurrent writers, not application checks.
"""

from __future__ import annotations

import json
import logging
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

from pydicom.uid import generate_uid

from ..core.breaker import CircuitBreaker
from ..core.domain_config import MiniRisSettings
from ..core.errors import InvalidParameter
from ..dicom.validation import check_ae_title, check_id, check_vr
from .db import Database, RisConflict, RisNotFound, Tx, like_literal, open_database
from .models import MppsRecord, MwlEntry, Order, Patient
from .rows import MWL_SELECT, ORDER_SELECT, mpps_of, mwl_of, order_of, patient_of
from .schema import MIGRATION_DATA, MIGRATIONS, VERSION_TABLE, render

log = logging.getLogger(__name__)

FINAL_MPPS = ("COMPLETED", "DISCONTINUED")
ACTIVE_STEPS = ("SCHEDULED", "IN_PROGRESS")  # worklist entries an MPPS may still move on


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def scheduled_day(value: str | None) -> str | None:
    """A day given as YYYYMMDD or YYYY-MM-DD, as stored (YYYYMMDD); INVALID_PARAMETER otherwise."""
    if not value:
        return None
    text = value.replace("-", "")
    try:
        datetime.strptime(text, "%Y%m%d")
    except ValueError as exc:
        raise InvalidParameter(
            f"date {value!r} is not YYYY-MM-DD or YYYYMMDD", details={"date": value}
        ) from exc
    return text


EARLIEST_YEAR = 1900  # a schedule before it is a typing error (and strftime writes year 1 as "1")


def check_schedule(when: datetime) -> None:
    """A plausible scheduled start: between 1900 and 9999 (DICOM DA holds four-digit years)."""
    if not EARLIEST_YEAR <= when.year <= 9999:
        raise InvalidParameter(
            f"scheduled time {when.isoformat()} is not between {EARLIEST_YEAR} and 9999",
            details={"scheduled_time": when.isoformat()},
        )


def dicom_date_time(when: datetime) -> tuple[str, str]:
    """DA and TM of a local time, always 8 and 6 digits (strftime drops the zeros of years < 1000)."""
    return (
        f"{when.year:04d}{when.month:02d}{when.day:02d}",
        f"{when.hour:02d}{when.minute:02d}{when.second:02d}",
    )


def _equal_filters(columns: dict[str, Any]) -> tuple[str, list[Any]]:
    """`col = ?` for every given value; the column names are fixed strings of this module."""
    given = {c: v for c, v in columns.items() if v}
    return " AND ".join(["1=1", *(f"{c} = ?" for c in given)]), list(given.values())


class RisStore:
    """Patients, orders, worklist entries and MPPS records, whichever database holds them."""

    def __init__(self, db: Database):
        self.db = db

    @classmethod
    def open(
        cls, settings: MiniRisSettings, *, migrate: bool = True, breaker: CircuitBreaker | None = None
    ) -> RisStore:
        store = cls(open_database(settings, breaker))
        if migrate:
            store.migrate()
        return store

    def close(self) -> None:
        self.db.close()

    # -- schema ------------------------------------------------------------------------------------

    def schema_version(self) -> int:
        with self.db.transaction() as tx:
            tx.execute(render(VERSION_TABLE, self.db.dialect))
            row = tx.execute("SELECT MAX(version) AS v FROM schema_version").one()
        return int(row["v"] or 0) if row else 0

    def migrate(self, up_to: int | None = None) -> int:
        """Apply the migrations above the recorded version, up to `up_to` (default all); returns it."""
        current = self.schema_version()
        for number, statements in enumerate(MIGRATIONS, start=1):
            if number <= current or (up_to is not None and number > up_to):
                continue
            with self.db.transaction() as tx:
                for statement in statements:
                    tx.execute(render(statement, self.db.dialect))
                for sql, rows in MIGRATION_DATA.get(number, []):
                    tx.executemany(sql, rows)
                tx.execute(
                    "INSERT INTO schema_version (version, applied_at) VALUES (?, ?)", (number, now_iso())
                )
            log.info("RIS schema migrated to version %d (%s)", number, self.db.describe)
            current = number
        return current

    def is_empty(self) -> bool:
        with self.db.transaction() as tx:
            row = tx.execute("SELECT COUNT(*) AS n FROM patients").one()
        return not row or int(row["n"]) == 0

    # -- reference data and people -----------------------------------------------------------------

    def add_patient(
        self,
        mrn: str,
        family_name: str,
        given_name: str,
        birth_date: str | None = None,
        sex: str | None = None,
    ) -> Patient:
        with self.db.transaction() as tx:
            tx.execute(
                "INSERT INTO patients (mrn, family_name, given_name, birth_date, sex, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (mrn, family_name, given_name, birth_date, sex, now_iso()),
            )
            pid = tx.lastrowid
        return Patient(
            id=pid, mrn=mrn, family_name=family_name, given_name=given_name, birth_date=birth_date, sex=sex
        )

    def add_provider(self, family_name: str, given_name: str, role: str) -> int:
        with self.db.transaction() as tx:
            tx.execute(
                "INSERT INTO providers (family_name, given_name, role) VALUES (?, ?, ?)",
                (family_name, given_name, role),
            )
            return tx.lastrowid

    def add_encounter(self, patient_id: int, encounter_class: str, location: str | None = None) -> int:
        with self.db.transaction() as tx:
            tx.execute(
                "INSERT INTO encounters (patient_id, encounter_class, location, started_at) VALUES (?, ?, ?, ?)",
                (patient_id, encounter_class, location, now_iso()),
            )
            return tx.lastrowid

    def list_patients(
        self, mrn: str | None = None, name: str | None = None, limit: int = 100
    ) -> list[Patient]:
        """Exact MRN, or a name fragment matched against family or given name (case-insensitive)."""
        mrn = check_vr(mrn, "LO", "mrn", required=False) if mrn is not None else None
        name = check_vr(name, "LO", "name", required=False) if name is not None else None
        sql = "SELECT id AS p_id, mrn, family_name, given_name, birth_date, sex FROM patients WHERE 1=1"
        params: list[Any] = []
        if mrn:
            sql += " AND mrn = ?"
            params.append(mrn)
        if name:
            sql += " AND (LOWER(family_name) LIKE ? ESCAPE '!' OR LOWER(given_name) LIKE ? ESCAPE '!')"
            fragment = f"%{like_literal(name.lower())}%"
            params += [fragment, fragment]
        sql += " ORDER BY family_name, given_name, id LIMIT ?"
        params.append(limit)
        with self.db.transaction() as tx:
            return [patient_of(r) for r in tx.execute(sql, params).all()]

    # -- orders ------------------------------------------------------------------------------------

    def create_order(
        self,
        patient_mrn: str,
        procedure_code: str,
        *,
        priority: str = "ROUTINE",
        reason: str | None = None,
        referring_provider_id: int | None = None,
        encounter_id: int | None = None,
        accession_number: str | None = None,
    ) -> Order:
        """A new order with a unique accession number (generated unless given)."""
        given = accession_number is not None
        if given:  # a DICOM SH value, compared without surrounding spaces on both stores
            accession_number = check_vr(accession_number, "SH", "accession_number")
        priority = check_vr(priority, "CS", "priority")
        if reason is not None:
            reason = check_vr(reason, "LO", "reason", required=False) or None
        for _attempt in range(5):
            accession = accession_number or f"A{datetime.now(UTC):%y%m%d}{secrets.randbelow(10**8):08d}"
            try:
                with self.db.transaction() as tx:
                    patient = tx.execute("SELECT id FROM patients WHERE mrn = ?", (patient_mrn,)).one()
                    if patient is None:
                        raise RisNotFound(
                            f"no patient with MRN {patient_mrn!r}; list_mini_ris_patients shows the known ones",
                            details={"mrn": patient_mrn},
                        )
                    proc = tx.execute("SELECT code FROM procedures WHERE code = ?", (procedure_code,)).one()
                    if proc is None:
                        raise RisNotFound(
                            f"unknown procedure code {procedure_code!r}",
                            details={
                                "procedure_code": procedure_code,
                                "known": [
                                    r["code"]
                                    for r in tx.execute("SELECT code FROM procedures ORDER BY code").all()
                                ],
                            },
                        )
                    tx.execute(
                        "INSERT INTO orders (accession_number, patient_id, encounter_id, procedure_code,"
                        " referring_provider_id, priority, reason, status, requested_procedure_id, ordered_at)"
                        " VALUES (?, ?, ?, ?, ?, ?, ?, 'ORDERED', ?, ?)",
                        (
                            accession,
                            patient["id"],
                            encounter_id,
                            procedure_code,
                            referring_provider_id,
                            priority,
                            reason,
                            accession,
                            now_iso(),
                        ),
                    )
                    order_id = tx.lastrowid
            except RisConflict as exc:
                if given:
                    raise RisConflict(
                        f"accession number {accession!r} is already used by another order; "
                        "leave it out to get a new one",
                        details={"accession_number": accession},
                    ) from exc
                continue
            log.info("order %d created (accession %s)", order_id, accession)
            return self.get_order(order_id)
        raise RisConflict("could not generate a unique accession number; retry")

    def get_order(self, order_id: int) -> Order:
        order_id = check_id(order_id, "order_id")
        with self.db.transaction() as tx:
            row = tx.execute(ORDER_SELECT + " WHERE o.id = ?", (order_id,)).one()
        if row is None:
            raise RisNotFound(
                f"no order with id {order_id}; list_orders shows them", details={"order_id": order_id}
            )
        return order_of(row)

    def list_orders(
        self,
        status: str | None = None,
        patient_mrn: str | None = None,
        accession_number: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[Order]:
        if accession_number is not None:
            accession_number = check_vr(accession_number, "SH", "accession_number", required=False)
        where, params = _equal_filters(
            {"o.status": status, "p.mrn": patient_mrn, "o.accession_number": accession_number}
        )
        sql = ORDER_SELECT + f" WHERE {where} ORDER BY o.id DESC LIMIT ? OFFSET ?"
        with self.db.transaction() as tx:
            return [order_of(r) for r in tx.execute(sql, [*params, limit, offset]).all()]

    def count_orders(
        self, status: str | None = None, patient_mrn: str | None = None, accession_number: str | None = None
    ) -> int:
        """How many orders `list_orders` would page through with these filters."""
        if accession_number is not None:
            accession_number = check_vr(accession_number, "SH", "accession_number", required=False)
        where, params = _equal_filters(
            {"o.status": status, "p.mrn": patient_mrn, "o.accession_number": accession_number}
        )
        return self._count(ORDER_SELECT + f" WHERE {where}", params)

    def _count(self, select: str, params: list[Any]) -> int:
        with self.db.transaction() as tx:
            row = tx.execute(f"SELECT COUNT(*) AS n FROM ({select}) AS matched", params).one()
        return int(row["n"]) if row else 0

    # -- worklist ----------------------------------------------------------------------------------

    def create_mwl(
        self,
        order_id: int,
        station_aet: str,
        scheduled: datetime | None,
        *,
        station_name: str | None = None,
        performing_physician: str | None = None,
    ) -> MwlEntry:
        """Schedule the order: one worklist entry with a new Study Instance UID, all or nothing.
        The worklist holds local wall-clock times: a time with an offset is converted to local time;
        no time means the station's next free slot from now (`SLOT_MINUTES` apart)."""
        order_id = check_id(order_id, "order_id")
        check_ae_title(station_aet, "scheduled_station_aet")
        if station_name is not None:
            station_name = check_vr(station_name, "SH", "scheduled_station_name", required=False) or None
        if performing_physician is not None:
            performing_physician = (
                check_vr(performing_physician, "PN", "performing_physician", required=False) or None
            )
        if scheduled is not None and scheduled.tzinfo is not None:
            scheduled = scheduled.astimezone().replace(tzinfo=None)
        if scheduled is not None:
            check_schedule(scheduled)
        stamp = now_iso()
        try:
            with self.db.transaction() as tx:
                order = tx.execute(
                    "SELECT o.status, pr.modality FROM orders o JOIN procedures pr ON pr.code = o.procedure_code"
                    " WHERE o.id = ?",
                    (order_id,),
                ).one()
                if order is None:
                    raise RisNotFound(
                        f"no order with id {order_id}; list_orders shows them", details={"order_id": order_id}
                    )
                if order["status"] not in ("ORDERED", "CANCELLED"):
                    raise RisConflict(
                        f"order {order_id} is already {order['status']}; it has a worklist entry "
                        "(list_worklist shows it, cancel_mwl frees the order)",
                        details={"order_id": order_id, "status": order["status"]},
                    )
                if scheduled is None:
                    scheduled = _next_free_slot(tx, station_aet, datetime.now())
                sps_date, sps_time = dicom_date_time(scheduled)
                tx.execute(
                    "INSERT INTO mwl_entries (order_id, active_order_id, study_instance_uid, sps_id, station_aet,"
                    " station_name, modality, sps_date, sps_time, performing_physician, status, created_at, updated_at)"
                    " VALUES (?, ?, ?, '', ?, ?, ?, ?, ?, ?, 'SCHEDULED', ?, ?)",
                    (
                        order_id,
                        order_id,
                        generate_uid(),
                        station_aet,
                        station_name,
                        order["modality"],
                        sps_date,
                        sps_time,
                        performing_physician,
                        stamp,
                        stamp,
                    ),
                )
                mwl_id = tx.lastrowid
                tx.execute("UPDATE mwl_entries SET sps_id = ? WHERE id = ?", (f"SPS{mwl_id}", mwl_id))
                tx.execute("UPDATE orders SET status = 'SCHEDULED' WHERE id = ?", (order_id,))
        except RisConflict as exc:
            if exc.details.get("order_id") == order_id:
                raise
            raise RisConflict(
                f"order {order_id} already has an active worklist entry; list_worklist shows it",
                details={"order_id": order_id},
            ) from exc
        log.info("MWL entry %d scheduled for order %d on %s", mwl_id, order_id, station_aet)
        return self.get_mwl(mwl_id)

    def get_mwl(self, mwl_id: int) -> MwlEntry:
        mwl_id = check_id(mwl_id, "mwl_id")
        rows = self.worklist_rows("m.id = ?", [mwl_id])
        if not rows:
            raise RisNotFound(
                f"no worklist entry {mwl_id}; list_worklist shows them", details={"mwl_id": mwl_id}
            )
        return rows[0]

    def worklist_rows(
        self, where: str = "1=1", params: list[Any] | None = None, limit: int | None = None, offset: int = 0
    ) -> list[MwlEntry]:
        """Worklist entries joined with order, patient and procedure; `where` is a fixed SQL
        fragment with `?` placeholders (never user text)."""
        sql = MWL_SELECT + f" WHERE {where} ORDER BY m.sps_date, m.sps_time, m.id"
        params = list(params or [])
        if limit is not None:
            sql += " LIMIT ? OFFSET ?"
            params += [limit, offset]
        with self.db.transaction() as tx:
            return [mwl_of(r) for r in tx.execute(sql, params).all()]

    def list_worklist(
        self,
        status: str | None = None,
        date: str | None = None,
        station_aet: str | None = None,
        accession_number: str | None = None,
        limit: int = 200,
        offset: int = 0,
    ) -> list[MwlEntry]:
        """Entries by state, scheduled day (YYYYMMDD or YYYY-MM-DD), station and accession."""
        where, params = self._worklist_filters(status, date, station_aet, accession_number)
        return self.worklist_rows(where, params, limit, offset)

    def count_worklist(
        self,
        status: str | None = None,
        date: str | None = None,
        station_aet: str | None = None,
        accession_number: str | None = None,
    ) -> int:
        """How many entries `list_worklist` would page through with these filters."""
        where, params = self._worklist_filters(status, date, station_aet, accession_number)
        return self._count(MWL_SELECT + f" WHERE {where}", params)

    @staticmethod
    def _worklist_filters(
        status: str | None, date: str | None, station_aet: str | None, accession_number: str | None
    ) -> tuple[str, list[Any]]:
        if accession_number is not None:
            accession_number = check_vr(accession_number, "SH", "accession_number", required=False)
        return _equal_filters(
            {
                "m.status": status,
                "m.sps_date": scheduled_day(date),
                "m.station_aet": station_aet,
                "o.accession_number": accession_number,
            }
        )

    def cancel_mwl(self, mwl_id: int) -> MwlEntry:
        """Take a scheduled entry off the worklist; the order can be scheduled again."""
        mwl_id = check_id(mwl_id, "mwl_id")
        with self.db.transaction() as tx:
            row = tx.execute("SELECT status, order_id FROM mwl_entries WHERE id = ?", (mwl_id,)).one()
            if row is None:
                raise RisNotFound(
                    f"no worklist entry {mwl_id}; list_worklist shows them", details={"mwl_id": mwl_id}
                )
            if row["status"] != "SCHEDULED":
                raise RisConflict(
                    f"worklist entry {mwl_id} is {row['status']}; only SCHEDULED entries can be cancelled "
                    "(a started step ends with MPPS DISCONTINUED)",
                    details={"mwl_id": mwl_id, "status": row["status"]},
                )
            tx.execute(
                "UPDATE mwl_entries SET status = 'CANCELLED', active_order_id = NULL, updated_at = ? WHERE id = ?",
                (now_iso(), mwl_id),
            )
            tx.execute("UPDATE orders SET status = 'CANCELLED' WHERE id = ?", (row["order_id"],))
        return self.get_mwl(mwl_id)

    # -- MPPS --------------------------------------------------------------------------------------

    def mpps_create(
        self,
        sop_instance_uid: str,
        *,
        study_instance_uid: str | None,
        accession_number: str | None,
        sps_id: str | None,
        station_aet: str | None,
        modality: str | None,
        start_date: str | None,
        start_time: str | None,
        series: list[dict[str, Any]] | None = None,
    ) -> MppsRecord:
        """Record a new step IN PROGRESS; links it to the worklist entry it performs, if known."""
        stamp = now_iso()
        with self.db.transaction() as tx:
            mwl = self._find_mwl(tx, study_instance_uid, accession_number, sps_id)
            tx.execute(
                "INSERT INTO mpps (sop_instance_uid, mwl_id, status, station_aet, modality, study_instance_uid,"
                " start_date, start_time, series_json, created_at, updated_at)"
                " VALUES (?, ?, 'IN PROGRESS', ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    sop_instance_uid,
                    mwl["id"] if mwl else None,
                    station_aet,
                    modality,
                    study_instance_uid,
                    start_date,
                    start_time,
                    json.dumps(series or []),
                    stamp,
                    stamp,
                ),
            )
            self._history(tx, sop_instance_uid, "IN PROGRESS", "N-CREATE")
            if mwl and mwl["status"] == "SCHEDULED":
                self._set_step_status(tx, mwl["id"], mwl["order_id"], "IN_PROGRESS")
        return self.get_mpps(sop_instance_uid)

    def mpps_set(
        self,
        sop_instance_uid: str,
        status: str | None,
        *,
        end_date: str | None = None,
        end_time: str | None = None,
        series: list[dict[str, Any]] | None = None,
    ) -> MppsRecord:
        """Update a step that is still IN PROGRESS; a final step (COMPLETED, DISCONTINUED) is frozen."""
        with self.db.transaction() as tx:
            row = tx.execute(
                "SELECT m.status, m.mwl_id, w.order_id, w.status AS step_status"
                " FROM mpps m LEFT JOIN mwl_entries w ON w.id = m.mwl_id"
                " WHERE m.sop_instance_uid = ?",
                (sop_instance_uid,),
            ).one()
            if row is None:
                raise RisNotFound(
                    f"no MPPS instance {sop_instance_uid}", details={"sop_instance_uid": sop_instance_uid}
                )
            if row["status"] in FINAL_MPPS:
                raise RisConflict(
                    f"MPPS {sop_instance_uid} is already {row['status']} and may no longer be updated",
                    details={"sop_instance_uid": sop_instance_uid, "status": row["status"]},
                )
            new_status = status or row["status"]
            sets, params = ["status = ?", "updated_at = ?"], [new_status, now_iso()]
            for column, value in (("end_date", end_date), ("end_time", end_time)):
                if value is not None:
                    sets.append(f"{column} = ?")
                    params.append(value)
            if series is not None:
                sets.append("series_json = ?")
                params.append(json.dumps(series))
            tx.execute(
                f"UPDATE mpps SET {', '.join(sets)} WHERE sop_instance_uid = ?", [*params, sop_instance_uid]
            )
            if new_status != row["status"]:
                self._history(tx, sop_instance_uid, new_status, "N-SET")
                # a cancelled (maybe rescheduled) or already finished step keeps its state
                if row["step_status"] in ACTIVE_STEPS:
                    self._set_step_status(tx, row["mwl_id"], row["order_id"], new_status.replace(" ", "_"))
        return self.get_mpps(sop_instance_uid)

    def get_mpps(self, sop_instance_uid: str) -> MppsRecord:
        with self.db.transaction() as tx:
            row = tx.execute("SELECT * FROM mpps WHERE sop_instance_uid = ?", (sop_instance_uid,)).one()
            if row is None:
                raise RisNotFound(
                    f"no MPPS instance {sop_instance_uid}", details={"sop_instance_uid": sop_instance_uid}
                )
            history = tx.execute(
                "SELECT status, changed_at, note FROM mpps_history WHERE sop_instance_uid = ? ORDER BY id",
                (sop_instance_uid,),
            ).all()
        return mpps_of(row, history)

    def mpps_for_mwl(self, mwl_id: int) -> list[MppsRecord]:
        with self.db.transaction() as tx:
            uids = [
                r["sop_instance_uid"]
                for r in tx.execute(
                    "SELECT sop_instance_uid FROM mpps WHERE mwl_id = ? ORDER BY created_at", (mwl_id,)
                ).all()
            ]
        return [self.get_mpps(uid) for uid in uids]

    @staticmethod
    def _find_mwl(
        tx: Tx, study_uid: str | None, accession: str | None, sps_id: str | None
    ) -> dict[str, Any] | None:
        if study_uid:
            sql = (
                "SELECT m.id, m.status, m.order_id, m.sps_id, o.accession_number FROM mwl_entries m"
                " JOIN orders o ON o.id = m.order_id WHERE m.study_instance_uid = ?"
            )
            row = tx.execute(sql, (study_uid,)).one()
            if (
                row
                and (not sps_id or row["sps_id"] == sps_id)
                and (not accession or row["accession_number"] == accession)
            ):
                return row
        return None

    @staticmethod
    def _history(tx: Tx, uid: str, status: str, note: str) -> None:
        tx.execute(
            "INSERT INTO mpps_history (sop_instance_uid, status, changed_at, note) VALUES (?, ?, ?, ?)",
            (uid, status, now_iso(), note),
        )

    @staticmethod
    def _set_step_status(tx: Tx, mwl_id: int, order_id: int, status: str) -> None:
        tx.execute(
            "UPDATE mwl_entries SET status = ?, updated_at = ? WHERE id = ?", (status, now_iso(), mwl_id)
        )
        tx.execute("UPDATE orders SET status = ? WHERE id = ?", (status, order_id))


SLOT_MINUTES = 15


def _next_free_slot(tx: Tx, station_aet: str, now: datetime) -> datetime:
    """The first quarter hour from `now` at which `station_aet` has no scheduled step."""
    taken = {
        (row["sps_date"], row["sps_time"])
        for row in tx.execute(
            "SELECT sps_date, sps_time FROM mwl_entries WHERE station_aet = ? AND status = 'SCHEDULED'"
            " AND sps_date >= ?",
            (station_aet, now.strftime("%Y%m%d")),
        ).all()
    }
    slot = now.replace(second=0, microsecond=0)
    slot += timedelta(minutes=-slot.minute % SLOT_MINUTES or SLOT_MINUTES)
    while (slot.strftime("%Y%m%d"), slot.strftime("%H%M%S")) in taken:
        slot += timedelta(minutes=SLOT_MINUTES)
    return slot
