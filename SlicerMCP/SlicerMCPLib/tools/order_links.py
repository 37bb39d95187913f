"""Results shown on their RIS order: the SEG/SR a PACS store verified and the FHIR reports written are
linked to the mini-RIS order of their accession number (ris/links.py).

The link is the second act of a tool whose first one (the PACS store, the FHIR write) already
happened, so it never fails the tool: each accession's outcome says whether the order lists the
results now and, if not, why and what to do. With allow.ris_write off the RIS is not opened.
"""

from __future__ import annotations

import logging

from mcp.server.mcpserver import Context
from pydantic import BaseModel, Field

from ..core.errors import SlicerMCPError
from ..core.progress import Progress
from ..core.services import services_of
from ..ris.db import RisNotFound
from ..ris.links import link_results
from ..ris.models import OrderLink, ResultLink
from ..ris.service import RisService
from .running import DomainRunner

log = logging.getLogger(__name__)
_run = DomainRunner(RisService)

RIS_WRITE_OFF = (
    "allow.ris_write is off: the mini-RIS order was not updated; turn it on (or call "
    "complete_procedure_step, which needs it anyway) to show these results on the order"
)


class RisOrderUpdate(BaseModel):
    """What the mini-RIS order of one accession number shows after this call."""

    accession_number: str
    linked: bool = Field(description="true: the order now lists these results")
    order_id: int | None = None
    stored_results: list[OrderLink] = Field(
        default_factory=list, description="everything the order lists now (SEG, SR, DiagnosticReport)"
    )
    note: str | None = Field(None, description="why nothing was linked, and what to do about it")


def link_accession(ris: RisService, accession: str, links: list[ResultLink]) -> RisOrderUpdate:
    """Link one accession's results to its order; the outcome says why not when they were not."""
    if not accession:
        return RisOrderUpdate(
            accession_number="",
            linked=False,
            note="the results carry no AccessionNumber: there is no RIS order to show them on",
        )
    try:
        order_id, shown = link_results(ris.store, accession, links)
    except RisNotFound:
        return RisOrderUpdate(
            accession_number=accession,
            linked=False,
            note="the mini-RIS has no order with this accession (a study ordered elsewhere): nothing linked",
        )
    except SlicerMCPError as exc:  # the database is down or refused: the first act still stands
        log.warning("results not linked to their RIS order: %s", exc.code)
        return RisOrderUpdate(
            accession_number=accession,
            linked=False,
            note=f"the mini-RIS could not be updated ({exc.code}: {exc.message}); call again once it is back",
        )
    log.info("%d result(s) linked to a RIS order", len(links))
    return RisOrderUpdate(accession_number=accession, linked=True, order_id=order_id, stored_results=shown)


async def link_to_orders(ctx: Context, by_accession: dict[str, list[ResultLink]]) -> list[RisOrderUpdate]:
    """Link each accession's results to its order, if allow.ris_write lets the RIS be written."""
    if not by_accession:
        return []
    if not services_of(ctx).config.allow.ris_write:
        return [RisOrderUpdate(accession_number=a, linked=False, note=RIS_WRITE_OFF) for a in by_accession]

    def work(ris: RisService, _: Progress) -> list[RisOrderUpdate]:
        return [link_accession(ris, accession, links) for accession, links in by_accession.items()]

    return await _run(ctx, work)
