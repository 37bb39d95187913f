"""RisService: the RIS domain of a server process (store, DICOM services, virtual modality).

Tools get it with `services.domain(RisService)`; `slicer-mcp ris serve` builds one directly. The
store opens (and migrates, and seeds a new database) on first use, so a server that never
touches the RIS never opens its database.
"""

from __future__ import annotations

import errno
import logging
import re
import threading
from datetime import datetime
from pathlib import Path

from ..core.breaker import CircuitBreaker
from ..core.config import Config
from ..core.domain_config import DicomNode
from ..core.errors import ErrorCode, InvalidParameter, SlicerMCPError
from ..core.localhost import user_data_dir
from .db import database_breaker
from .modality import Acquisition, VirtualCR
from .scp import RisScp
from .seed import seed
from .store import RisStore

log = logging.getLogger(__name__)


class PortInUse(SlicerMCPError):
    """The MWL port is taken, usually by a `slicer-mcp ris serve` this process can use instead."""

    default_code = ErrorCode.CONFIG_ERROR


class RisService:
    def __init__(self, config: Config):
        self.config = config
        self.settings = config.mini_ris
        self._store: RisStore | None = None
        # the database's breaker outlives a store that failed to open: the next open asks it first
        self._db_breaker = database_breaker(self.settings, config.breaker)
        self.scp: RisScp | None = None
        self._lock = threading.Lock()

    @property
    def store(self) -> RisStore:
        with self._lock:
            if self._store is None:
                store = RisStore.open(self.settings, breaker=self._db_breaker)
                if self.settings.seed_on_create and store.is_empty():
                    seed(store, self.settings.modality.ae_title, self.settings.modality.station_name)
                self._store = store
            return self._store

    def breakers(self) -> list[CircuitBreaker]:
        """The MySQL/MariaDB server's breaker (`slicer://status`); SQLite is a local file, no peer."""
        return [self._db_breaker] if self.settings.backend == "mysql" else []

    def start_scp(self, port: int | None = None) -> RisScp:
        """Serve MWL and MPPS on `port` (default mini_ris.mwl_port) from this process."""
        if self.scp is None:
            scp = RisScp(
                self.store,
                self.settings.mwl_ae_title,
                self.settings.mwl_host,
                self.settings.mwl_port if port is None else port,
                max_associations=self.settings.mwl_max_associations,
                timeout_s=self.settings.mwl_timeout_s,
                calling_aets=tuple(self.settings.mwl_calling_aets),
                check_called_aet=self.settings.mwl_check_called_aet,
            )
            try:
                scp.start()
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    raise PortInUse(
                        f"port {scp.port} is already in use; another `slicer-mcp ris serve` may be running "
                        "(then use it), or set mini_ris.mwl_port to a free port",
                        details={"port": scp.port},
                    ) from exc
                raise SlicerMCPError(
                    f"cannot serve the worklist on {scp.host}:{scp.port} ({exc.strerror}); "
                    "check mini_ris.mwl_host and mini_ris.mwl_port",
                    code=ErrorCode.CONFIG_ERROR,
                    details={"host": scp.host, "port": scp.port},
                ) from exc
            self.scp = scp
        return self.scp

    def ensure_scp(self) -> DicomNode:
        """The MWL/MPPS node the virtual modality talks to: our own SCP, started if nothing serves
        the configured port, or the `ris serve` process already there."""
        if self.scp is None:
            try:
                self.start_scp()
            except PortInUse:
                log.info("MWL port %d is served by another process; using it", self.settings.mwl_port)
        port = self.scp.port if self.scp is not None else self.settings.mwl_port
        return DicomNode(host=self.settings.modality.mwl_host, port=port, ae_title=self.settings.mwl_ae_title)

    def pacs_node(self) -> tuple[str, DicomNode]:
        name = self.settings.modality.pacs_node or self.config.current_node
        if not name or name not in self.config.nodes:
            raise InvalidParameter(
                "no PACS to send to: set mini_ris.modality.pacs_node (or current_node) to a name in `nodes`, "
                "or call with send_to_pacs=false",
                details={"nodes": sorted(self.config.nodes)},
            )
        return name, self.config.nodes[name]

    def acquire(
        self, accession_number: str, image_mode: str, send_to_pacs: bool, image_description: str | None = None
    ) -> Acquisition:
        """Run the virtual CR for a scheduled accession: as the entry's station AE, on its date."""
        entries = self.store.list_worklist(accession_number=accession_number)
        active = [e for e in entries if e.status == "SCHEDULED"]
        if not active:
            states = sorted({e.status for e in entries})
            raise SlicerMCPError(
                f"accession {accession_number} has no SCHEDULED worklist entry"
                + (f" (entries are {', '.join(states)})" if states else "")
                + "; create one with create_mwl_from_order",
                code=ErrorCode.RIS_NOT_FOUND,
                details={"accession_number": accession_number, "states": states},
            )
        entry = active[0]
        m = self.settings.modality
        station = VirtualCR(
            entry.scheduled_station_aet,
            m.station_name,
            self.ensure_scp(),
            m.ai_endpoint,
            m.ai_api_key.get_secret_value() if m.ai_api_key else None,
        )
        pacs = self.pacs_node()[1] if send_to_pacs else None
        output = None if send_to_pacs else self._output_dir(accession_number)
        return station.acquire(
            accession_number, entry.scheduled_date, image_mode, pacs, output, image_description
        )

    def _output_dir(self, accession_number: str) -> Path:
        base = (
            Path(self.config.dicom_storage_dir)
            if self.config.dicom_storage_dir
            else user_data_dir() / "virtual-cr"
        )
        # an accession number is free text (SH allows / and .): only safe characters name the folder
        safe = re.sub(r"[^A-Za-z0-9_-]", "_", accession_number)
        return base / f"{safe}-{datetime.now():%Y%m%d%H%M%S}"

    def close(self) -> None:
        if self.scp is not None:
            self.scp.stop()
            self.scp = None
        if self._store is not None:
            self._store.close()
            self._store = None
