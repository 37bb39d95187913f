"""A small REST API for worklist entries and a readable HTML worklist page.

Same rules as the MCP server: 127.0.0.1, bearer token from the token file, foreign browser
Origins refused (`http_transport.AuthMiddleware`); writes need `allow.ris_write`.

    GET    /ris/api/orders?status=&patient_mrn=&accession_number=&limit=&offset=
           each order with its stored_results (SEG/SR in the PACS, DiagnosticReports in FHIR)
    GET    /ris/api/worklist?status=&date=&station_aet=&accession_number=&limit=&offset=
           both answer {"total", "count", "offset", "limit", "next" (a URL, or null on the last page), ...}
    POST   /ris/api/worklist   {"order_id", "scheduled_station_aet", "scheduled_time"}  -> 201
    DELETE /ris/api/worklist/{mwl_id}                 cancel (-> the CANCELLED entry)
    GET    /ris/worklist                              HTML page (with each order's results)

dicom-mcp's paths answer too, behind the same token:

    POST   /mwl/create_from_json   DICOM keywords: AccessionNumber (of an existing order),
           ScheduledStationAETitle, ScheduledProcedureStepStartDate/-Time (top level or in
           ScheduledProcedureStepSequence); or this API's own body      -> 201
    GET    /mwl                    the HTML worklist page
"""

from __future__ import annotations

import html
import json
import logging
import re
from datetime import datetime
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse
from starlette.routing import Route

from ..core.config import Config
from ..core.errors import ErrorCode, InvalidParameter, OperationDisabled, SlicerMCPError
from ..core.http_server import AuthMiddleware, HttpServer, RequestLimits
from ..dicom.validation import check_id
from .links import links_of, with_stored_results
from .models import OrderLink
from .service import RisService
from .store import scheduled_day

log = logging.getLogger(__name__)

HTTP_STATUS = {
    ErrorCode.RIS_NOT_FOUND: 404,
    ErrorCode.RIS_CONFLICT: 409,
    ErrorCode.INVALID_PARAMETER: 400,
    ErrorCode.OPERATION_DISABLED: 403,
    ErrorCode.RIS_DATABASE_ERROR: 503,
    ErrorCode.CIRCUIT_OPEN: 503,  # the database is down: fail fast, retry after details.retry_at
}


MAX_BODY_BYTES = 64 * 1024  # a worklist request is a few hundred bytes
MAX_PAGE = 1000
DEFAULT_PAGE = {"orders": 100, "worklist": 200}
_ROW_ID = re.compile(r"^[1-9][0-9]{0,18}$")  # ASCII digits only: int() also takes full-width ones
CREATE_KEYS = {"order_id", "scheduled_station_aet", "scheduled_time"}


async def json_body(request: Request) -> Any:
    """The request's JSON; INVALID_PARAMETER for anything else (nesting too deep to parse included)."""
    raw = await request.body()
    try:
        return json.loads(raw)
    except (ValueError, RecursionError) as exc:
        problem = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)[:200]
        raise InvalidParameter("the body must be a JSON object", details={"problem": problem}) from exc


def page_params(
    request: Request, filters: tuple[str, ...], default_limit: int
) -> tuple[dict[str, str], int, int]:
    """(filters given, limit, offset) from the query string; unknown parameters are refused, not ignored."""
    q = request.query_params
    unknown = sorted(set(q) - set(filters) - {"limit", "offset"})
    if unknown:
        raise InvalidParameter(
            f"unknown query parameter(s) {', '.join(unknown)}; this listing takes "
            f"{', '.join((*filters, 'limit', 'offset'))}",
            details={"unknown": unknown},
        )

    def number(key: str, default: int, lo: int, hi: int) -> int:
        text = q.get(key)
        if text is None:
            return default
        if not (text.isascii() and text.isdigit()) or not lo <= int(text) <= hi:
            raise InvalidParameter(f"{key} must be a whole number from {lo} to {hi}, got {text!r}"[:200])
        return int(text)

    return (
        {k: q[k] for k in filters if q.get(k)},
        number("limit", default_limit, 1, MAX_PAGE),
        number("offset", 0, 0, 10**9),
    )


def paged(request: Request, key: str, items: list[Any], total: int, limit: int, offset: int) -> JSONResponse:
    following = offset + len(items)
    next_url = None
    if following < total:
        next_url = str(request.url.include_query_params(offset=following, limit=limit))
    return JSONResponse(
        {
            "total": total,
            "count": len(items),
            "offset": offset,
            "limit": limit,
            "next": next_url,
            key: [i.model_dump(mode="json") for i in items],
        }
    )


def _error(exc: SlicerMCPError) -> JSONResponse:
    return JSONResponse(exc.to_dict(), status_code=HTTP_STATUS.get(exc.code, 500))


