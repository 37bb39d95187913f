"""The RIS DICOM services: Modality Worklist (C-FIND) and MPPS (N-CREATE / N-SET) SCP.

Statuses are PS3.4's: C-FIND answers Pending (FF00) per item, A900 for an identifier with
malformed values, C001 when the database fails. MPPS follows Annex F: N-CREATE must start
IN PROGRESS (else 0106) and a repeated SOP Instance is 0111; N-SET on an unknown instance
is 0112 and on a COMPLETED or DISCONTINUED step 0110 with Error ID A710 ("may no longer be
updated").
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Iterator
from typing import Any

from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, generate_uid
from pynetdicom import AE, evt
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    ModalityPerformedProcedureStep,
    ModalityWorklistInformationFind,
    Verification,
)

from ..core.errors import SlicerMCPError
from ..dicom.missing_dataset import DEFAULT_GRACE_S, MissingDataSetWatch
from ..dicom.status import MAY_NO_LONGER_BE_UPDATED, Status
from .db import RisConflict, RisNotFound
from .mpps_rules import MISSING_ATTRIBUTE_VALUE, completion_problems, series_records
from .store import RisStore
from .wire import compile_encoder, find_response_command, p_data_pdus
from .worklist import (
    SPS,
    InvalidQuery,
    Item,
    compile_projection,
    compile_query,
    entry_to_item,
    prefilter,
    set_character_set,
)

log = logging.getLogger(__name__)

MPPS_STATES = ("IN PROGRESS", "COMPLETED", "DISCONTINUED")
EMPTY_IDENTIFIER = "empty identifier: send the query's matching and return keys"


def _status(code: int, comment: str | None = None, error_id: int | None = None) -> Dataset:
    ds = Dataset()
    ds.Status = int(code)
    if comment:
        ds.ErrorComment = comment[:64]
    if error_id is not None:
        ds.ErrorID = error_id
    return ds


def performed_series(ds: Dataset) -> list[dict[str, Any]]:
    """The Performed Series Sequence as plain records for the store (images and SEG/SR alike)."""
    return series_records(ds)


_BATCH = 64  # pending responses per socket write (and per check for a C-CANCEL)


def _encode_all(event: Any, query: Dataset, items: list[Item]) -> list[bytes] | None:
    """Every pending response as ready P-DATA PDUs, or None when one of them needs pydicom (text
    beyond ASCII, a transfer syntax other than little endian) and all go the pynetdicom way."""
    syntax = str(event.context.transfer_syntax)
    if syntax not in (ExplicitVRLittleEndian, ImplicitVRLittleEndian) or event.assoc.dul.socket is None:
        return None
    encode = compile_encoder(query, query.get("SpecificCharacterSet"), syntax == ExplicitVRLittleEndian)
    command = find_response_command(str(event.request.AffectedSOPClassUID), int(event.request.MessageID))
    max_pdu = int(event.assoc.requestor.maximum_length or 0)
    context_id = int(event.context.context_id)
    out = []
    for item in items:
        data = encode(item)
        if data is None:
            return None
        out.append(p_data_pdus(context_id, command, data, max_pdu))
    return out


def encodes(response: Dataset, explicit: bool) -> bool:
    """Whether pydicom can write `response` (pynetdicom would fail the whole C-FIND with 0xC312)."""
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset

    buffer = DicomBytesIO()
    buffer.is_little_endian, buffer.is_implicit_VR = True, not explicit
    try:
        write_dataset(buffer, response)
    except (UnicodeError, ValueError, TypeError, OverflowError):
        return False
    return True


def _on_rejected(event: Any) -> None:
    """Every refused association is logged with pynetdicom's reason (slots full, wrong AE title...)."""
    rj = event.assoc.acceptor.primitive
    reason = getattr(rj, "reason_str", None) or getattr(rj, "result_str", "") if rj is not None else ""
    log.warning(
        "worklist SCP refused an association from %s (called %s): %s",
        event.assoc.requestor.ae_title,
        event.assoc.requestor.requested_ae_title
        if hasattr(event.assoc.requestor, "requested_ae_title")
        else "?",
        reason or "rejected",
    )


