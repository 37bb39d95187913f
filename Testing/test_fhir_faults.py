"""FHIR failures as a client sees them: each maps to a FHIR_* code with a message saying what to do.

Server down, 401, 404 and 412 come from the real sekmet server (404/412 also in
test_fhir_tools.py). sekmet answers validation failures with 400, so the 422 some servers
(HAPI) send, malformed JSON, a server that never answers, 503s for the retry rule and a
foreign `next` link come from a FAKE HTTP server below: a real peer can't be made to produce
them on demand. The fake knows nothing of FHIR semantics; it replays canned answers.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from fixtures.core import free_port
from fixtures.fhir import call_error, call_one, fhir_services
from SlicerMCPLib.core.errors import ErrorCode


@dataclass
class Canned:
    status: int
    body: bytes
    delay_s: float = 0.0
    content_type: str = "application/fhir+json"
    headers: dict[str, str] = field(default_factory=dict)  # extra headers; may replace Content-Length


@dataclass
class FakeHttp:
    """FAKE server: answers each request with the next canned answer for its method; records requests."""

    answers: dict[str, list[Canned]] = field(default_factory=dict)
    seen: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    url: str = ""


@pytest.fixture
def fake_http() -> Iterator[FakeHttp]:
    fake = FakeHttp()

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            fake.seen.append((self.command, self.path, dict(self.headers)))
            queue = fake.answers.get(self.command) or [Canned(500, b"")]
            canned = queue.pop(0) if len(queue) > 1 else queue[0]
            time.sleep(canned.delay_s)
            try:
                self.send_response(canned.status)
                headers = {"Content-Type": canned.content_type, "Content-Length": str(len(canned.body))}
                for name, value in {**headers, **canned.headers}.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(canned.body)
            except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout test)
                pass

        do_GET = do_POST = do_PUT = _answer

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    server.daemon_threads = True
    fake.url = f"http://127.0.0.1:{server.server_port}/fhir"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()


def outcome(code: str, text: str) -> bytes:
    issue = {"severity": "error", "code": code, "diagnostics": text}
    return json.dumps({"resourceType": "OperationOutcome", "issue": [issue]}).encode()


def services_for(url: str, **server) -> object:
    return fhir_services(
        {"s": {"url": url, "retry_backoff_s": 0.01, **server}}, current="s", allow_write=True
    )


def test_server_down_is_a_connection_error_after_read_retries() -> None:
    services = services_for(f"http://127.0.0.1:{free_port()}/fhir", retries=2)
    t0 = time.perf_counter()
    err = call_error(services, "verify_fhir_connection")
    assert err["code"] == ErrorCode.FHIR_CONNECTION_ERROR
    assert "cannot connect" in err["message"] and err["details"]["server"] == "s"
    assert time.perf_counter() - t0 < 5


def test_wrong_or_missing_token_is_401_with_a_hint(fhir_peer) -> None:
    for server in ({"bearer_token": "wrong"}, {}):
        services = services_for(fhir_peer.base_url, **server)
        err = call_error(services, "fhir_search_patient", {"family": "Anyone"})
        assert err["code"] == ErrorCode.FHIR_HTTP_ERROR and err["details"]["status"] == 401
        assert "bearer_token" in err["message"] and err["details"]["operation_outcome"]
        assert "wrong" not in json.dumps(err)  # the secret never comes back


def test_https_to_a_plain_http_server_fails_tls(fake_http) -> None:
    services = services_for(fake_http.url.replace("http://", "https://"), retries=0)
    err = call_error(services, "verify_fhir_connection")
    assert err["code"] == ErrorCode.FHIR_CONNECTION_ERROR and "TLS" in err["message"]


def test_422_validation_answer_maps_to_validation_error(fake_http) -> None:
    fake_http.answers["POST"] = [Canned(422, outcome("invariant", "pat-1: contact needs a detail"))]
    err = call_error(
        fake_http_services(fake_http), "fhir_create_resource", {"resource": {"resourceType": "Patient"}}
    )
    assert err["code"] == ErrorCode.FHIR_VALIDATION_ERROR and err["details"]["status"] == 422
    assert "pat-1: contact needs a detail" in err["message"]


def fake_http_services(fake: FakeHttp, **server):
    return services_for(fake.url, **server)


def test_malformed_json_is_reported_not_crashed(fake_http) -> None:
    fake_http.answers["GET"] = [
        Canned(200, b'{"resourceType": "Bundle", "entry": [', content_type="text/html")
    ]
    err = call_error(fake_http_services(fake_http), "fhir_search_patient", {"family": "X"})
    assert err["code"] == ErrorCode.FHIR_HTTP_ERROR
    assert "not a FHIR JSON resource" in err["message"] and err["details"]["content_type"] == "text/html"


def test_a_server_that_never_answers_times_out(fake_http) -> None:
    fake_http.answers["GET"] = [Canned(200, b"{}", delay_s=30.0)]  # far past the 0.5 s deadline
    t0 = time.perf_counter()
    err = call_error(fake_http_services(fake_http, timeout_s=0.5), "verify_fhir_connection")
    assert err["code"] == ErrorCode.SLICER_TIMEOUT and "longer than 0.5 s in all" in err["message"]
    assert len(fake_http.seen) == 1  # a timeout is not retried: the server may still be working
    assert time.perf_counter() - t0 < 20  # ended by the deadline, not by the server's answer at 30 s


def test_reads_are_retried_on_503_but_writes_are_not(fake_http) -> None:
    capability = json.dumps(
        {"resourceType": "CapabilityStatement", "fhirVersion": "4.0.1", "rest": []}
    ).encode()
    fake_http.answers["GET"] = [Canned(503, b""), Canned(503, b""), Canned(200, capability)]
    services = fake_http_services(fake_http, retries=3)
    assert call_one(services, "verify_fhir_connection")["fhir_version"] == "4.0.1"
    assert [m for m, _, _ in fake_http.seen] == ["GET", "GET", "GET"]

    fake_http.seen.clear()
    fake_http.answers["POST"] = [Canned(503, outcome("transient", "busy"))]
    err = call_error(services, "fhir_create_resource", {"resource": {"resourceType": "Patient"}})
    assert err["code"] == ErrorCode.FHIR_HTTP_ERROR and err["details"]["status"] == 503
    assert [m for m, _, _ in fake_http.seen] == ["POST"]


def test_auth_headers_and_no_credentials_to_foreign_next_links(fake_http) -> None:
    page = {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": 2,
        "entry": [{"resource": {"resourceType": "Patient", "id": "p1"}, "search": {"mode": "match"}}],
        "link": [{"relation": "next", "url": "http://elsewhere.invalid/fhir/Patient?page=2"}],
    }
    fake_http.answers["GET"] = [Canned(200, json.dumps(page).encode())]
    services = fake_http_services(fake_http, api_key="k-123", api_key_header="X-Api-Key")
    err = call_error(services, "fhir_search_patient", {"family": "X", "limit": 5})
    assert err["code"] == ErrorCode.FHIR_HTTP_ERROR and "another origin" in err["message"]
    method, path, headers = fake_http.seen[0]
    assert headers.get("X-Api-Key") == "k-123" and "Authorization" not in headers
    assert headers.get("Accept") == "application/fhir+json"
    assert path.startswith("/fhir/Patient?") and "family=X" in path and "_count=5" in path
    assert len(fake_http.seen) == 1


def test_a_redirect_to_another_origin_is_refused_unless_configured(fake_http) -> None:
    """A search answered by another host must not come back as this server's result (fake: redirects)."""
    capability = json.dumps({"resourceType": "CapabilityStatement", "fhirVersion": "4.0.1"}).encode()
    port = fake_http.url.split(":")[2].split("/")[0]
    moved = {"Location": f"http://localhost:{port}/fhir/metadata"}  # same fake, another host name
    fake_http.answers["GET"] = [Canned(302, b"", headers=moved), Canned(200, capability)]
    services = fake_http_services(fake_http, api_key="k-123", api_key_header="X-Api-Key", bearer_token="t-9")
    err = call_error(services, "verify_fhir_connection")
    assert err["code"] == ErrorCode.FHIR_HTTP_ERROR and "redirect_origins" in err["message"]
    assert len(fake_http.seen) == 1  # nothing was sent to the other origin


