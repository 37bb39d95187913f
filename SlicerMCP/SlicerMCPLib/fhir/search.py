"""FHIR R4 search: parameters for Patient and ImagingStudy, and paging that follows `next` links.

R4 writes comparisons as a prefix on the value (`birthdate=gt1962-01-01`). fhirclient's
`{'$gt': ...}` form produces `$gt` values that R4 servers reject, so dates are normalised
here: `>=1962`, `$ge1962`, `ge1962` all become `ge1962`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from ..core.errors import ErrorCode, InvalidParameter, SlicerMCPError
from .client import FhirClient
from .models import DCM_SYSTEM, DICOM_UID_SYSTEM

DATE_PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")
_OPERATORS = {">=": "ge", "<=": "le", ">": "gt", "<": "lt", "=": "eq", "!=": "ne"}
_DATE = re.compile(r"^\d{4}(-\d{2}(-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})?)?)?)?$")
_RESOURCE_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")
GENDERS = ("male", "female", "other", "unknown")
IMAGING_STUDY_STATUSES = ("registered", "available", "cancelled", "entered-in-error", "unknown")

Params = list[tuple[str, str]]


def date_param(value: str, name: str = "date") -> str:
    """One R4 date search value with its prefix: 'gt1962-01-01', '1962', '>=1962-01' -> 'ge1962-01'."""
    raw = value.strip()
    prefix = ""
    for op in sorted(_OPERATORS, key=len, reverse=True):
        if raw.startswith(op):
            prefix, raw = _OPERATORS[op], raw[len(op) :].strip()
            break
    else:
        candidate = raw.removeprefix("$")
        if candidate[:2] in DATE_PREFIXES:
            prefix, raw = candidate[:2], candidate[2:]
    if not _DATE.match(raw):
        raise InvalidParameter(
            f"{name} value {value!r} is not a FHIR date; use YYYY, YYYY-MM or YYYY-MM-DD with an optional prefix "
            f"({', '.join(DATE_PREFIXES)}), e.g. 'ge1960-01-01'",
            details={"parameter": name, "value": value},
        )
    return prefix + raw


def resource_id(value: str, what: str = "id") -> str:
    """A FHIR logical id; anything else could change the request path."""
    if not _RESOURCE_ID.match(value):
        raise InvalidParameter(
            f"{what} {value!r} is not a FHIR id (1-64 of A-Z a-z 0-9 - .)",
            details={"parameter": what, "value": value},
        )
    return value


def dicom_uid(value: str, what: str) -> str:
    uid = value.strip().removeprefix("urn:oid:")
    if not _UID.match(uid) or len(uid) > 64:
        raise InvalidParameter(
            f"{what} {value!r} is not a DICOM UID (digits and dots)", details={"parameter": what}
        )
    return uid


def literal(value: str) -> str:
    """`value` escaped for a search parameter, so ',' '|' '$' and '\\' in it are data, not syntax
    (FHIR R4 search escaping: a comma would otherwise OR in a second value)."""
    return "".join("\\" + c if c in "\\,|$" else c for c in value)


def reference(value: str, resource_type: str) -> str:
    """'123' or 'Patient/123' -> 'Patient/123'."""
    rtype, _, rid = value.rpartition("/")
    if rtype and rtype != resource_type:
        raise InvalidParameter(
            f"expected a {resource_type} id or reference, got {value!r}", details={"value": value}
        )
    return f"{resource_type}/{resource_id(rid, f'{resource_type} id')}"


def patient_params(
    *,
    name: str | None = None,
    family: str | None = None,
    given: str | None = None,
    identifier: str | None = None,
    birthdate: list[str] | None = None,
    gender: str | None = None,
) -> Params:
    params: Params = []
    for key, value in (("name", name), ("family", family), ("given", given), ("identifier", identifier)):
        if value:
            params.append((key, value))
    for value in birthdate or []:
        params.append(("birthdate", date_param(value, "birthdate")))
    if gender:
        if gender not in GENDERS:
            raise InvalidParameter(f"gender must be one of {', '.join(GENDERS)}", details={"value": gender})
        params.append(("gender", gender))
    return params


def imaging_study_params(
    *,
    patient: str | None = None,
    study_instance_uid: str | None = None,
    series_instance_uid: str | None = None,
    identifier: str | None = None,
    modality: str | None = None,
    started_from: str | None = None,
    started_to: str | None = None,
    status: str | None = None,
) -> Params:
    params: Params = []
    if patient:
        params.append(("patient", reference(patient, "Patient")))
    if study_instance_uid:
        uid = dicom_uid(study_instance_uid, "study_instance_uid")
        params.append(("identifier", f"{DICOM_UID_SYSTEM}|urn:oid:{uid}"))
    if series_instance_uid:
        params.append(("series", dicom_uid(series_instance_uid, "series_instance_uid")))
    if identifier:
        params.append(("identifier", identifier))
    if modality:
        params.append(("modality", f"{DCM_SYSTEM}|{modality.strip().upper()}"))
    if started_from:
        params.append(("started", "ge" + _bare_date(started_from, "started_from")))
    if started_to:
        params.append(("started", "le" + _bare_date(started_to, "started_to")))
    if status:
        if status not in IMAGING_STUDY_STATUSES:
            raise InvalidParameter(
                f"status must be one of {', '.join(IMAGING_STUDY_STATUSES)}", details={"value": status}
            )
        params.append(("status", status))
    return params


def _bare_date(value: str, name: str) -> str:
    normalised = date_param(value, name)
    if not normalised[:1].isdigit():
        raise InvalidParameter(
            f"{name} takes a plain date without prefix, got {value!r}", details={"parameter": name}
        )
    return normalised


@dataclass
class SearchPage:
    """Matches collected over one or more pages of a searchset Bundle."""

    resources: list[dict[str, Any]] = field(default_factory=list)
    total: int | None = None
    has_more: bool = False
    pages_read: int = 0


def search(client: FhirClient, resource_type: str, params: Params, limit: int) -> SearchPage:
    """Up to `limit` matches of `resource_type`, following `next` links page by page."""
    page_size = min(limit, client.server.page_size)
    result = SearchPage()
    response = client.request("GET", resource_type, params=[*params, ("_count", str(page_size))])
    followed: set[str] = set()  # a server whose `next` repeats itself would keep this loop going
    while True:
        bundle = response.body
        result.pages_read += 1
        if bundle.get("resourceType") != "Bundle":
            raise SlicerMCPError(
                f"the FHIR server answered the {resource_type} search with a {bundle.get('resourceType')}, "
                "not a Bundle; check that the url points at a FHIR R4 base",
                code=ErrorCode.FHIR_HTTP_ERROR,
                details={"resource_type": resource_type, "server": client.name},
            )
        if result.total is None and isinstance(bundle.get("total"), int):
            result.total = bundle["total"]
        matches = [
            e["resource"]
            for e in bundle.get("entry") or []
            if "resource" in e and (e.get("search") or {}).get("mode", "match") == "match"
        ]
        room = limit - len(result.resources)
        result.resources.extend(matches[:room])
        next_url = next(
            (link.get("url") for link in bundle.get("link") or [] if link.get("relation") == "next"), None
        )
        if len(matches) > room:
            result.has_more = True
            return result
        if not next_url or next_url in followed:
            return result
        if len(result.resources) >= limit:
            result.has_more = True
            return result
        followed.add(next_url)
        response = client.request("GET", next_url)
