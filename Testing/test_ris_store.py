"""The RIS store on both back ends (SQLite file, real MariaDB): schema, orders, worklist, MPPS, faults."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from fixtures.core import free_port
from fixtures.ris import STATION_AET
from SlicerMCPLib.core.domain_config import MiniRisSettings
from SlicerMCPLib.core.errors import ErrorCode, SlicerMCPError
from SlicerMCPLib.ris.rows import procedure_of
from SlicerMCPLib.ris.schema import CT_PROCEDURES, MIGRATIONS, PROCEDURES
from SlicerMCPLib.ris.store import RisStore

WHEN = datetime(2025, 6, 12, 10, 30)


def test_migrations_run_once_and_load_reference_data(
    ris_store: RisStore, ris_settings: dict[str, Any]
) -> None:
    assert ris_store.schema_version() == len(MIGRATIONS)
    again = RisStore.open(MiniRisSettings(**ris_settings))  # a second start must not re-apply
    try:
        assert again.migrate() == len(MIGRATIONS)
        with again.db.transaction() as tx:
            rows = tx.execute(
                "SELECT code AS pr_code, description AS pr_description, modality AS pr_modality, body_part,"
                " views, image_count FROM procedures ORDER BY code"
            ).all()
        procedures = [procedure_of(r) for r in rows]
    finally:
        again.close()
    assert len(procedures) == 15 == len(PROCEDURES) + len(CT_PROCEDURES)
    chest = next(p for p in procedures if p.code == "XR-CHEST-2V")
    assert chest.views == ["PA", "LL"] and chest.image_count == 2 and chest.modality == "CR"


def test_seed_and_patient_search(seeded_store: RisStore) -> None:
    assert len(seeded_store.list_patients()) == 12
    assert [p.mrn for p in seeded_store.list_patients(mrn="MRN1005")] == ["MRN1005"]
    found = seeded_store.list_patients(name="MÜL")
    assert [(p.family_name, p.given_name) for p in found] == [("Müller", "Jürgen")]
    assert len(seeded_store.list_orders()) == 14
    assert len(seeded_store.list_worklist(status="SCHEDULED")) == 6


def test_patient_name_search_takes_like_characters_literally(seeded_store: RisStore) -> None:
    """`%` and `_` in a name fragment are text, not SQL wildcards that would list every patient."""
    assert seeded_store.list_patients(name="%") == []
    assert seeded_store.list_patients(name="_") == []
    seeded_store.add_patient("MRN9001", "O_Neil%", "Pat!")
    assert [p.mrn for p in seeded_store.list_patients(name="o_neil%")] == ["MRN9001"]
    assert [p.mrn for p in seeded_store.list_patients(name="t!")] == ["MRN9001"]


def test_order_gets_unique_accession_and_duplicates_are_refused(seeded_store: RisStore) -> None:
    a = seeded_store.create_order("MRN1001", "XR-KNEE-2V")
    b = seeded_store.create_order("MRN1001", "XR-KNEE-2V")
    assert a.accession_number != b.accession_number and a.status == "ORDERED"
    assert len(a.accession_number) <= 16
    fixed = seeded_store.create_order("MRN1002", "XR-FOOT-3V", accession_number="ACC-FIXED-1")
    assert fixed.accession_number == "ACC-FIXED-1"
    with pytest.raises(SlicerMCPError) as err:
        seeded_store.create_order("MRN1003", "XR-FOOT-3V", accession_number="ACC-FIXED-1")
    assert err.value.code == ErrorCode.RIS_CONFLICT
    assert "already used" in err.value.message
    assert len(seeded_store.list_orders(accession_number="ACC-FIXED-1")) == 1


def test_order_for_unknown_patient_or_procedure(seeded_store: RisStore) -> None:
    with pytest.raises(SlicerMCPError) as err:
        seeded_store.create_order("NOPE", "XR-KNEE-2V")
    assert err.value.code == ErrorCode.RIS_NOT_FOUND
    with pytest.raises(SlicerMCPError) as err:
        seeded_store.create_order("MRN1001", "CT-HEAD")
    assert err.value.code == ErrorCode.RIS_NOT_FOUND


def test_mwl_lifecycle_schedule_cancel_reschedule(seeded_store: RisStore) -> None:
    order = seeded_store.create_order("MRN1004", "XR-HAND-3V", priority="HIGH")
    entry = seeded_store.create_mwl(order.id, STATION_AET, WHEN, station_name="VCR01")
    assert (
        entry.status == "SCHEDULED"
        and entry.scheduled_date == "20250612"
        and entry.scheduled_time == "103000"
    )
    assert entry.study_instance_uid.startswith("1.2.") and entry.accession_number == order.accession_number
    assert entry.scheduled_procedure_step_id == f"SPS{entry.mwl_id}" and entry.priority == "HIGH"
    assert seeded_store.get_order(order.id).status == "SCHEDULED"
    with pytest.raises(SlicerMCPError) as err:
        seeded_store.create_mwl(order.id, STATION_AET, WHEN)
    assert err.value.code == ErrorCode.RIS_CONFLICT
    assert seeded_store.cancel_mwl(entry.mwl_id).status == "CANCELLED"
    with pytest.raises(SlicerMCPError) as err:
        seeded_store.cancel_mwl(entry.mwl_id)
    assert err.value.code == ErrorCode.RIS_CONFLICT
    again = seeded_store.create_mwl(order.id, STATION_AET, WHEN)
    assert again.mwl_id != entry.mwl_id and again.study_instance_uid != entry.study_instance_uid


def test_mwl_time_with_an_offset_is_stored_as_local_time(sqlite_store: RisStore) -> None:
    """The worklist holds local wall-clock times: the REST API and the tool both convert an offset."""
    aware = datetime(2025, 6, 12, 10, 30, tzinfo=timezone(timedelta(hours=5)))
    order = sqlite_store.create_order("MRN1004", "XR-HAND-3V")
    entry = sqlite_store.create_mwl(order.id, STATION_AET, aware)
    local = aware.astimezone()
    assert (entry.scheduled_date, entry.scheduled_time) == (f"{local:%Y%m%d}", f"{local:%H%M%S}")


def test_mwl_for_unknown_order_leaves_nothing_behind(seeded_store: RisStore) -> None:
    before = len(seeded_store.list_worklist())
    with pytest.raises(SlicerMCPError) as err:
        seeded_store.create_mwl(99999, STATION_AET, WHEN)
    assert err.value.code == ErrorCode.RIS_NOT_FOUND
    assert len(seeded_store.list_worklist()) == before


def test_concurrent_mwl_creation_for_one_order(seeded_store: RisStore) -> None:
    """Eight writers race to schedule one order: exactly one entry exists afterwards."""
    order = seeded_store.create_order("MRN1006", "XR-ANKLE-3V")
    start = threading.Barrier(8)
    outcomes: list[str] = []

    def schedule() -> None:
        start.wait()
        try:
            seeded_store.create_mwl(order.id, STATION_AET, WHEN)
            outcomes.append("ok")
        except SlicerMCPError as exc:
            outcomes.append(str(exc.code))

    threads = [threading.Thread(target=schedule) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(outcomes) == sorted(["ok"] + [ErrorCode.RIS_CONFLICT.value] * 7)
    assert len(seeded_store.list_worklist(accession_number=order.accession_number)) == 1


def test_mpps_state_rules(seeded_store: RisStore) -> None:
    entry = seeded_store.list_worklist(status="SCHEDULED")[0]
    rec = seeded_store.mpps_create(
        "1.2.3.4.1",
        study_instance_uid=entry.study_instance_uid,
        accession_number=entry.accession_number,
        sps_id=entry.scheduled_procedure_step_id,
        station_aet=STATION_AET,
        modality="CR",
        start_date="20250612",
        start_time="103500",
    )
    assert rec.status == "IN PROGRESS" and rec.mwl_id == entry.mwl_id
    assert seeded_store.get_mwl(entry.mwl_id).status == "IN_PROGRESS"
    with pytest.raises(SlicerMCPError) as err:  # same SOP instance twice
        seeded_store.mpps_create(
            "1.2.3.4.1",
            study_instance_uid=None,
            accession_number=None,
            sps_id=None,
            station_aet=None,
            modality=None,
            start_date=None,
            start_time=None,
        )
    assert err.value.code == ErrorCode.RIS_CONFLICT
    done = seeded_store.mpps_set(
        "1.2.3.4.1",
        "COMPLETED",
        end_date="20250612",
        end_time="104000",
        series=[{"series_instance_uid": "1.2.3.9", "instances": ["1.2.3.9.1"]}],
    )
    assert done.status == "COMPLETED" and done.end == "20250612 104000"
    assert [h["status"] for h in done.history] == ["IN PROGRESS", "COMPLETED"]
    assert seeded_store.get_mwl(entry.mwl_id).status == "COMPLETED"
    assert seeded_store.get_order(entry.order_id).status == "COMPLETED"
    with pytest.raises(SlicerMCPError) as err:  # no N-SET after the final state
        seeded_store.mpps_set("1.2.3.4.1", "DISCONTINUED")
    assert err.value.code == ErrorCode.RIS_CONFLICT
    with pytest.raises(SlicerMCPError) as err:  # unknown step
        seeded_store.mpps_set("9.9.9", "COMPLETED")
    assert err.value.code == ErrorCode.RIS_NOT_FOUND


def test_mpps_of_a_cancelled_entry_leaves_the_rescheduled_order_alone(seeded_store: RisStore) -> None:
    """A modality that still holds a cancelled entry's Study UID must not complete (or discontinue)
    the order's new worklist entry: only SCHEDULED or IN_PROGRESS steps follow the MPPS."""
    order = seeded_store.create_order("MRN1004", "XR-KNEE-2V")
    old = seeded_store.create_mwl(order.id, STATION_AET, WHEN)
    seeded_store.cancel_mwl(old.mwl_id)
    new = seeded_store.create_mwl(order.id, STATION_AET, WHEN)
    seeded_store.mpps_create(
        "1.2.3.4.3",
        study_instance_uid=old.study_instance_uid,
        accession_number=old.accession_number,
        sps_id=old.scheduled_procedure_step_id,
        station_aet=STATION_AET,
        modality="CR",
        start_date=None,
        start_time=None,
    )
    assert seeded_store.mpps_set("1.2.3.4.3", "COMPLETED").status == "COMPLETED"
    assert seeded_store.get_mwl(old.mwl_id).status == "CANCELLED"
    assert seeded_store.get_mwl(new.mwl_id).status == "SCHEDULED"
    assert seeded_store.get_order(order.id).status == "SCHEDULED"


