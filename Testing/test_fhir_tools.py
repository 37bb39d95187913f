"""FHIR tools through a real MCP client (in-memory) against a real FHIR R4 server (sekmet)."""

from __future__ import annotations

import json
import uuid

import pytest

from fixtures.fhir import call, call_error, call_one, fhir_services
from SlicerMCPLib.core.errors import ErrorCode


def unique() -> str:
    return "Zz" + uuid.uuid4().hex[:10]


@pytest.fixture
def ro(fhir_peer):
    """Services with the real server and writes off (the default)."""
    return fhir_services({"local": fhir_peer.server_config()}, current="local")


@pytest.fixture
def rw(fhir_peer):
    """Services with the real server and allow.fhir_write on."""
    return fhir_services({"local": fhir_peer.server_config()}, current="local", allow_write=True)


def make_patient(
    rw, family: str, birth: str = "1970-01-01", gender: str = "female", mrn: str | None = None
) -> dict:
    resource = {
        "resourceType": "Patient",
        "name": [{"family": family, "given": ["Test"]}],
        "birthDate": birth,
        "gender": gender,
        "identifier": [{"system": "urn:test:mrn", "value": mrn or family}],
    }
    return call_one(rw, "fhir_create_resource", {"resource": resource})


def test_verify_reads_the_capability_statement(ro) -> None:
    cap = call_one(ro, "verify_fhir_connection")
    assert cap["fhir_version"] == "4.0.1"
    assert cap["software_name"].startswith("SEKMET")
    assert {"Patient", "ImagingStudy", "DiagnosticReport", "Endpoint"} <= set(cap["resources"])
    assert cap["server"] == "local" and cap["response_ms"] > 0


def test_list_and_switch_servers_never_show_secrets(fhir_peer) -> None:
    services = fhir_services(
        {
            "local": fhir_peer.server_config(),
            "other": {"url": "https://fhir.invalid/r4", "api_key": "very-secret-key"},
        },
        current="local",
    )
    listing, switched, after = call(
        services,
        ("list_fhir_servers", {}),
        ("switch_fhir_server", {"name": "other"}),
        ("list_fhir_servers", {}),
    )
    assert not listing[0] and listing[1]["current"] == "local"
    auth = {s["name"]: s["auth"] for s in listing[1]["servers"]}
    assert auth == {"local": "bearer", "other": "api-key"}
    assert fhir_peer.token not in json.dumps(listing[1]) and "very-secret-key" not in json.dumps(listing[1])
    assert switched[1] == {"previous": "local", "current": "other", "url": "https://fhir.invalid/r4"}
    assert after[1]["current"] == "other"
    err = call_error(services, "switch_fhir_server", {"name": "nope"})
    assert err["code"] == ErrorCode.INVALID_PARAMETER and "local" in err["message"]


def test_search_patient_by_name_identifier_and_birthdate_prefixes(rw) -> None:
    family = unique()
    make_patient(rw, family, birth="1955-05-05", gender="male", mrn=f"{family}-1")
    make_patient(rw, family, birth="1965-06-06", gender="female", mrn=f"{family}-2")
    make_patient(rw, family, birth="1975-07-07", gender="female", mrn=f"{family}-3")

    def births(**args) -> list[str]:
        found = call_one(rw, "fhir_search_patient", {"family": family, **args})
        return sorted(p["birth_date"] for p in found["patients"])

    assert births() == ["1955-05-05", "1965-06-06", "1975-07-07"]
    assert births(birthdate=["gt1962-01-01"]) == ["1965-06-06", "1975-07-07"]
    assert births(birthdate=["ge1960", "lt1970"]) == ["1965-06-06"]
    assert births(birthdate=[">=1975-07-07"]) == ["1975-07-07"]
    assert births(birthdate=["$lt1960-01-01"]) == ["1955-05-05"]  # fhirclient's $ form is normalised
    assert births(gender="female") == ["1965-06-06", "1975-07-07"]
    by_mrn = call_one(rw, "fhir_search_patient", {"identifier": f"urn:test:mrn|{family}-2"})
    assert by_mrn["returned"] == 1 and by_mrn["patients"][0]["identifiers"] == [f"urn:test:mrn|{family}-2"]
    assert by_mrn["patients"][0]["name"] == f"Test {family}"

    err = call_error(rw, "fhir_search_patient", {"family": family, "birthdate": ["after 1960"]})
    assert err["code"] == ErrorCode.INVALID_PARAMETER and "ge1960-01-01" in err["message"]
    assert call_error(rw, "fhir_search_patient", {})["code"] == ErrorCode.INVALID_PARAMETER


def test_search_pages_over_three_pages_with_limit_and_has_more(fhir_peer) -> None:
    services = fhir_services(
        {"local": fhir_peer.server_config(page_size=3)}, current="local", allow_write=True
    )
    family = unique()
    for i in range(8):
        make_patient(services, family, birth=f"19{50 + i}-01-01", mrn=f"{family}-{i}")
    everything = call_one(services, "fhir_search_patient", {"family": family, "limit": 100})
    assert everything["returned"] == 8 and everything["total"] == 8
    assert everything["pages_read"] == 3 and everything["has_more"] is False
    assert len({p["id"] for p in everything["patients"]}) == 8
    seven = call_one(services, "fhir_search_patient", {"family": family, "limit": 7})
    assert seven["returned"] == 7 and seven["has_more"] is True and seven["pages_read"] == 3
    six = call_one(services, "fhir_search_patient", {"family": family, "limit": 6})
    assert six["returned"] == 6 and six["has_more"] is True and six["pages_read"] == 2