def test_credentials_do_not_follow_an_allowed_redirect_to_another_host(fake_http) -> None:
    capability = json.dumps({"resourceType": "CapabilityStatement", "fhirVersion": "4.0.1"}).encode()
    port = fake_http.url.split(":")[2].split("/")[0]
    moved = {"Location": f"http://localhost:{port}/fhir/metadata"}
    fake_http.answers["GET"] = [Canned(302, b"", headers=moved), Canned(200, capability)]
    services = fake_http_services(
        fake_http,
        api_key="k-123",
        api_key_header="X-Api-Key",
        bearer_token="t-9",
        redirect_origins=[f"http://localhost:{port}"],
    )
    assert call_one(services, "verify_fhir_connection")["fhir_version"] == "4.0.1"
    first, second = fake_http.seen[0][2], fake_http.seen[1][2]
    assert first.get("X-Api-Key") == "k-123" and first.get("Authorization") == "Bearer t-9"
    assert second["Host"].startswith("localhost:")
    assert "X-Api-Key" not in second and "Authorization" not in second


def test_a_server_echoing_the_key_does_not_get_it_shown(fake_http) -> None:
    """FAKE server: echoes the API key it received in an OperationOutcome (a real one may)."""
    fake_http.answers["GET"] = [Canned(401, outcome("security", "bad key k-secret-123 for X-Api-Key"))]
    services = fake_http_services(fake_http, api_key="k-secret-123", api_key_header="X-Api-Key", retries=0)
    err = call_error(services, "verify_fhir_connection")
    assert "k-secret-123" not in json.dumps(err) and "***" in json.dumps(err)


def test_a_connection_dropped_mid_answer_is_a_connection_error(fake_http) -> None:
    fake_http.answers["GET"] = [Canned(200, b'{"resourceType": "Bun', headers={"Content-Length": "4096"})]
    err = call_error(fake_http_services(fake_http, retries=0), "verify_fhir_connection")
    assert err["code"] == ErrorCode.FHIR_CONNECTION_ERROR and err["details"]["server"] == "s"


def test_a_missing_ca_bundle_is_a_config_error(tmp_path) -> None:
    missing = tmp_path / "no-such-ca.pem"
    services = services_for(f"https://127.0.0.1:{free_port()}/fhir", ca_bundle=str(missing), retries=0)
    err = call_error(services, "verify_fhir_connection")
    assert err["code"] == ErrorCode.CONFIG_ERROR and str(missing) in err["message"]
    assert err["details"]["config_key"] == "fhir_servers.s.ca_bundle"


def test_a_next_link_that_repeats_ends_the_search_instead_of_looping(fake_http) -> None:
    """A FAKE server whose empty page names itself as the next page: the search stops there."""
    page = {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [],
        "link": [{"relation": "next", "url": f"{fake_http.url}/Patient?page=2"}],
    }
    fake_http.answers["GET"] = [Canned(200, json.dumps(page).encode())]
    found = call_one(fake_http_services(fake_http), "fhir_search_patient", {"family": "X"})
    assert found["returned"] == 0 and found["pages_read"] == 2 and not found["has_more"]
    assert len(fake_http.seen) == 2
