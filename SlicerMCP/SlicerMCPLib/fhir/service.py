"""FhirService: the configured FHIR servers, which one is current, and one client per server.

The same verbs as DicomService: `server(name)` / `node(name)` resolve a name (or the current one),
`current`, `switch(name)`, `verify(name)`, `list_servers()` / `list_nodes()`."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from ..core.breaker import BreakerRegistry, CircuitBreaker, url_address
from ..core.config import Config
from ..core.deadline import Deadline
from ..core.domain_config import FhirServer
from ..core.errors import ConfigError, ErrorCode, InvalidParameter, SlicerMCPError
from .client import FhirClient
from .models import FhirCapability, FhirServerInfo, FhirServerList

log = logging.getLogger(__name__)

T = TypeVar("T")


class FhirService:
    """Holds `fhir_servers` / `current_fhir` from the config; clients are made on first use."""

    def __init__(self, config: Config):
        self.servers = dict(config.fhir_servers)
        self._current = config.current_fhir or (next(iter(self.servers)) if len(self.servers) == 1 else None)
        self._clients: dict[str, FhirClient] = {}
        self._lock = threading.Lock()
        self._breakers = BreakerRegistry(config.breaker)  # kept when the clients close
        self.call_timeout_s = config.timeouts.fhir_call_s

    def within_call(self, work: Callable[[], T]) -> T:
        """Run one tool call's FHIR work under its total deadline (`timeouts.fhir_call_s`): a request,
        retry or wait that would end after it fails with SLICER_TIMEOUT instead."""
        with Deadline(self.call_timeout_s, "the FHIR tool call", "timeouts.fhir_call_s").bounded():
            return work()

    @property
    def current(self) -> str | None:
        """The server a call without a server name uses (switch_fhir_server changes it)."""
        return self._current

    def server(self, name: str | None = None) -> tuple[str, FhirServer]:
        """The named server, or the current one; the error says which names exist."""
        if not self.servers:
            raise ConfigError(
                "no FHIR server is configured; add one under fhir_servers in the config YAML "
                "(url, and bearer_token: ${ENV_NAME} for secrets) and set current_fhir",
                details={"config_key": "fhir_servers"},
            )
        chosen = name or self._current
        if chosen is None:
            raise InvalidParameter(
                f"no current FHIR server; call switch_fhir_server with one of {sorted(self.servers)}",
                details={"servers": sorted(self.servers)},
            )
        if chosen not in self.servers:
            raise InvalidParameter(
                f"unknown FHIR server {chosen!r}; configured: {sorted(self.servers)}",
                details={"servers": sorted(self.servers)},
            )
        return chosen, self.servers[chosen]

    def client(self, name: str | None = None) -> FhirClient:
        """The client of server `name` (default: the current one)."""
        chosen, server = self.server(name)
        with self._lock:
            if chosen not in self._clients:
                breaker = self._breakers.get(f"FHIR server {chosen!r}", url_address(server.url))
                self._clients[chosen] = FhirClient(chosen, server, breaker)
            return self._clients[chosen]

    def breakers(self) -> list[CircuitBreaker]:
        """The breaker of every server called so far (`slicer://status`)."""
        return self._breakers.breakers()

    def list_servers(self) -> FhirServerList:
        return FhirServerList(
            current=self._current,
            servers=[
                FhirServerInfo(
                    name=name,
                    url=s.url,
                    description=s.description,
                    auth=s.auth_kind,
                    current=name == self._current,
                )
                for name, s in self.servers.items()
            ],
        )

    def switch(self, name: str) -> str:
        chosen, _ = self.server(name)
        with self._lock:
            self._current = chosen
        log.info("current FHIR server is now %s", chosen)
        return chosen

    def verify(self, name: str | None = None) -> FhirCapability:
        """Read /metadata: the FHIR version, the software and the resource types it serves."""
        client = self.client(name)
        t0 = time.perf_counter()
        body = client.request("GET", "metadata").body
        elapsed = (time.perf_counter() - t0) * 1000
        if body.get("resourceType") != "CapabilityStatement":
            raise SlicerMCPError(
                f"{client.base_url}/metadata answered with a {body.get('resourceType')}, not a CapabilityStatement; "
                "check that the url is a FHIR base",
                code=ErrorCode.FHIR_HTTP_ERROR,
                details={"server": client.name},
            )
        software = body.get("software") or {}
        resources = sorted(
            {
                str(r.get("type"))
                for rest in body.get("rest") or []
                for r in rest.get("resource") or []
                if r.get("type")
            }
        )
        return FhirCapability(
            server=client.name,
            url=client.base_url,
            fhir_version=body.get("fhirVersion"),
            software_name=software.get("name"),
            software_version=software.get("version"),
            implementation=(body.get("implementation") or {}).get("description"),
            resources=resources,
            response_ms=round(elapsed, 1),
        )

    def close(self) -> None:
        with self._lock:
            for client in self._clients.values():
                client.close()
            self._clients.clear()