def build_api(service: RisService, config: Config) -> Starlette:
    """The Starlette app (without the token check; `serve_api` adds it)."""
    store = lambda: service.store  # noqa: E731 - opened on first request

    def guarded(handler: Any) -> Any:
        async def wrapper(request: Request) -> Any:
            try:
                return await handler(request)
            except SlicerMCPError as exc:
                return _error(exc)

        return wrapper

    def require_write() -> None:
        if not config.allow.ris_write:
            raise OperationDisabled("ris_write", "Writing to the mini-RIS")

    async def orders(request: Request) -> JSONResponse:
        filters, limit, offset = page_params(request, ("status", "patient_mrn", "accession_number"), 100)

        def read() -> tuple[list[Any], int]:
            s = store()
            rows = with_stored_results(s, s.list_orders(**filters, limit=limit, offset=offset))
            return rows, s.count_orders(**filters)

        rows, total = await run_in_threadpool(read)
        return paged(request, "orders", rows, total, limit, offset)

    async def worklist(request: Request) -> JSONResponse:
        filters, limit, offset = page_params(
            request, ("status", "date", "station_aet", "accession_number"), 200
        )

        def read() -> tuple[list[Any], int]:
            s = store()
            return s.list_worklist(**filters, limit=limit, offset=offset), s.count_worklist(**filters)

        rows, total = await run_in_threadpool(read)
        return paged(request, "entries", rows, total, limit, offset)

    async def create(request: Request, body: Any = None) -> JSONResponse:
        require_write()
        body = await json_body(request) if body is None else body
        if (
            not isinstance(body, dict)
            or set(body) - CREATE_KEYS
            or not {"order_id", "scheduled_station_aet"} <= set(body)
        ):
            raise InvalidParameter(
                "send JSON {order_id: integer, scheduled_station_aet: text, scheduled_time: ISO 8601 text "
                "(optional)} and nothing else",
                details={"keys": sorted(body) if isinstance(body, dict) else None},
            )
        order_id = check_id(body["order_id"], "order_id")
        station, text = body["scheduled_station_aet"], body.get("scheduled_time")
        if not isinstance(station, str):
            raise InvalidParameter("scheduled_station_aet must be text (an AE title)", details={})
        when = None
        if text is not None:
            try:
                when = datetime.fromisoformat(text) if isinstance(text, str) else None
            except ValueError:
                when = None
            if when is None:
                raise InvalidParameter(
                    f"scheduled_time must be ISO 8601 text like 2025-06-12T10:30, got {text!r}"[:200],
                    details={},
                )
        entry = await run_in_threadpool(lambda: store().create_mwl(order_id, station, when))
        return JSONResponse(entry.model_dump(mode="json"), status_code=201)

    async def create_from_json(request: Request) -> JSONResponse:
        """dicom-mcp's POST /mwl/create_from_json: schedules the order its AccessionNumber names."""
        require_write()
        body = await json_body(request)
        if isinstance(body, dict) and "order_id" in body:
            return await create(request, body)
        accession, station, when = dicom_mcp_mwl_request(body, config.mini_ris.modality.ae_title)

        def schedule() -> Any:
            orders = store().list_orders(accession_number=accession, limit=1)
            if not orders:
                raise InvalidParameter(
                    f"no order has accession number {accession!r}: the mini-RIS makes worklist entries "
                    "from orders (create_order, then create_mwl_from_order or this call)",
                    details={"accession_number": accession},
                )
            return store().create_mwl(orders[0].id, station, when)

        entry = await run_in_threadpool(schedule)
        return JSONResponse(
            {
                "status": "success",
                "message": f"MWL created for accession {entry.accession_number}",
                "db_row_id": entry.mwl_id,
                "entry": entry.model_dump(mode="json"),
            },
            status_code=201,
        )

    async def cancel(request: Request) -> JSONResponse:
        require_write()
        text = request.path_params["mwl_id"]
        if not _ROW_ID.match(text):
            raise InvalidParameter(f"the worklist entry id is a whole number, got {text[:40]!r}")
        mwl_id = check_id(int(text), "mwl_id")
        entry = await run_in_threadpool(lambda: store().cancel_mwl(mwl_id))
        return JSONResponse(entry.model_dump(mode="json"))

    async def page(request: Request) -> HTMLResponse:
        date = scheduled_day(request.query_params.get("date"))

        def read() -> tuple[list[Any], int, dict[int, list[OrderLink]]]:
            s = store()
            rows = s.list_worklist(None, date, None, limit=MAX_PAGE)
            return rows, s.count_worklist(date=date), links_of(s, sorted({r.order_id for r in rows}))

        rows, total, results = await run_in_threadpool(read)
        return HTMLResponse(render_page(rows, date, total, results))

    return Starlette(
        routes=[
            Route("/ris/api/orders", guarded(orders), methods=["GET"]),
            Route("/ris/api/worklist", guarded(worklist), methods=["GET"]),
            Route("/ris/api/worklist", guarded(create), methods=["POST"]),
            Route("/ris/api/worklist/{mwl_id}", guarded(cancel), methods=["DELETE"]),
            Route("/ris/worklist", guarded(page), methods=["GET"]),
            Route("/mwl/create_from_json", guarded(create_from_json), methods=["POST"]),
            Route("/mwl", guarded(page), methods=["GET"]),
        ]
    )