def test_unscheduled_mpps_is_kept_without_worklist_link(seeded_store: RisStore) -> None:
    rec = seeded_store.mpps_create(
        "1.2.3.4.2",
        study_instance_uid="1.2.999",
        accession_number="X",
        sps_id="Y",
        station_aet="CR9",
        modality="CR",
        start_date=None,
        start_time=None,
    )
    assert rec.mwl_id is None and rec.status == "IN PROGRESS"


def test_database_down_mariadb() -> None:
    """Nothing listens on the port: the error names the database and says what to check."""
    settings = MiniRisSettings(backend="mysql", port=free_port(), user="ris", password="x", database="ris")
    with pytest.raises(SlicerMCPError) as err:
        RisStore.open(settings)
    assert err.value.code == ErrorCode.RIS_DATABASE_ERROR
    assert "Is MariaDB/MySQL running" in err.value.message


def test_database_stops_while_in_use(mariadb_settings: dict[str, Any], mariadb: Any) -> None:
    """The server kills our connections mid-session: the next call fails cleanly, a later one recovers."""
    store = RisStore.open(MiniRisSettings(**mariadb_settings))
    try:
        store.list_patients()
        mariadb.sql(f"KILL USER '{mariadb_settings['user']}'@'127.0.0.1'")
        assert store.list_patients() == []  # the pool notices the dead connection and reconnects
        mariadb.sql(f"DROP DATABASE {mariadb_settings['database']}")
        with pytest.raises(SlicerMCPError) as err:
            store.list_patients()
        assert err.value.code == ErrorCode.RIS_DATABASE_ERROR
    finally:
        store.close()


