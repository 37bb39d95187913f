"""The mini-RIS against hostile input (issue: RIS hardening): every finding of the adversarial run
has a test here, on both stores where the store decides (SQLite file and real MariaDB), through the
real REST API and a real pynetdicom C-FIND where the wire decides."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import httpx
import pytest

from fixtures.ris import SPS, STATION_AET, mwl_query, worklist_query
from SlicerMCPLib.core.errors import ErrorCode, SlicerMCPError
from SlicerMCPLib.dicom.status import Status
from SlicerMCPLib.ris.store import RisStore

BAD_AE = "Zoë山田"


def code_of(call: Any) -> str:
    with pytest.raises(SlicerMCPError) as err:
        call()
    return str(err.value.code)


# 1. values are checked against their VR on the way in; one bad stored row never cuts a worklist short


def test_non_ascii_station_ae_is_refused_before_anything_is_written(seeded_store: RisStore) -> None:
    order = seeded_store.create_order("MRN1004", "XR-HAND-3V")
    before = len(seeded_store.list_worklist())
    assert (
        code_of(lambda: seeded_store.create_mwl(order.id, BAD_AE, datetime(2025, 6, 12, 10)))
        == ErrorCode.INVALID_PARAMETER
    )
    assert (
        code_of(
            lambda: seeded_store.create_mwl(
                order.id, STATION_AET, datetime(2025, 6, 12, 10), station_name="x\\y"
            )
        )
        == ErrorCode.INVALID_PARAMETER
    )
    assert len(seeded_store.list_worklist()) == before
    assert seeded_store.get_order(order.id).status == "ORDERED"


def test_a_stored_row_dicom_cannot_carry_is_left_out_not_the_whole_answer(
    sqlite_store: RisStore, ris_scp: Any
) -> None:
    entries = sqlite_store.list_worklist()
    with sqlite_store.db.transaction() as tx:  # as written by an older version that did not check values
        tx.execute("UPDATE mwl_entries SET station_aet = ? WHERE id = ?", (BAD_AE, entries[0].mwl_id))
    query = mwl_query(PatientName="", AccessionNumber="", sps={"ScheduledStationAETitle": "", "Modality": ""})
    statuses, found = worklist_query(ris_scp.port, query)
    assert statuses[-1] == 0x0000  # success: the answer is complete except for the one row
    assert len(found) == len(entries) - 1
    assert entries[0].accession_number not in {ds.AccessionNumber for ds in found}
    assert all(ds[SPS][0].ScheduledStationAETitle for ds in found)


# 4. dates are validated before writing; nothing is committed by a call that reports an error


@pytest.mark.parametrize("when", [datetime(1, 1, 1, 0, 0), datetime(999, 12, 31, 10, 0)])
def test_implausible_schedule_years_are_refused_and_commit_nothing(
    seeded_store: RisStore, when: datetime
) -> None:
    order = seeded_store.create_order("MRN1004", "XR-HAND-3V")
    before = len(seeded_store.list_worklist())
    assert (
        code_of(lambda: seeded_store.create_mwl(order.id, STATION_AET, when)) == ErrorCode.INVALID_PARAMETER
    )
    assert (
        len(seeded_store.list_worklist()) == before and seeded_store.get_order(order.id).status == "ORDERED"
    )


def test_years_are_written_with_four_digits(seeded_store: RisStore) -> None:
    order = seeded_store.create_order("MRN1004", "XR-HAND-3V")
    entry = seeded_store.create_mwl(order.id, STATION_AET, datetime(1905, 3, 4, 5, 6, 7))
    assert (entry.scheduled_date, entry.scheduled_time) == ("19050304", "050607")


# 6 and 7: the same coded answer from both stores


@pytest.mark.parametrize("row_id", [10**30, 0, -1, True, 17.9, "1"])
def test_ids_out_of_range_or_of_the_wrong_type_are_coded_alike(seeded_store: RisStore, row_id: Any) -> None:
    assert code_of(lambda: seeded_store.cancel_mwl(row_id)) == ErrorCode.INVALID_PARAMETER
    assert code_of(lambda: seeded_store.get_order(row_id)) == ErrorCode.INVALID_PARAMETER
    assert code_of(lambda: seeded_store.create_mwl(row_id, STATION_AET, None)) == ErrorCode.INVALID_PARAMETER


def test_accession_numbers_are_compared_as_dicom_does_on_both_stores(seeded_store: RisStore) -> None:
    first = seeded_store.create_order("MRN1004", "XR-HAND-3V", accession_number="SPSQ74656")
    assert first.accession_number == "SPSQ74656"
    assert (
        code_of(lambda: seeded_store.create_order("MRN1004", "XR-HAND-3V", accession_number="SPSQ74656 "))
        == ErrorCode.RIS_CONFLICT
    )
    assert (
        code_of(lambda: seeded_store.create_order("MRN1004", "XR-HAND-3V", accession_number="   "))
        == ErrorCode.INVALID_PARAMETER
    )
    assert [o.id for o in seeded_store.list_orders(accession_number="SPSQ74656 ")] == [first.id]


@pytest.mark.parametrize("name", ["a\x00b", "x" * 1_000_000])
def test_patient_search_with_control_characters_or_huge_text_is_refused(
    seeded_store: RisStore, name: str
) -> None:
    with pytest.raises(SlicerMCPError) as err:
        seeded_store.list_patients(name=name)
    assert err.value.code == ErrorCode.INVALID_PARAMETER
    assert "ris.sqlite" not in err.value.message and len(err.value.message) < 400


# 5, 6, 8, 14: the REST API


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def an_ordered_order(url: str, token: str) -> int:
    orders = httpx.get(f"{url}/ris/api/orders", params={"status": "ORDERED"}, headers=auth(token)).json()
    return orders["orders"][0]["id"]


@pytest.mark.parametrize(
    "change",
    [
        {"order_id": True},
        {"order_id": 17.9},
        {"order_id": "１"},  # full-width digit
        {"order_id": 10**30},
        {"scheduled_station_aet": None},
        {"scheduled_station_aet": 123},
        {"scheduled_station_aet": ["A"]},
        {"scheduled_station_aet": BAD_AE},
        {"scheduled_time": "0001-01-01T00:00"},
        {"scheduled_time": 20250612},
        {"extra": 1},
    ],
)
def test_rest_create_takes_strict_types(api: tuple[str, str, Any], change: dict[str, Any]) -> None:
    url, token, service = api
    body = {
        "order_id": an_ordered_order(url, token),
        "scheduled_station_aet": "CR3",
        "scheduled_time": "2025-06-05T07:15",
    }
    before = service.store.count_worklist()
    answer = httpx.post(f"{url}/ris/api/worklist", json={**body, **change}, headers=auth(token))
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["code"] == "INVALID_PARAMETER"
    assert service.store.count_worklist() == before


@pytest.mark.parametrize("path", ["99999999999999999999999", "１", "1.0", "-1", "0"])
def test_rest_cancel_path_ids_are_strict(api: tuple[str, str, Any], path: str) -> None:
    url, token, _ = api
    answer = httpx.delete(f"{url}/ris/api/worklist/{path}", headers=auth(token))
    assert answer.status_code == 400 and answer.json()["error"]["code"] == "INVALID_PARAMETER"


def test_rest_deeply_nested_json_is_a_coded_400(api: tuple[str, str, Any]) -> None:
    url, token, _ = api
    deep = "[" * 20_000 + "]" * 20_000  # under the body limit, deeper than Python's parser recurses
    answer = httpx.post(
        f"{url}/ris/api/worklist", content=deep, headers={**auth(token), "content-type": "application/json"}
    )
    assert answer.status_code == 400 and answer.json()["error"]["code"] == "INVALID_PARAMETER"


def test_rest_listings_page_with_totals_next_links_and_working_filters(api: tuple[str, str, Any]) -> None:
    url, token, service = api
    total = service.store.count_orders()
    seen: list[int] = []
    page = httpx.get(f"{url}/ris/api/orders", params={"limit": 5}, headers=auth(token)).json()
    while True:
        assert page["total"] == total and page["count"] == len(page["orders"]) <= 5
        seen += [o["id"] for o in page["orders"]]
        if page["next"] is None:
            break
        page = httpx.get(page["next"], headers=auth(token)).json()
    assert len(seen) == len(set(seen)) == total
    one = service.store.list_orders(limit=1)[0]
    by_accession = httpx.get(
        f"{url}/ris/api/orders", params={"accession_number": one.accession_number}, headers=auth(token)
    ).json()
    assert by_accession["total"] == 1 and by_accession["orders"][0]["id"] == one.id
    worklist = httpx.get(f"{url}/ris/api/worklist", params={"limit": 2}, headers=auth(token)).json()
    assert worklist["total"] == service.store.count_worklist() and worklist["count"] == 2
    unknown = httpx.get(f"{url}/ris/api/orders", params={"limitt": 5}, headers=auth(token))
    assert unknown.status_code == 400 and "limitt" in unknown.json()["error"]["message"]


def test_rest_api_checks_host_and_body_size_like_the_mcp_endpoint(api: tuple[str, str, Any]) -> None:
    url, token, service = api
    rebound = httpx.get(f"{url}/ris/api/orders", headers={**auth(token), "Host": "evil.example"})
    assert rebound.status_code == 421
    before = service.store.count_worklist()
    big = httpx.post(
        f"{url}/ris/api/worklist",
        content=b'{"order_id": 1, "pad": "' + b"x" * 10_000_000 + b'"}',
        headers={**auth(token), "content-type": "application/json"},
    )
    assert big.status_code == 413
    assert service.store.count_worklist() == before
    assert httpx.get(f"{url}/ris/api/orders", headers={**auth(token), "Host": "localhost"}).status_code == 200


# 2, 10, 11: the MWL/MPPS SCP's associations


@pytest.fixture
def strict_scp(sqlite_store: RisStore) -> Any:
    """The SCP with a short timeout and one allowed calling AE title besides the test station."""
    from fixtures.core import free_port
    from fixtures.ris import RIS_AET
    from SlicerMCPLib.ris.scp import RisScp

    scp = RisScp(
        sqlite_store,
        RIS_AET,
        "127.0.0.1",
        free_port(),
        timeout_s=2.0,
        calling_aets=(STATION_AET, "CT01"),
        check_called_aet=True,
    ).start()
    yield scp
    scp.stop()


def associate(port: int, calling: str = STATION_AET, called: str | None = None) -> Any:
    from pynetdicom import AE
    from pynetdicom.sop_class import ModalityWorklistInformationFind

    from fixtures.ris import RIS_AET

    ae = AE(ae_title=calling)
    ae.add_requested_context(ModalityWorklistInformationFind)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 20
    return ae.associate("127.0.0.1", port, ae_title=called or RIS_AET)


def test_silent_connections_do_not_lock_out_modalities(strict_scp: Any) -> None:
    import socket
    import time

    silent = [socket.create_connection(("127.0.0.1", strict_scp.port)) for _ in range(20)]
    try:
        assoc = associate(strict_scp.port)  # 20 silent sockets: more than pynetdicom's default 10 slots
        assert assoc.is_established
        assoc.release()
        time.sleep(strict_scp.timeout_s + 2)
        closed = 0
        for sock in silent:  # the SCP dropped them after its timeout: reading gives end of stream
            sock.settimeout(1)
            try:
                closed += sock.recv(1) == b""
            except OSError:
                closed += 1
        assert closed == len(silent)
    finally:
        for sock in silent:
            sock.close()


def test_fifty_concurrent_worklist_queries_are_all_answered(strict_scp: Any) -> None:
    from concurrent.futures import ThreadPoolExecutor

    query = mwl_query(PatientName="", sps={"Modality": ""})

    def one(_: int) -> int:
        statuses, found = worklist_query(strict_scp.port, query)
        return statuses[-1]

    with ThreadPoolExecutor(50) as pool:
        finals = list(pool.map(one, range(50)))
    assert finals == [0x0000] * 50


def test_called_and_calling_ae_titles_are_checked(strict_scp: Any, caplog: pytest.LogCaptureFixture) -> None:
    import logging

    caplog.set_level(logging.INFO, logger="SlicerMCPLib.ris.scp")
    wrong_called = associate(strict_scp.port, called="NOTMINIRIS")
    assert wrong_called.is_rejected
    stranger = associate(strict_scp.port, calling="STRANGER")
    assert stranger.is_rejected
    allowed = associate(strict_scp.port, calling="CT01")
    assert allowed.is_established
    allowed.release()
    again = associate(strict_scp.port, calling="CT01")
    again.release()
    text = caplog.text
    assert text.count("refused an association") >= 2
    assert text.count("first association from calling AE CT01") == 1


def test_an_empty_worklist_query_is_answered_with_a_failure_status(
    strict_scp: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """pynetdicom sends an empty identifier as "data set present" and then no data set at all (issue 16
    item 11): the SCP answers A900 after a short grace and logs one line, instead of leaving the
    modality without a status until the network timeout aborts the association (30 s before; dcmtk's
    findscu refuses to send an empty identifier, so pynetdicom is the peer here)."""
    import logging

    from pydicom.dataset import Dataset
    from pynetdicom.sop_class import ModalityWorklistInformationFind

    caplog.set_level(logging.INFO, logger="SlicerMCPLib.ris.scp")
    assoc = associate(strict_scp.port)  # the client waits 20 s for a response
    answers = list(assoc.send_c_find(Dataset(), ModalityWorklistInformationFind))
    assert [int(status.Status) if status else None for status, _ in answers] == [
        Status.IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS
    ]
    assert "empty identifier" in str(answers[0][0].get("ErrorComment", ""))
    assert assoc.is_established, "answered, not aborted"
    statuses = [
        int(s.Status)
        for s, _ in assoc.send_c_find(mwl_query(PatientName=""), ModalityWorklistInformationFind)
    ]
    assert statuses[-1] == Status.SUCCESS and Status.PENDING in statuses  # the same association goes on
    assoc.release()
    assert caplog.text.count("refused: empty identifier") == 1


def test_an_empty_mpps_n_create_is_answered_with_a_failure_status(strict_scp: Any) -> None:
    """The same silence for an N-CREATE with an empty attribute list: answered Missing Attribute."""
    from pydicom.dataset import Dataset
    from pydicom.uid import generate_uid
    from pynetdicom import AE
    from pynetdicom.sop_class import ModalityPerformedProcedureStep

    from fixtures.ris import RIS_AET, STATION_AET

    ae = AE(ae_title=STATION_AET)
    ae.add_requested_context(ModalityPerformedProcedureStep)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 20
    assoc = ae.associate("127.0.0.1", strict_scp.port, ae_title=RIS_AET)
    assert assoc.is_established
    status, _ = assoc.send_n_create(Dataset(), ModalityPerformedProcedureStep, generate_uid())
    assoc.release()
    assert status and int(status.Status) == Status.MISSING_ATTRIBUTE


# the database's breaker seen through the REST API (found by the soak benchmark: CIRCUIT_OPEN was a 500)


def test_rest_api_answers_503_while_the_database_breaker_is_open(tmp_path: Any) -> None:
    """MariaDB is down (nothing listens on its port: the kernel refuses, a real connection failure):
    the first request trips the breaker (threshold 1), the next fails fast; both are 503, a
    temporary outage the client can retry, never a 500."""
    from fixtures.core import free_port
    from SlicerMCPLib.core.config import load_config
    from SlicerMCPLib.ris.api import serve_api
    from SlicerMCPLib.ris.service import RisService

    mini_ris = {"backend": "mysql", "port": free_port(), "password": "x", "mwl_port": 0, "api_port": 0}
    overrides = {
        "mini_ris": mini_ris,
        "breaker": {"failure_threshold": 1, "first_cooldown_s": 60, "ris_database_cooldown_s": 60},
    }
    config = load_config(env={}, overrides=overrides)
    service = RisService(config)
    server = serve_api(service, config, "t" * 32, 0)
    try:
        url = f"http://127.0.0.1:{server.port}/ris/api/orders"
        answers = [httpx.get(url, headers={"Authorization": "Bearer " + "t" * 32}) for _ in range(2)]
    finally:
        server.stop()
        service.close()
    assert [a.json()["error"]["code"] for a in answers] == ["RIS_DATABASE_ERROR", "CIRCUIT_OPEN"]
    assert [a.status_code for a in answers] == [503, 503]
