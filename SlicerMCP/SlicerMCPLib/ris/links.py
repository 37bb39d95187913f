"""The results an order produced outside the RIS, linked to it (table `order_links`, migration 3).

A SEG or SR stored in a PACS (by SOP Instance UID) and a DiagnosticReport written to FHIR (by
reference) are recorded against the order of their accession number, so the order, its listing,
the REST API and the worklist page show what came of it. Linking the same object again updates
what the new call knows (a report's status, where it is stored) and keeps the first time; the
UNIQUE (order, kind, identifier) key decides between concurrent writers.
"""

from __future__ import annotations

from pydicom.dataset import Dataset

from .db import RisConflict, RisNotFound, Tx
from .models import LinkKind, Order, OrderLink, ResultLink
from .store import RisStore, now_iso

LINK_FIELDS = tuple(ResultLink.model_fields)  # the table's columns, by the model's (fixed) names
LINK_COLUMNS = ", ".join(LINK_FIELDS)
# what a later call may fill in or change (never the kind or identifier)
UPDATABLE = tuple(f for f in LINK_FIELDS if f not in ("kind", "identifier"))


def object_link(kind: LinkKind, ds: Dataset, location: str | None = None) -> ResultLink:
    """The link of a stored SEG or SR dataset, by its UIDs."""
    return ResultLink(
        kind=kind,
        identifier=str(ds.SOPInstanceUID),
        study_instance_uid=str(ds.StudyInstanceUID),
        series_instance_uid=str(ds.SeriesInstanceUID),
        location=location,
    )


def order_id_of(store: RisStore, accession_number: str) -> int:
    """The order of an accession number; RIS_NOT_FOUND if the RIS has none."""
    orders = store.list_orders(accession_number=accession_number, limit=1)
    if not orders:
        raise RisNotFound(
            f"no order with accession {accession_number}; list_orders shows them",
            details={"accession": accession_number},
        )
    return orders[0].id


def _upsert(tx: Tx, order_id: int, link: ResultLink) -> None:
    row = tx.execute(
        "SELECT id FROM order_links WHERE order_id = ? AND kind = ? AND identifier = ?",
        (order_id, link.kind, link.identifier),
    ).one()
    if row is None:
        tx.execute(
            f"INSERT INTO order_links (order_id, {LINK_COLUMNS}, recorded_at)"
            f" VALUES ({', '.join('?' for _ in range(len(LINK_FIELDS) + 2))})",
            (order_id, *(getattr(link, f) for f in LINK_FIELDS), now_iso()),
        )
        return
    sets = ", ".join(f"{c} = COALESCE(?, {c})" for c in UPDATABLE)  # fixed column names only
    tx.execute(
        f"UPDATE order_links SET {sets} WHERE id = ?", (*(getattr(link, c) for c in UPDATABLE), row["id"])
    )


def link_results(
    store: RisStore, accession_number: str, links: list[ResultLink]
) -> tuple[int, list[OrderLink]]:
    """Link `links` to the order of `accession_number` in one transaction; returns the order's id and
    all its links."""
    order_id = order_id_of(store, accession_number)
    for attempt in range(2):
        try:
            with store.db.transaction() as tx:
                for link in links:
                    _upsert(tx, order_id, link)
            break
        except RisConflict:  # another writer linked one of them between our SELECT and INSERT
            if attempt:
                raise
    return order_id, links_of(store, [order_id])[order_id]


def links_of(store: RisStore, order_ids: list[int]) -> dict[int, list[OrderLink]]:
    """Every order's links, oldest first (an empty list for an order with none)."""
    out: dict[int, list[OrderLink]] = {i: [] for i in order_ids}
    if not order_ids:
        return out
    marks = ", ".join("?" for _ in order_ids)  # one placeholder per id: the values stay parameters
    with store.db.transaction() as tx:
        rows = tx.execute(
            f"SELECT order_id, {LINK_COLUMNS}, recorded_at FROM order_links WHERE order_id IN ({marks})"
            " ORDER BY id",
            list(order_ids),
        ).all()
    for row in rows:
        out[row.pop("order_id")].append(OrderLink(**row))
    return out


def with_stored_results(store: RisStore, orders: list[Order]) -> list[Order]:
    """The orders with their `stored_results` filled in (one query for the page)."""
    found = links_of(store, [o.id for o in orders])
    return [o.model_copy(update={"stored_results": found[o.id]}) for o in orders]
