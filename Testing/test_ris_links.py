"""An order shows what it produced (ris/links.py), on both back ends (SQLite file, real MariaDB): SEG/SR
in the PACS and DiagnosticReports in FHIR linked by accession, migration 3 moving migration 2's
reports, concurrent linking, the REST API and the worklist page.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from fixtures.core import free_port
from fixtures.ris import STATION_AET
from SlicerMCPLib.core.config import load_config
from SlicerMCPLib.core.domain_config import MiniRisSettings
from SlicerMCPLib.core.errors import ErrorCode, SlicerMCPError
from SlicerMCPLib.ris.links import link_results, links_of, with_stored_results
from SlicerMCPLib.ris.models import ResultLink
from SlicerMCPLib.ris.reports import record_report, reports_for
from SlicerMCPLib.ris.schema import MIGRATIONS
from SlicerMCPLib.ris.seed import seed
from SlicerMCPLib.ris.store import RisStore

SEG_UID, SR_UID = "1.2.826.0.1.3680043.8.498.1", "1.2.826.0.1.3680043.8.498.2"
STUDY, SEG_SERIES, SR_SERIES = "1.2.3.4", "1.2.3.4.10", "1.2.3.4.11"


def _order(store: RisStore, accession: str) -> int:
    return store.create_order("MRN1002", "CT-ABD-LESION", accession_number=accession).id


def _results(report: str = "DiagnosticReport/77", status: str = "preliminary") -> list[ResultLink]:
    return [
        ResultLink(
            kind="SEG",
            identifier=SEG_UID,
            study_instance_uid=STUDY,
            series_instance_uid=SEG_SERIES,
            location="orthanc",
        ),
        ResultLink(
            kind="SR",
            identifier=SR_UID,
            study_instance_uid=STUDY,
            series_instance_uid=SR_SERIES,
            location="orthanc",
        ),
        ResultLink(
            kind="DiagnosticReport",
            identifier=report,
            location="local",
            status=status,
            conclusion="2 mL",
            derived_from=SR_UID,
        ),
    ]


def test_results_and_report_are_listed_with_their_order(seeded_store: RisStore) -> None:
    mine, other = _order(seeded_store, "ACC-LINK-1"), _order(seeded_store, "ACC-LINK-2")
    order_id, shown = link_results(seeded_store, "ACC-LINK-1", _results())
    assert order_id == mine
    assert [(x.kind, x.identifier) for x in shown] == [
        ("SEG", SEG_UID),
        ("SR", SR_UID),
        ("DiagnosticReport", "DiagnosticReport/77"),
    ]
    assert shown[0].series_instance_uid == SEG_SERIES and shown[0].location == "orthanc"
    assert shown[2].derived_from == SR_UID and shown[2].recorded_at.endswith("Z")

    listed = {o.id: o for o in with_stored_results(seeded_store, seeded_store.list_orders(limit=1000))}
    assert listed[mine].stored_results == shown
    assert listed[other].stored_results == []
    report = reports_for(seeded_store, "ACC-LINK-1")
    assert [(r.reference, r.status, r.sr_sop_instance_uid) for r in report] == [
        ("DiagnosticReport/77", "preliminary", SR_UID)
    ]


def test_linking_again_updates_what_is_known_and_keeps_one_row(seeded_store: RisStore) -> None:
    _order(seeded_store, "ACC-LINK-3")
    _, first = link_results(seeded_store, "ACC-LINK-3", _results())
    # the report signed later, recorded by complete_procedure_step; the SEG linked again without a location
    record_report(seeded_store, "ACC-LINK-3", "DiagnosticReport/77", "final", None, None)
    _, again = link_results(seeded_store, "ACC-LINK-3", [ResultLink(kind="SEG", identifier=SEG_UID)])
    assert len(again) == 3
    report = again[2]
    assert (report.status, report.conclusion, report.derived_from) == ("final", "2 mL", SR_UID)
    assert report.recorded_at == first[2].recorded_at
    assert again[0].location == "orthanc" and again[0].series_instance_uid == SEG_SERIES


def test_unknown_accession_is_not_found_and_text_stays_text(seeded_store: RisStore) -> None:
    with pytest.raises(SlicerMCPError) as err:
        link_results(seeded_store, "NO-SUCH", _results())
    assert err.value.code == ErrorCode.RIS_NOT_FOUND
    _order(seeded_store, "ACC-LINK-4")
    sly = "DiagnosticReport/1'); DROP TABLE order_links; --"
    _, shown = link_results(
        seeded_store, "ACC-LINK-4", [ResultLink(kind="DiagnosticReport", identifier=sly, status="final")]
    )
    assert shown[0].identifier == sly
    assert len(links_of(seeded_store, [o.id for o in seeded_store.list_orders(limit=1000)])) == 15


def test_concurrent_links_of_the_same_object_make_one_row(seeded_store: RisStore) -> None:
    _order(seeded_store, "ACC-LINK-5")
    start = threading.Barrier(6)
    errors: list[BaseException] = []

    def link() -> None:
        start.wait()
        try:
            link_results(seeded_store, "ACC-LINK-5", _results())
        except BaseException as exc:  # noqa: BLE001 - collected and reported below
            errors.append(exc)

    threads = [threading.Thread(target=link) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    order_id = seeded_store.list_orders(accession_number="ACC-LINK-5")[0].id
    assert len(links_of(seeded_store, [order_id])[order_id]) == 3


def test_migration_3_moves_migration_2_reports_into_the_links(ris_settings: dict[str, Any]) -> None:
    """A database made before migration 3 keeps its reports: the latest row of each, as a link."""
    old = RisStore.open(MiniRisSettings(**ris_settings), migrate=False)
    try:
        assert old.migrate(up_to=2) == 2
        seed(old, STATION_AET)
        order_id = _order(old, "ACC-OLD-1")
        with old.db.transaction() as tx:
            for status, stamp in (("preliminary", "2025-06-01T10:00:00Z"), ("final", "2025-06-02T09:00:00Z")):
                tx.execute(
                    "INSERT INTO order_reports (order_id, reference, status, conclusion, sr_sop_instance_uid,"
                    " recorded_at) VALUES (?, ?, ?, ?, ?, ?)",
                    (order_id, "DiagnosticReport/5", status, "no change", SR_UID, stamp),
                )
        assert old.migrate() == len(MIGRATIONS) == 3
        (link,) = links_of(old, [order_id])[order_id]
        assert (link.kind, link.identifier, link.status, link.derived_from, link.recorded_at) == (
            "DiagnosticReport",
            "DiagnosticReport/5",
            "final",
            SR_UID,
            "2025-06-02T09:00:00Z",
        )
        with pytest.raises(SlicerMCPError) as gone, old.db.transaction() as tx:
            tx.execute("SELECT COUNT(*) AS n FROM order_reports")
        assert gone.value.code == ErrorCode.RIS_DATABASE_ERROR
    finally:
        old.close()


@pytest.fixture
def ris_api(ris_settings: dict[str, Any]) -> Iterator[tuple[str, dict[str, str], Any]]:
    """The RIS REST API on a free port over this back end's seeded store: (url, auth headers, service)."""
    from SlicerMCPLib.ris.api import serve_api
    from SlicerMCPLib.ris.service import RisService

    block = {**ris_settings, "mwl_port": free_port(), "api_port": 0}
    config = load_config(env={}, overrides={"allow": {"ris_write": True}, "mini_ris": block})
    service = RisService(config)
    token = "k" * 32
    server = serve_api(service, config, token, 0)
    yield f"http://127.0.0.1:{server.port}", {"Authorization": f"Bearer {token}"}, service
    server.stop()
    service.close()


