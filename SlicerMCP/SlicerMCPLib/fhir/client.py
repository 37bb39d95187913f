"""The one HTTP layer to a FHIR server: auth headers, TLS, timeouts, read retries, error mapping.

Every FHIR request of the package goes through `FhirClient.request`, so the rules live here:
TLS verification is always on (a custom CA bundle may replace the system store), only
idempotent reads are retried and only on connection failures, `timeout_s` is a total deadline
per request (connect, headers and body; core/deadline.py) inside the tool call's own deadline,
and every failure becomes a `SlicerMCPError` with a FHIR_* code (SLICER_TIMEOUT for a deadline)
and the server's OperationOutcome text. Logs carry the
method, resource type and status, never query values or bodies (they may hold PHI).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests

from ..core.breaker import CircuitBreaker, url_address
from ..core.deadline import Deadline, current, mount_deadline
from ..core.domain_config import FhirServer
from ..core.errors import ConfigError, ErrorCode, SlicerMCPError

log = logging.getLogger(__name__)

FHIR_JSON = "application/fhir+json"
IDEMPOTENT = frozenset({"GET", "HEAD"})
RETRY_STATUSES = frozenset({502, 503, 504})
VALIDATION_ISSUE_CODES = frozenset(
    {"structure", "required", "value", "invariant", "invalid", "business-rule"}
)


@dataclass
class FhirResponse:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def version_id(self) -> str | None:
        """The version from meta.versionId, else from the ETag (W/"3" -> 3)."""
        meta = self.body.get("meta") or {}
        if meta.get("versionId"):
            return str(meta["versionId"])
        etag = self.headers.get("etag") or self.headers.get("ETag")
        if etag:
            return etag.removeprefix("W/").strip('"')
        return None


def outcome_text(body: Any) -> str:
    """The human-readable lines of an OperationOutcome (diagnostics, details.text, code)."""
    if not isinstance(body, dict) or body.get("resourceType") != "OperationOutcome":
        return ""
    lines = []
    for issue in body.get("issue") or []:
        text = issue.get("diagnostics") or (issue.get("details") or {}).get("text") or issue.get("code") or ""
        where = ", ".join(issue.get("expression") or issue.get("location") or [])
        lines.append(f"{issue.get('severity', 'error')}: {text}" + (f" (at {where})" if where else ""))
    return "; ".join(lines)


def _issue_codes(body: Any) -> set[str]:
    if not isinstance(body, dict) or body.get("resourceType") != "OperationOutcome":
        return set()
    return {str(i.get("code")) for i in body.get("issue") or []}


def _ca_bundle(name: str, path: str | None) -> str | None:
    """The configured CA bundle as a path that exists (requests would fail with a bare OSError)."""
    if not path:
        return None
    found = Path(path).expanduser()
    if not found.exists():
        raise ConfigError(
            f"the CA bundle {path} of FHIR server {name!r} does not exist; fix ca_bundle in fhir_servers",
            details={"config_key": f"fhir_servers.{name}.ca_bundle"},
        )
    return str(found)


def _resource_type_of(path: str) -> str:
    """'Patient/12/_history/2' -> 'Patient' (for logs; never the ids or query)."""
    return path.split("?", 1)[0].strip("/").split("/", 1)[0] or "<root>"


class CrossOriginRedirect(requests.exceptions.RequestException):
    """The server sent a redirect to another origin that the config does not allow."""

    def __init__(self, target: str):
        super().__init__(target)
        self.target = target


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or ''}:{parts.port or (443 if parts.scheme == 'https' else 80)}"


class _Session(requests.Session):
    """A Session that follows redirects only within the server's origin (and the configured
    `redirect_origins`), and drops every credential header when it does leave the host, not only
    the Authorization header requests itself drops (an API key header would otherwise travel along).
    A search answered from another host would otherwise come back as this server's result."""

    def __init__(self, secret_headers: tuple[str, ...], origins: set[str]):
        super().__init__()
        self.secret_headers = secret_headers
        self.origins = origins

    def get_redirect_target(self, resp: requests.Response) -> str | None:
        target = super().get_redirect_target(resp)
        if target is not None:
            absolute = requests.compat.urljoin(resp.url, target)
            if _origin(absolute) not in self.origins:
                raise CrossOriginRedirect(absolute)
        return target

    def rebuild_auth(self, prepared_request: requests.PreparedRequest, response: requests.Response) -> None:
        super().rebuild_auth(prepared_request, response)
        if self.should_strip_auth(response.request.url, prepared_request.url):
            for name in self.secret_headers:
                prepared_request.headers.pop(name, None)


def _unreachable(exc: BaseException) -> bool:
    """A failure for the breaker: the server did not answer at all, or not within the deadline."""
    return isinstance(exc, SlicerMCPError) and exc.code in (
        ErrorCode.FHIR_CONNECTION_ERROR,
        ErrorCode.SLICER_TIMEOUT,
    )