def test_read_create_update_with_versions(rw, fhir_peer) -> None:
    family = unique()
    created = make_patient(rw, family)
    assert created["version_id"] == "1" and created["resource"]["name"][0]["family"] == family
    pid = created["id"]

    read = call_one(rw, "fhir_read_resource", {"resource_type": "Patient", "id": pid})
    changed = dict(read["resource"], gender="other")
    updated = call_one(rw, "fhir_update_resource", {"resource": changed})
    assert updated["version_id"] == "2" and updated["resource"]["gender"] == "other"

    old = call_one(rw, "fhir_read_resource", {"resource_type": "Patient", "id": pid, "version_id": "1"})
    assert old["version_id"] == "1" and old["resource"]["gender"] == "female"

    # a second writer still holding version 1 must not overwrite version 2
    stale = dict(read["resource"], gender="male")
    err = call_error(rw, "fhir_update_resource", {"resource": stale})
    assert err["code"] == ErrorCode.FHIR_CONFLICT and err["details"]["status"] == 412
    assert "current is 2" in err["details"]["operation_outcome"]
    assert (
        call_one(rw, "fhir_read_resource", {"resource_type": "Patient", "id": pid})["resource"]["gender"]
        == "other"
    )

    # the version can be passed explicitly instead of meta.versionId
    bare = {k: v for k, v in updated["resource"].items() if k != "meta"}
    third = call_one(rw, "fhir_update_resource", {"resource": dict(bare, active=True), "version_id": "2"})
    assert third["version_id"] == "3"
    err = call_error(rw, "fhir_update_resource", {"resource": bare})
    assert err["code"] == ErrorCode.INVALID_PARAMETER and "version_id" in err["message"]


def test_writes_are_off_by_default(ro, fhir_peer) -> None:
    family = unique()
    resource = {"resourceType": "Patient", "name": [{"family": family}]}
    err = call_error(ro, "fhir_create_resource", {"resource": resource})
    assert err["code"] == ErrorCode.OPERATION_DISABLED and "SLICER_MCP_ALLOW_FHIR_WRITE" in err["message"]
    err = call_error(ro, "fhir_update_resource", {"resource": dict(resource, id="x1")})
    assert err["code"] == ErrorCode.OPERATION_DISABLED
    assert fhir_peer.count("Patient", {"family": family}) == 0


def test_invalid_resources_are_refused_before_sending(rw, fhir_peer) -> None:
    family = unique()
    bad = {
        "resourceType": "Patient",
        "name": [{"family": family}],
        "birthDate": "1970-02-31",
        "colour": "blue",
    }
    err = call_error(rw, "fhir_create_resource", {"resource": bad})
    assert err["code"] == ErrorCode.FHIR_VALIDATION_ERROR
    problems = " ".join(err["details"]["problems"])
    assert "colour" in problems and "birthDate" in problems and "object at 0x" not in problems
    err = call_error(
        rw, "fhir_create_resource", {"resource": {"resourceType": "ImagingStudy", "status": "available"}}
    )
    assert err["code"] == ErrorCode.FHIR_VALIDATION_ERROR and "subject" in err["message"]
    err = call_error(rw, "fhir_create_resource", {"resource": {"resourceType": "Patientt"}})
    assert err["code"] == ErrorCode.INVALID_PARAMETER
    assert fhir_peer.count("Patient", {"family": family}) == 0


def test_server_side_validation_error_carries_the_operation_outcome(rw, fhir_peer) -> None:
    # fhirclient's models accept an empty family name; the server's R4 rules (non-empty strings) do not
    family = unique()
    resource = {"resourceType": "Patient", "name": [{"family": ""}], "identifier": [{"value": family}]}
    err = call_error(rw, "fhir_create_resource", {"resource": resource})
    assert err["code"] == ErrorCode.FHIR_VALIDATION_ERROR and err["details"]["status"] == 400
    assert "Patient.name.0.family" in err["details"]["operation_outcome"]
    assert fhir_peer.count("Patient", {"identifier": family}) == 0


def test_read_missing_and_bad_ids(ro) -> None:
    err = call_error(ro, "fhir_read_resource", {"resource_type": "Patient", "id": "does-not-exist"})
    assert err["code"] == ErrorCode.FHIR_HTTP_ERROR and err["details"]["status"] == 404
    assert "not found" in err["message"]
    err = call_error(ro, "fhir_read_resource", {"resource_type": "Patient", "id": "../metadata"})
    assert err["code"] == ErrorCode.INVALID_PARAMETER


def test_no_fhir_server_configured_says_how_to_add_one() -> None:
    err = call_error(fhir_services({}), "verify_fhir_connection")
    assert err["code"] == ErrorCode.CONFIG_ERROR and "fhir_servers" in err["message"]