def dicom_mcp_mwl_request(body: Any, default_station: str) -> tuple[str, str, datetime | None]:
    """(accession, station AE, start or None) from a dicom-mcp MWL JSON body of DICOM keywords."""
    if not isinstance(body, dict) or not str(body.get("AccessionNumber", "")).strip():
        raise InvalidParameter(
            "send JSON with AccessionNumber (an order's accession number), or {order_id, "
            "scheduled_station_aet, scheduled_time}"
        )
    step = body.get("ScheduledProcedureStepSequence") or {}
    if isinstance(step, list):
        step = step[0] if step and isinstance(step[0], dict) else {}
    pick = lambda key: str(step.get(key) or body.get(key) or "").strip()  # noqa: E731
    date, time = pick("ScheduledProcedureStepStartDate"), pick("ScheduledProcedureStepStartTime")
    when = None
    if date:
        try:
            when = datetime.strptime(
                date + (time.split(".")[0].ljust(6, "0") if time else "000000"), "%Y%m%d%H%M%S"
            )
        except ValueError as exc:
            raise InvalidParameter(
                f"ScheduledProcedureStepStartDate/Time {date!r}/{time!r} are not DICOM DA/TM (YYYYMMDD, HHMMSS)"
            ) from exc
    return str(body["AccessionNumber"]).strip(), pick("ScheduledStationAETitle") or default_station, when


def results_cell(links: list[OrderLink]) -> str:
    """An order's results for the page: kind (and a report's reference and status), the UID on hover."""
    e = html.escape
    shown = []
    for link in links:
        text = link.kind if link.kind != "DiagnosticReport" else f"{link.identifier} ({link.status or '?'})"
        shown.append(f'<span title="{e(link.identifier, quote=True)}">{e(text)}</span>')
    return ", ".join(shown)


def render_page(
    entries: list[Any],
    date: str | None,
    total: int | None = None,
    results: dict[int, list[OrderLink]] | None = None,
) -> str:
    """The worklist as a plain HTML table (every value escaped), each entry with its order's results."""
    e = html.escape
    results = results or {}
    rows = "\n".join(
        "<tr>"
        + "".join(
            f"<td>{e(str(v))}</td>"
            for v in (
                x.mwl_id,
                f"{x.scheduled_date[:4]}-{x.scheduled_date[4:6]}-{x.scheduled_date[6:]} "
                f"{x.scheduled_time[:2]}:{x.scheduled_time[2:4]}",
                x.scheduled_station_aet,
                x.modality,
                x.procedure.description,
                f"{x.patient.family_name}, {x.patient.given_name}",
                x.patient.mrn,
                x.accession_number,
                x.priority,
                x.status,
            )
        )
        + f"<td>{results_cell(results.get(x.order_id, []))}</td>"
        + "</tr>"
        for x in entries
    )
    title = f"Mini-RIS worklist{' for ' + e(date) if date else ''}"
    total = len(entries) if total is None else total
    shown = (
        f"{total} entries"
        if total == len(entries)
        else (
            f"the first {len(entries)} of {total} entries (GET /ris/api/worklist pages through all of them)"
        )
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #bbb;padding:4px 8px;text-align:left}}th{{background:#eee}}</style></head>
<body><h1>{title}</h1><p>{shown}</p>
<table><thead><tr><th>Id</th><th>Scheduled</th><th>Station AE</th><th>Modality</th><th>Procedure</th>
<th>Patient</th><th>MRN</th><th>Accession</th><th>Priority</th><th>Status</th><th>Results</th></tr></thead>
<tbody>
{rows}
</tbody></table></body></html>
"""


def serve_api(service: RisService, config: Config, token: str, port: int | None = None) -> HttpServer:
    """Start the API on 127.0.0.1 (`port` or mini_ris.api_port) behind the token check."""
    settings = config.server.model_copy(update={"port": config.mini_ris.api_port if port is None else port})
    limited = RequestLimits(build_api(service, config), settings.host, MAX_BODY_BYTES)
    app = AuthMiddleware(limited, token, list(settings.allowed_origins))
    server = HttpServer(app, settings).start()
    log.info("RIS REST API on http://%s:%d/ris/api/worklist", settings.host, server.port)
    return server