def test_refused_requests_keep_their_pooled_connection(
    mariadb_settings: dict[str, Any], mariadb: Any
) -> None:
    """A request the store refuses (not found, conflict) rolls back and hands its MySQL connection
    back to the pool instead of closing it: no new connection per refusal."""

    def connections() -> int:  # MariaDB's count of connection attempts (this query's own included)
        return int(mariadb.sql("SHOW GLOBAL STATUS LIKE 'Connections'").split()[1])

    store = RisStore.open(MiniRisSettings(**mariadb_settings))
    try:
        store.list_orders()
        before = connections()
        for _ in range(5):
            with pytest.raises(SlicerMCPError) as err:
                store.cancel_mwl(99999)
            assert err.value.code == ErrorCode.RIS_NOT_FOUND
        assert connections() == before + 1
    finally:
        store.close()


def test_sqlite_path_unusable(tmp_path: Any) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(SlicerMCPError) as err:
        RisStore.open(MiniRisSettings(sqlite_path=str(blocker / "ris.sqlite")))
    assert err.value.code == ErrorCode.RIS_DATABASE_ERROR
    assert "mini_ris.sqlite_path" in err.value.message


def test_dicom_mcp_config_block_selects_mysql(tmp_path: Any) -> None:
    """A dicom-mcp `mini_ris` block (no backend key) means its MySQL server, with ${ENV} passwords."""
    from SlicerMCPLib.core.config import load_config

    path = tmp_path / "config.yaml"
    path.write_text(
        "mini_ris:\n  host: localhost\n  port: 3306\n  user: orthanc_ris_app\n"
        '  password: "${MINI_RIS_DB_PASSWORD}"\n  database: orthanc_ris\n  pool_size: 5\n'
    )
    settings = load_config(path, env={"MINI_RIS_DB_PASSWORD": "s3cret"}).mini_ris
    assert (
        settings.backend == "mysql"
        and settings.password.get_secret_value() == "s3cret"
        and settings.pool_size == 5
    )
    assert load_config(env={}).mini_ris.backend == "sqlite"
    explicit = load_config(env={}, overrides={"mini_ris": {"backend": "sqlite", "sqlite_path": "x"}}).mini_ris
    assert explicit.backend == "sqlite"


def test_worklist_listens_on_loopback_unless_allowed() -> None:
    from SlicerMCPLib.core.config import load_config
    from SlicerMCPLib.core.errors import ConfigError

    with pytest.raises(ConfigError, match="mini_ris.allow_remote"):
        load_config(env={}, overrides={"mini_ris": {"mwl_host": "0.0.0.0"}})
    assert load_config(env={}, overrides={"mini_ris": {"mwl_host": "0.0.0.0", "allow_remote": True}})