def _on_aborted(event: Any) -> None:
    log.info(
        "worklist SCP: association from %s ended by an abort (a peer gone, or silent for the timeout; "
        "e.g. a C-FIND whose identifier never arrived)",
        event.assoc.requestor.ae_title,
    )


def _no_delay(event: Any) -> None:
    """Send each C-FIND response at once: without TCP_NODELAY, Nagle's algorithm and the peer's
    delayed ACK hold back small PDUs (tens of ms per response on loopback)."""
    sock = getattr(getattr(event.assoc.dul, "socket", None), "socket", None)
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class RisScp:
    """One pynetdicom AE serving worklist, MPPS and verification on a loopback port."""

    def __init__(
        self,
        store: RisStore,
        ae_title: str = "MINIRIS",
        host: str = "127.0.0.1",
        port: int = 11112,
        *,
        max_associations: int = 64,
        timeout_s: float = 10.0,
        calling_aets: tuple[str, ...] = (),
        check_called_aet: bool = False,
    ):
        self.store = store
        self.ae_title = ae_title
        self.host = host
        self.port = port
        self.max_associations = max_associations
        self.timeout_s = timeout_s
        self.calling_aets = calling_aets
        self.check_called_aet = check_called_aet
        self._ae: AE | None = None
        self._callers: set[str] = set()
        self._lock = threading.Lock()
        self._dataset_watch: MissingDataSetWatch | None = None

    def start(self) -> RisScp:
        ae = AE(ae_title=self.ae_title)
        for sop_class in (ModalityWorklistInformationFind, ModalityPerformedProcedureStep, Verification):
            ae.add_supported_context(sop_class)
        ae.maximum_pdu_size = 0
        # a connection that says nothing, or stops half way, is dropped after timeout_s, so silent
        # sockets cannot hold every association slot (pynetdicom's defaults: 10 slots, 30-60 s)
        ae.maximum_associations = self.max_associations
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = self.timeout_s
        ae.require_called_aet = self.check_called_aet
        ae.require_calling_aet = list(self.calling_aets)
        handlers = [
            (evt.EVT_CONN_OPEN, _no_delay),
            (evt.EVT_ESTABLISHED, self._on_established),
            (evt.EVT_REJECTED, _on_rejected),
            (evt.EVT_ABORTED, _on_aborted),
            (evt.EVT_C_FIND, self._on_find),
            (evt.EVT_N_CREATE, self._on_n_create),
            (evt.EVT_N_SET, self._on_n_set),
        ]
        # a request announcing a data set it never sends is answered with a status after a short
        # grace, instead of holding the modality until the network timeout (dicom/missing_dataset.py)
        watch = MissingDataSetWatch(min(DEFAULT_GRACE_S, self.timeout_s / 2))
        server = ae.start_server((self.host, self.port), block=False, evt_handlers=handlers + watch.handlers)
        self._dataset_watch = watch.start(ae)
        self._ae = ae
        self.port = server.server_address[1]
        log.info("RIS MWL/MPPS SCP %s listening on %s:%d", self.ae_title, self.host, self.port)
        return self

    def stop(self) -> None:
        """Close the port and abort open associations (a server shutdown alone leaves them running)."""
        if self._dataset_watch is not None:
            self._dataset_watch.stop()
            self._dataset_watch = None
        if self._ae is not None:
            self._ae.shutdown()
            self._ae = None

    def _on_established(self, event: Any) -> None:
        """One log line per calling AE title the first time it connects (who uses this worklist)."""
        caller = str(event.assoc.requestor.ae_title).strip()
        with self._lock:
            new = caller not in self._callers
            self._callers.add(caller)
        if new:
            log.info("worklist SCP: first association from calling AE %s", caller)

    # -- Modality Worklist -------------------------------------------------------------------------

    def matches(self, query: Dataset) -> Iterator[Item]:
        """The worklist items matching `query` (the store prefilters with SQL, the matcher decides)."""
        check = compile_query(query)
        pre = prefilter(query)
        for entry in self.store.worklist_rows(pre.where, pre.params):
            item = entry_to_item(entry)
            if check(item):
                yield item

    def find(self, query: Dataset) -> Iterator[Dataset]:
        """The matching worklist items as responses (also used without a network, e.g. by tests)."""
        respond = compile_projection(query)
        requested = query.get("SpecificCharacterSet")
        for item in self.matches(query):
            response = respond(item)
            set_character_set(response, requested)
            yield response

    def _on_find(self, event: Any) -> Iterator[tuple[int | Dataset, Dataset | None]]:
        caller = event.assoc.requestor.ae_title
        try:
            query = event.identifier
        except Exception:  # undecodable identifier
            log.info("worklist query from %s refused: the identifier cannot be decoded", caller)
            yield _status(Status.IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS, "identifier cannot be decoded"), None
            return
        if not len(query):
            # no matching and no return keys (pynetdicom sends Dataset() as no data set at all:
            # dicom/missing_dataset.py turns that silence into this empty identifier)
            log.info("worklist query from %s refused: empty identifier", caller)
            yield _status(Status.IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS, EMPTY_IDENTIFIER), None
            return
        try:
            items = list(self.matches(query))
        except InvalidQuery as exc:
            # the value may be a birth date: it goes back to the requester only, not into the log
            log.info(
                "worklist query from %s refused: malformed date, time or range",
                caller,
            )
            yield _status(Status.IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS, str(exc)), None
            return
        except SlicerMCPError as exc:
            log.warning("worklist query failed: %s", exc.code)
            yield _status(Status.UNABLE_TO_PROCESS, "worklist database unavailable"), None
            return
        log.info("worklist query from %s: %d items", caller, len(items))
        encoded = _encode_all(event, query, items)
        if encoded is not None:
            # ready PDUs written in a few socket writes; pynetdicom then sends the final Success
            sock = event.assoc.dul.socket
            for start in range(0, len(encoded), _BATCH):
                if event.is_cancelled:
                    yield Status.CANCEL, None
                    return
                sock.send(b"".join(encoded[start : start + _BATCH]))
            return
        respond = compile_projection(query)
        requested = query.get("SpecificCharacterSet")
        explicit = str(event.context.transfer_syntax) != ImplicitVRLittleEndian
        for item in items:
            if event.is_cancelled:
                yield Status.CANCEL, None
                return
            response = respond(item)
            set_character_set(response, requested)
            if not encodes(response, explicit):
                # one stored row DICOM cannot carry (e.g. a non-ASCII AE title written before values were
                # checked) must not end the answer for everyone: it is left out and named by its step id
                log.warning(
                    "worklist item %s left out of a C-FIND answer: a value cannot be encoded in DICOM",
                    item.get(SPS, [{}])[0].get("ScheduledProcedureStepID", "?"),
                )
                continue
            yield Status.PENDING, response

    # -- MPPS --------------------------------------------------------------------------------------

    def _on_n_create(self, event: Any) -> tuple[int | Dataset, Dataset | None]:
        req = event.request
        try:
            ds = event.attribute_list
        except Exception:
            return _status(Status.INVALID_ATTRIBUTE_VALUE, "attribute list cannot be decoded"), None
        if not len(ds):
            log.info("MPPS N-CREATE from %s refused: empty attribute list", event.assoc.requestor.ae_title)
        status = str(ds.get("PerformedProcedureStepStatus", "") or "")
        if not status:
            return _status(Status.MISSING_ATTRIBUTE, "Performed Procedure Step Status missing"), None
        if status != "IN PROGRESS":
            return _status(Status.INVALID_ATTRIBUTE_VALUE, "N-CREATE must set status IN PROGRESS"), None
        uid = str(req.AffectedSOPInstanceUID) if req.AffectedSOPInstanceUID else generate_uid()
        scheduled = (ds.get("ScheduledStepAttributesSequence") or [Dataset()])[0]
        try:
            record = self.store.mpps_create(
                uid,
                study_instance_uid=str(scheduled.get("StudyInstanceUID", "")) or None,
                accession_number=str(scheduled.get("AccessionNumber", "")) or None,
                sps_id=str(scheduled.get("ScheduledProcedureStepID", "")) or None,
                station_aet=str(ds.get("PerformedStationAETitle", "")) or event.assoc.requestor.ae_title,
                modality=str(ds.get("Modality", "")) or None,
                start_date=str(ds.get("PerformedProcedureStepStartDate", "")) or None,
                start_time=str(ds.get("PerformedProcedureStepStartTime", "")) or None,
                series=performed_series(ds),
            )
        except RisConflict:
            return _status(Status.DUPLICATE_SOP_INSTANCE, "MPPS SOP Instance already exists"), None
        except SlicerMCPError as exc:
            log.warning("MPPS N-CREATE failed: %s", exc.code)
            return _status(Status.PROCESSING_FAILURE, "RIS database unavailable"), None
        log.info("MPPS %s IN PROGRESS (worklist entry %s)", uid, record.mwl_id)
        if not req.AffectedSOPInstanceUID:
            ds.AffectedSOPInstanceUID = uid
        return Status.SUCCESS, ds

    def _incomplete(self, uid: str, ds: Dataset) -> Dataset | None:
        """Missing Attribute Value when the N-SET would leave a COMPLETED step without what it must carry."""
        try:
            stored = self.store.get_mpps(uid)
        except SlicerMCPError:
            return None  # unknown instance or database down: mpps_set answers with its own status
        have = {"end_date": stored.end, "end_time": stored.end, "series": stored.series}
        problems = completion_problems(ds, have)
        if not problems:
            return None
        log.warning("MPPS %s: COMPLETED refused (%d missing attributes)", uid, len(problems))
        return _status(MISSING_ATTRIBUTE_VALUE, "; ".join(problems))

    def _on_n_set(self, event: Any) -> tuple[int | Dataset, Dataset | None]:
        uid = str(event.request.RequestedSOPInstanceUID)
        try:
            ds = event.modification_list
        except Exception:
            return _status(Status.INVALID_ATTRIBUTE_VALUE, "modification list cannot be decoded"), None
        if not len(ds):
            log.info("MPPS N-SET from %s: empty modification list", event.assoc.requestor.ae_title)
        status = str(ds.get("PerformedProcedureStepStatus", "") or "") or None
        if status is not None and status not in MPPS_STATES:
            return _status(Status.INVALID_ATTRIBUTE_VALUE, f"unknown status {status[:30]}"), None
        series = performed_series(ds) if "PerformedSeriesSequence" in ds else None
        if status == "COMPLETED":
            refused = self._incomplete(uid, ds)
            if refused is not None:
                return refused, None
        try:
            record = self.store.mpps_set(
                uid,
                status,
                end_date=str(ds.get("PerformedProcedureStepEndDate", "")) or None,
                end_time=str(ds.get("PerformedProcedureStepEndTime", "")) or None,
                series=series,
            )
        except RisNotFound:
            return _status(Status.NO_SUCH_OBJECT_INSTANCE, "no such MPPS instance"), None
        except RisConflict:
            return (
                _status(
                    Status.PROCESSING_FAILURE,
                    "Performed Procedure Step may no longer be updated",
                    MAY_NO_LONGER_BE_UPDATED,
                ),
                None,
            )
        except SlicerMCPError as exc:
            log.warning("MPPS N-SET failed: %s", exc.code)
            return _status(Status.PROCESSING_FAILURE, "RIS database unavailable"), None
        log.info("MPPS %s now %s", uid, record.status)
        return Status.SUCCESS, ds
