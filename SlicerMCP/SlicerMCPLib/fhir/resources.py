"""Read, create and update any FHIR resource; writes are validated with fhirclient's R4 models first.

Updates send `If-Match: W/"<version>"` with the version the caller read, so a change someone
else made in between comes back as FHIR_CONFLICT instead of being overwritten (fhirclient's
own `update()` sends no If-Match, which is why the request is built here).
"""

from __future__ import annotations

import re
from typing import Any

from fhirclient.models.fhirabstractbase import FHIRValidationError
from fhirclient.models.fhirelementfactory import FHIRElementFactory
from fhirclient.models.resource import Resource

from ..core.errors import ErrorCode, InvalidParameter, SlicerMCPError
from .client import FhirClient, FhirResponse
from .models import ResourceResult
from .search import resource_id

_OBJECT_REPR = re.compile(r" (?:on|for) <[\w.]+ object at 0x[0-9a-f]+>")
_TYPE_NAME = re.compile(r"^[A-Z][A-Za-z]{1,63}$")


def resource_type_name(value: str) -> str:
    """A resource type fhirclient's R4 models know, e.g. 'Patient'; 'Element' and typos are refused."""
    if _TYPE_NAME.match(value):
        model = FHIRElementFactory.instantiate(value, None)
        if isinstance(model, Resource) and model.resource_type == value:
            return value
    raise InvalidParameter(
        f"{value!r} is not a FHIR R4 resource type (e.g. Patient, ImagingStudy, DiagnosticReport)",
        details={"resource_type": value},
    )


def validate(resource: dict[str, Any]) -> str:
    """Check the JSON against fhirclient's R4 model of its type; returns the type or raises
    FHIR_VALIDATION_ERROR listing every problem, before anything is sent."""
    if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
        raise SlicerMCPError(
            "the resource must be a JSON object with a resourceType",
            code=ErrorCode.FHIR_VALIDATION_ERROR,
            details={"problems": ["resourceType: missing"]},
        )
    rtype = resource_type_name(resource["resourceType"])
    try:
        FHIRElementFactory.instantiate(rtype, resource)
    except FHIRValidationError as exc:
        problems = _problems(exc)
        raise SlicerMCPError(
            f"the {rtype} is not valid FHIR R4 (checked before sending): " + "; ".join(problems[:10]),
            code=ErrorCode.FHIR_VALIDATION_ERROR,
            details={"resource_type": rtype, "problems": problems},
        ) from exc
    return rtype


def _problems(exc: FHIRValidationError, prefix: str = "") -> list[str]:
    path = ".".join(p for p in (prefix, exc.path or "") if p and p != "{root}")
    out: list[str] = []
    for err in exc.errors:
        if isinstance(err, FHIRValidationError):
            out.extend(_problems(err, path))
        else:
            text = _OBJECT_REPR.sub("", str(err).strip("'\""))
            out.append(f"{path}: {text}" if path else text)
    return out


def _result(response: FhirResponse, rtype: str) -> ResourceResult:
    body = response.body
    if body.get("resourceType") != rtype or not body.get("id"):
        raise SlicerMCPError(
            f"the FHIR server answered with a {body.get('resourceType') or 'body'} instead of the {rtype}",
            code=ErrorCode.FHIR_HTTP_ERROR,
            details={"expected": rtype, "got": body.get("resourceType")},
        )
    return ResourceResult(
        resource_type=rtype,
        id=str(body["id"]),
        version_id=response.version_id,
        last_updated=(body.get("meta") or {}).get("lastUpdated"),
        resource=body,
    )


def read(client: FhirClient, resource_type: str, rid: str, version_id: str | None = None) -> ResourceResult:
    rtype = resource_type_name(resource_type)
    path = f"{rtype}/{resource_id(rid)}"
    if version_id:
        path += f"/_history/{resource_id(version_id, 'version_id')}"
    return _result(client.request("GET", path), rtype)


def create(client: FhirClient, resource: dict[str, Any], if_none_exist: str | None = None) -> ResourceResult:
    """POST a new resource (the server assigns the id); `if_none_exist` makes it a conditional create."""
    rtype = validate(resource)
    body = {k: v for k, v in resource.items() if k not in ("id", "meta")}
    headers = {"Prefer": "return=representation"}
    if if_none_exist:
        headers["If-None-Exist"] = if_none_exist
    return _result(client.request("POST", rtype, json_body=body, headers=headers), rtype)


def update(client: FhirClient, resource: dict[str, Any], version_id: str | None = None) -> ResourceResult:
    """PUT the resource with If-Match on `version_id` (default: its meta.versionId)."""
    rtype = validate(resource)
    rid = resource.get("id")
    if not isinstance(rid, str):
        raise InvalidParameter(
            "the resource has no id; read it first with fhir_read_resource, change it and send it back",
            details={"resource_type": rtype},
        )
    resource_id(rid)
    version = version_id or (resource.get("meta") or {}).get("versionId")
    if not version:
        raise InvalidParameter(
            "no version to check against: pass version_id (from fhir_read_resource) or keep meta.versionId, "
            "so a change made by someone else since your read is not overwritten",
            details={"resource_type": rtype, "id": rid},
        )
    headers = {
        "If-Match": f'W/"{resource_id(str(version), "version_id")}"',
        "Prefer": "return=representation",
    }
    return _result(client.request("PUT", f"{rtype}/{rid}", json_body=resource, headers=headers), rtype)