def test_rest_api_and_worklist_page_show_the_results(ris_api: tuple[str, dict[str, str], Any]) -> None:
    url, auth, service = ris_api
    order_id = _order(service.store, "ACC-WEB-1")
    service.store.create_mwl(order_id, STATION_AET, None)
    link_results(service.store, "ACC-WEB-1", _results("DiagnosticReport/<b>9</b>", "final"))

    body = httpx.get(f"{url}/ris/api/orders", params={"accession_number": "ACC-WEB-1"}, headers=auth).json()
    (order,) = body["orders"]
    assert [(x["kind"], x["identifier"]) for x in order["stored_results"]] == [
        ("SEG", SEG_UID),
        ("SR", SR_UID),
        ("DiagnosticReport", "DiagnosticReport/<b>9</b>"),
    ]
    assert order["stored_results"][2]["status"] == "final"
    untouched = httpx.get(f"{url}/ris/api/orders", params={"limit": 1000}, headers=auth).json()["orders"]
    assert sum(1 for o in untouched if o["stored_results"]) == 1

    page = httpx.get(f"{url}/ris/worklist", headers=auth).text
    row = next(line for line in page.split("<tr>") if "ACC-WEB-1" in line)
    assert f'<span title="{SEG_UID}">SEG</span>' in row and f'<span title="{SR_UID}">SR</span>' in row
    assert "DiagnosticReport/&lt;b&gt;9&lt;/b&gt; (final)" in row and "<b>" not in row
    assert "<th>Results</th>" in page


def test_a_tools_link_outcome_says_why_nothing_was_linked(ris_api: tuple[str, dict[str, str], Any]) -> None:
    """The second act of store_results_to_pacs / fhir_create_report never fails the tool: it says why."""
    from SlicerMCPLib.ris.service import RisService
    from SlicerMCPLib.tools.order_links import link_accession

    _, _, service = ris_api
    assert "no AccessionNumber" in (link_accession(service, "", _results()).note or "")
    unknown = link_accession(service, "NOT-ORDERED", _results())
    assert not unknown.linked and "no order with this accession" in (unknown.note or "")
    _order(service.store, "ACC-TOOL-1")
    done = link_accession(service, "ACC-TOOL-1", _results())
    assert done.linked and done.note is None and len(done.stored_results) == 3

    nobody = load_config(  # a MariaDB that is not running: nothing listens on this port
        env={}, overrides={"mini_ris": {"backend": "mysql", "port": free_port(), "password": "x"}}
    )
    down = link_accession(RisService(nobody), "ACC-TOOL-1", _results())
    assert not down.linked and "RIS_DATABASE_ERROR" in (down.note or "")