class FhirClient:
    """One configured FHIR server: a requests Session with its auth, TLS and timeout settings."""

    def __init__(self, name: str, server: FhirServer, breaker: CircuitBreaker | None = None):
        self.name = name
        self.breaker = breaker or CircuitBreaker(f"FHIR server {name!r}", address=url_address(server.url))
        self.server = server
        self.base_url = server.url.rstrip("/")
        allowed = {_origin(server.url)} | {_origin(o) for o in server.redirect_origins}
        self.session = mount_deadline(_Session(("Authorization", server.api_key_header), allowed))
        token = server.bearer_token.get_secret_value() if server.bearer_token else ""
        key = server.api_key.get_secret_value() if server.api_key else ""
        self.secrets = [v for v in (token, key) if len(v) >= 4]
        self.session.headers["Accept"] = FHIR_JSON
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"
        if key:
            self.session.headers[server.api_key_header] = key
        # passed on every request: requests lets REQUESTS_CA_BUNDLE override a Session's verify
        self.verify: str | bool = _ca_bundle(name, server.ca_bundle) or True

    def close(self) -> None:
        self.session.close()

    def url_for(self, path_or_url: str) -> str:
        """An absolute URL on this server; absolute URLs (paging links) must stay on the same origin,
        so the credentials never travel to another host."""
        if not path_or_url.startswith(("http://", "https://")):
            return f"{self.base_url}/{path_or_url.lstrip('/')}"
        ours, theirs = urlsplit(self.base_url), urlsplit(path_or_url)
        if (ours.scheme, ours.netloc) != (theirs.scheme, theirs.netloc):
            raise SlicerMCPError(
                f"FHIR server {self.name!r} returned a link to another origin ({theirs.scheme}://{theirs.netloc}); "
                "refusing to send credentials there. Check the server's base URL setting.",
                code=ErrorCode.FHIR_HTTP_ERROR,
                details={"server": self.name, "link_origin": f"{theirs.scheme}://{theirs.netloc}"},
            )
        return path_or_url

    def request(
        self,
        method: str,
        path_or_url: str,
        *,
        params: list[tuple[str, str]] | dict[str, str] | None = None,
        json_body: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> FhirResponse:
        """Send one request and return the parsed JSON body; raise a FHIR_* SlicerMCPError on failure.

        Through this server's breaker: FHIR_CONNECTION_ERROR and a passed deadline (SLICER_TIMEOUT)
        count as failures, any answer as success."""
        return self.breaker.call(
            lambda: self._request(method, path_or_url, params=params, json_body=json_body, headers=headers),
            _unreachable,
        )

    def _request(
        self,
        method: str,
        path_or_url: str,
        *,
        params: list[tuple[str, str]] | dict[str, str] | None,
        json_body: dict[str, Any] | None,
        headers: dict[str, str] | None,
    ) -> FhirResponse:
        method = method.upper()
        url = self.url_for(path_or_url)
        rtype = _resource_type_of(path_or_url.removeprefix(self.base_url))
        send_headers = dict(headers or {})
        if json_body is not None:
            send_headers["Content-Type"] = f"{FHIR_JSON}; charset=utf-8"
        tries = 1 + (self.server.retries if method in IDEMPOTENT else 0)
        call = current()  # the tool call's deadline, if any
        for attempt in range(1, tries + 1):
            if call is not None and call.expired:
                raise self._timeout(call)
            deadline = Deadline(
                self.server.timeout_s, f"the {method} {rtype} request", f"fhir_servers.{self.name}.timeout_s"
            ).within(call)
            try:
                with deadline.bounded():
                    response = self.session.request(
                        method,
                        url,
                        params=params,
                        json=json_body,
                        headers=send_headers,
                        timeout=deadline.timeouts(self.server.timeout_s, self.server.timeout_s),
                        verify=self.verify,
                    )
            except CrossOriginRedirect as exc:
                theirs = urlsplit(exc.target)
                raise SlicerMCPError(
                    f"FHIR server {self.name!r} redirected the request to another origin "
                    f"({theirs.scheme}://{theirs.netloc}); not followed. If that server is meant to answer, "
                    "add it to redirect_origins of this server in fhir_servers.",
                    code=ErrorCode.FHIR_HTTP_ERROR,
                    details={"server": self.name, "redirect_origin": f"{theirs.scheme}://{theirs.netloc}"},
                ) from exc
            except requests.exceptions.SSLError as exc:
                raise self._connection_error(
                    "TLS verification failed; if the server uses a private CA, set ca_bundle for it", exc
                ) from exc
            except requests.exceptions.Timeout as exc:
                raise self._timeout(deadline) from exc
            except requests.exceptions.ConnectionError as exc:
                if deadline.expired:  # the deadline passed while the body trickled in
                    raise self._timeout(deadline) from exc
                if attempt < tries:
                    self._wait(attempt, method, rtype, "connection failed")
                    continue
                raise self._connection_error(
                    "cannot connect; check that it runs and that the url is right", exc
                ) from exc
            except requests.exceptions.RequestException as exc:  # dropped mid-answer, redirect loop...
                if deadline.expired:
                    raise self._timeout(deadline) from exc
                raise self._connection_error(f"the exchange failed ({type(exc).__name__})", exc) from exc
            if response.status_code in RETRY_STATUSES and attempt < tries:
                self._wait(attempt, method, rtype, f"HTTP {response.status_code}")
                continue
            log.debug("FHIR %s %s %s -> %d", self.name, method, rtype, response.status_code)
            return self._parse(method, url, response)
        raise AssertionError("unreachable")  # pragma: no cover

    def _wait(self, attempt: int, method: str, rtype: str, why: str) -> None:
        delay = self.server.retry_backoff_s * (2 ** (attempt - 1))
        call = current()
        if call is not None:
            delay = min(delay, max(call.left(), 0.0))  # the next try then fails with the call's deadline
        log.info("FHIR %s %s %s: %s, retry %d in %.1f s", self.name, method, rtype, why, attempt, delay)
        time.sleep(delay)

    def _timeout(self, deadline: Deadline) -> SlicerMCPError:
        return deadline.error(
            f"FHIR server {self.name!r} at {self.base_url}",
            "The server is overloaded or the network is slow; check it (verify_fhir_connection), then "
            "repeat the call (a read is safe to repeat; after a create or update, read first: it may have "
            "been applied).",
            {"server": self.name, "url": self.base_url},
        )

    def _connection_error(self, what: str, exc: Exception) -> SlicerMCPError:
        return SlicerMCPError(
            f"FHIR server {self.name!r} at {self.base_url}: {what}.",
            code=ErrorCode.FHIR_CONNECTION_ERROR,
            details={"server": self.name, "url": self.base_url, "reason": type(exc).__name__},
        )

    def _parse(self, method: str, url: str, response: requests.Response) -> FhirResponse:
        body: Any = None
        parse_error: str | None = None
        if response.content:
            try:
                body = response.json()
            except ValueError as exc:
                parse_error = str(exc)
        if response.ok:
            if parse_error is not None or (body is not None and not isinstance(body, dict)):
                raise SlicerMCPError(
                    f"FHIR server {self.name!r} answered HTTP {response.status_code} with a body that is not a "
                    "FHIR JSON resource; check that the url points at the FHIR base, not a web page.",
                    code=ErrorCode.FHIR_HTTP_ERROR,
                    details={
                        "server": self.name,
                        "status": response.status_code,
                        "content_type": response.headers.get("Content-Type", ""),
                        "parse_error": parse_error,
                    },
                )
            return FhirResponse(response.status_code, body or {}, dict(response.headers))
        raise self._http_error(method, url, response.status_code, body)

    def scrub(self, text: str) -> str:
        """`text` without this server's configured secrets (a server may echo the key it received)."""
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return text

    def _http_error(self, method: str, url: str, status: int, body: Any) -> SlicerMCPError:
        text = self.scrub(outcome_text(body))
        details: dict[str, Any] = {"server": self.name, "status": status, "method": method, "url": url}
        if text:
            details["operation_outcome"] = text
        suffix = f" Server says: {text}" if text else ""
        write = method in ("POST", "PUT", "PATCH")
        if status in (409, 412):
            return SlicerMCPError(
                "the resource changed on the server since it was read (version conflict); read it again with "
                "fhir_read_resource, re-apply the change and update with the new version." + suffix,
                code=ErrorCode.FHIR_CONFLICT,
                details=details,
            )
        if status == 422 or (write and status == 400 and _issue_codes(body) & VALIDATION_ISSUE_CODES):
            return SlicerMCPError(
                "the FHIR server rejected the resource as invalid; fix the listed elements and send it again."
                + suffix,
                code=ErrorCode.FHIR_VALIDATION_ERROR,
                details=details,
            )
        if status in (401, 403):
            hint = (
                "check bearer_token / api_key for this server in fhir_servers (use ${ENV} substitution)"
                if status == 401
                else "the credentials are valid but not allowed to do this"
            )
            message = f"FHIR server {self.name!r} refused the request (HTTP {status}): {hint}." + suffix
        elif status == 404:
            message = "not found on the FHIR server (HTTP 404); check the resource type and id." + suffix
        elif status == 410:
            message = "the resource was deleted on the FHIR server (HTTP 410)." + suffix
        else:
            message = f"FHIR server {self.name!r} answered HTTP {status}." + suffix
        return SlicerMCPError(message, code=ErrorCode.FHIR_HTTP_ERROR, details=details)
