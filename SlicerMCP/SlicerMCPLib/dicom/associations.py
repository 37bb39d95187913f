"""The one place that opens DICOM associations and turns their failures into error codes.

Every DIMSE operation of the package (C-ECHO, C-FIND, C-GET, C-MOVE, C-STORE) goes through
`open_association`, so timeouts, the calling AE and the mapping of a refused or unreachable
peer to DICOM_NODE_UNREACHABLE / DICOM_ASSOCIATION_REJECTED live here only. So does the
circuit breaker of each node: a `GuardedNode` (what `DicomService` hands out) carries its peer's
breaker; an association that cannot be established because nothing answers counts as a failure,
a rejection or any DIMSE status proves the node alive.
"""

from __future__ import annotations

import logging
import queue
import struct
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

from pydantic import PrivateAttr
from pydicom.dataset import Dataset
from pynetdicom import AE, Association, evt
from pynetdicom import _config as pynetdicom_config
from pynetdicom._handlers import (
    standard_dimse_recv_handler,
    standard_dimse_sent_handler,
    standard_pdu_recv_handler,
    standard_pdu_sent_handler,
)
from pynetdicom.pdu_primitives import A_ABORT, A_ASSOCIATE, P_DATA
from pynetdicom.presentation import PresentationContext, build_context
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from ..core.breaker import CircuitBreaker, guarded
from ..core.domain_config import DicomNode
from ..core.errors import ErrorCode, SlicerMCPError
from .models import EchoResult
from .status import Status, code_to_category

log = logging.getLogger(__name__)
T = TypeVar("T")

# Uncompressed transfer syntaxes we can always decode with numpy alone.
UNCOMPRESSED = ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2", "1.2.840.10008.1.2.2"]
MAX_CONTEXTS = 128
# Largest PDU we accept: big PDUs cut per-PDU Python overhead when a PACS sends us images.
MAX_PDU = 4 * 1024 * 1024
# pynetdicom's DUL thread sleeps 1 ms whenever no PDU is waiting; with 16 kB PDUs from a PACS
# that sleep, not decoding, bounds a transfer (300 CT slices: 1.4 s -> 1.0 s at 0.1 ms).
DUL_LOOP_DELAY_S = 0.0001


def node_label(node: DicomNode, name: str | None = None) -> str:
    """How a node appears in messages: config name and address, never patient data."""
    return f"{name + ' ' if name else ''}({node.ae_title}@{node.host}:{node.port})"


class GuardedNode(DicomNode):
    """A configured node bound to the circuit breaker of its peer (state of this process, not config)."""

    _breaker: CircuitBreaker | None = PrivateAttr(default=None)

    @classmethod
    def bind(cls, node: DicomNode, breaker: CircuitBreaker) -> GuardedNode:
        bound = cls.model_validate(node.model_dump())
        bound._breaker = breaker
        return bound

    @property
    def breaker(self) -> CircuitBreaker | None:
        return self._breaker


def _unreachable(exc: BaseException) -> bool:
    return isinstance(exc, SlicerMCPError) and exc.code == ErrorCode.DICOM_NODE_UNREACHABLE


def through_breaker(node: DicomNode, reach: Callable[[], T]) -> T:
    """`reach()` (opening an association, sending a DICOMweb request) through the node's breaker:
    DICOM_NODE_UNREACHABLE counts as a failure, anything else proves the node alive."""
    return guarded(node.breaker if isinstance(node, GuardedNode) else None, reach, _unreachable)


@contextmanager
def open_association(
    node: DicomNode,
    calling_aet: str,
    contexts: Sequence[PresentationContext],
    *,
    node_name: str | None = None,
    ext_neg: list[Any] | None = None,
    evt_handlers: list[tuple[Any, Any]] | None = None,
    retry: bool = False,
) -> Iterator[Association]:
    """An established association with `node`, released (or aborted on error) on exit.

    Raises DICOM_NODE_UNREACHABLE when nothing answers (connection refused, timeout) and
    DICOM_ASSOCIATION_REJECTED when the peer refuses us (wrong called or calling AE, no
    acceptable presentation context). With `retry` (read-only operations only), an unreachable
    node is tried again `node.retries` times after 1, 2, 4... seconds.
    """
    if len(contexts) > MAX_CONTEXTS:
        raise SlicerMCPError(
            f"too many presentation contexts ({len(contexts)} > {MAX_CONTEXTS}); send fewer kinds of objects at once",
            code=ErrorCode.INVALID_PARAMETER,
        )
    ae = AE(ae_title=calling_aet)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = node.timeout_s
    ae.connection_timeout = min(node.timeout_s, 10.0)
    ae.requested_contexts = list(contexts)
    ae.maximum_pdu_size = MAX_PDU
    label = node_label(node, node_name)
    handlers = [*(evt_handlers or []), (evt.EVT_ACSE_RECV, _note_peer_abort)]
    attempts = 1 + (node.retries if retry else 0)
    try:
        assoc = through_breaker(node, lambda: _establish(ae, node, label, attempts, ext_neg, handlers))
    except BaseException:
        ae.shutdown()
        raise
    ok = False
    try:
        yield assoc
        ok = True
    finally:
        if assoc.is_established:
            if ok:
                assoc.release()
            else:
                assoc.abort()
        ae.shutdown()


def _establish(
    ae: AE,
    node: DicomNode,
    label: str,
    attempts: int,
    ext_neg: list[Any] | None,
    handlers: list[tuple[Any, Any]],
) -> Association:
    """An established association, after up to `attempts` tries while the node is unreachable."""
    for attempt in range(attempts):
        assoc = ae.associate(
            node.host, node.port, ae_title=node.ae_title, ext_neg=ext_neg, evt_handlers=handlers
        )
        if assoc.is_established:
            tune_dul(assoc)
            fast_receive(assoc)
            log.debug("association with %s established", label)  # tests count associations by this line
            return assoc
        _pick_up_late_rejection(assoc)
        try:
            _raise_for_failed(assoc, node, label)
        except SlicerMCPError as exc:
            if exc.code != ErrorCode.DICOM_NODE_UNREACHABLE or attempt == attempts - 1:
                raise
        delay = 2.0**attempt
        log.info("DICOM node %s unreachable, trying again in %.0f s", label, delay)
        time.sleep(delay)
    raise AssertionError("unreachable: the last attempt returns or raises")


def _pick_up_late_rejection(assoc: Association) -> None:
    """Take a rejection pynetdicom received but did not read.

    pynetdicom's reactor queues the peer's A-ASSOCIATE-RJ and then closes the socket; when the
    requesting thread runs only after that close, it sees "not connected", aborts and never reads
    the queue (pynetdicom 3.0 acse._negotiate_as_requestor). Under load that turned 1 in 200 of
    Orthanc's rejections into DICOM_NODE_UNREACHABLE, which also counts against the breaker.
    """
    dul = getattr(assoc, "dul", None)
    if assoc.acceptor.primitive is not None or dul is None:
        return
    while True:
        try:
            item = dul.to_user_queue.get_nowait()
        except queue.Empty:
            return
        if isinstance(item, A_ASSOCIATE) and item.result in (0x01, 0x02):
            assoc.acceptor.primitive = item
            assoc.is_rejected = True
            return


def tune_dul(assoc: Association, delay_s: float = DUL_LOOP_DELAY_S) -> None:
    """Set the DUL reactor's idle sleep of one association (a private pynetdicom knob; 1 ms by default).

    Short only while data flows: an idle association polling every 0.1 ms costs CPU.
    """
    dul = getattr(assoc, "dul", None)
    if dul is not None and hasattr(dul, "_run_loop_delay"):
        dul._run_loop_delay = delay_s


_STANDARD_LOG_HANDLERS = (
    (evt.EVT_DIMSE_RECV, standard_dimse_recv_handler),
    (evt.EVT_DIMSE_SENT, standard_dimse_sent_handler),
    (evt.EVT_PDU_RECV, standard_pdu_recv_handler),
    (evt.EVT_PDU_SENT, standard_pdu_sent_handler),
)


class _Decoded:
    """Stands in for a decoded P-DATA-TF PDU: the state machine only asks it for its primitive."""

    __slots__ = ("primitive",)

    def __init__(self, primitive: P_DATA):
        self.primitive = primitive

    def to_primitive(self) -> P_DATA:
        return self.primitive


def pdata_values(body: bytes | bytearray) -> list[tuple[int, bytes]] | None:
    """The (presentation context ID, value with its message control header) items of a
    P-DATA-TF PDU's body (after the 6-byte PDU header); None when the items do not fit."""
    values: list[tuple[int, bytes]] = []
    view = memoryview(body)
    pos, length = 0, len(body)
    while pos < length:
        if pos + 6 > length:
            return None
        (item_length,) = struct.unpack_from(">L", body, pos)
        end = pos + 4 + item_length
        if item_length < 2 or end > length:
            return None
        values.append((body[pos + 4], bytes(view[pos + 5 : end])))
        pos = end
    return values


def fast_receive(assoc: Association) -> None:
    """Cheaper PDU reception for one established association (private pynetdicom knobs).

    A PACS sends an image series as thousands of 16 kB P-DATA-TF PDUs; pynetdicom reads each in
    4 kB `recv` calls into a growing bytearray, decodes it into PDU item objects and calls its
    log handlers for every PDU and message even when nothing shows their lines. Here a PDU is read
    with `recv_into` a buffer of its size, a P-DATA-TF is split into its values directly, and those
    handlers are unbound unless pynetdicom's logger lets INFO through (we cap it at WARNING). The
    state machine, the DIMSE decoding and every other PDU type take pynetdicom's own path.
    """
    dul = getattr(assoc, "dul", None)
    if dul is None or not hasattr(dul, "_read_pdu_data") or not hasattr(dul, "_decode_pdu"):
        return
    quiet = not logging.getLogger("pynetdicom").isEnabledFor(logging.INFO)  # they log at INFO and DEBUG
    # pynetdicom formats every C-FIND/C-GET/C-MOVE answer's identifier for an INFO line whether or not
    # it is shown: half of a 300-match C-FIND's own CPU. Formatted only when the lines can show.
    pynetdicom_config.LOG_RESPONSE_IDENTIFIERS = not quiet
    if quiet:
        for event, handler in _STANDARD_LOG_HANDLERS:
            if handler in [h for h, _ in assoc.get_handlers(event) or []]:
                assoc.unbind(event, handler)
    original = dul._read_pdu_data

    def read_exact(sock: Any, size: int) -> bytearray | None:
        buf = bytearray(size)
        view = memoryview(buf)
        got = 0
        while got < size:
            n = sock.recv_into(view[got:], size - got)
            if n == 0:
                return None
            got += n
        return buf

    def read_pdu() -> None:
        wrapper = dul.socket
        sock = getattr(wrapper, "socket", None)
        if sock is None or assoc.get_handlers(evt.EVT_DATA_RECV) or assoc.get_handlers(evt.EVT_PDU_RECV):
            original()
            return
        try:
            head = read_exact(sock, 6)
            if head is None:
                dul.event_queue.put("Evt17")  # closed before a whole PDU arrived, as pynetdicom does
                return
            pdu_type, _, length = struct.unpack(">BBL", head)
            if pdu_type not in (0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07):
                log.error("unknown PDU type 0x%02X received", pdu_type)
                dul.event_queue.put("Evt19")
                return
            body = read_exact(sock, length)
        except OSError:
            log.error("connection closed before the entire PDU was received")
            dul.event_queue.put("Evt17")
            return
        if body is None:
            dul.event_queue.put("Evt17")
            return
        if pdu_type != 0x04:
            try:
                pdu, event = dul._decode_pdu(head + body)
            except Exception:
                log.exception("unable to decode the received PDU")
                dul.event_queue.put("Evt19")
                return
            dul.event_queue.put(event)
            dul._recv_pdu.put(pdu)
            return
        values = pdata_values(body)
        if values is None:
            dul.event_queue.put("Evt19")  # a malformed P-DATA-TF, as pynetdicom reports it
            return
        primitive = P_DATA()
        primitive.presentation_data_value_list = []  # the setter checks a list's items: fill it after
        primitive.presentation_data_value_list.extend(values)
        dul.event_queue.put("Evt10")
        dul._recv_pdu.put(_Decoded(primitive))

    dul._read_pdu_data = read_pdu


def _note_peer_abort(event: evt.Event) -> None:
    """Remember that the peer itself aborted (A-ABORT), as opposed to the link dying (A-P-ABORT)."""
    if isinstance(event.primitive, A_ABORT):
        event.assoc.peer_aborted = True  # type: ignore[attr-defined]


def _raise_for_failed(assoc: Association, node: DicomNode, label: str) -> None:
    details: dict[str, Any] = {"host": node.host, "port": node.port, "called_aet": node.ae_title}
    reply = assoc.acceptor.primitive
    if assoc.is_rejected and reply is not None:
        details.update(result=reply.result_str, source=reply.source_str, reason=reply.reason_str)
        raise SlicerMCPError(
            f"the DICOM node {label} rejected the association: {reply.reason_str}. Check that the node's "
            f"ae_title in the config is the peer's AE title and that the peer knows our calling AE title.",
            code=ErrorCode.DICOM_ASSOCIATION_REJECTED,
            details=details,
        )
    if reply is not None:  # the peer answered but accepted nothing we proposed, or aborted
        details["rejected_contexts"] = [str(cx.abstract_syntax) for cx in assoc.rejected_contexts][:20]
        raise SlicerMCPError(
            f"the DICOM node {label} accepted none of the requested services (presentation contexts); "
            f"it may not support this operation or these object types.",
            code=ErrorCode.DICOM_ASSOCIATION_REJECTED,
            details=details,
        )
    raise SlicerMCPError(
        f"the DICOM node {label} did not answer. Check that it is running and that host and port in the "
        f"config are right, then run verify_connection.",
        code=ErrorCode.DICOM_NODE_UNREACHABLE,
        details=details,
    )


def lost_association(
    label: str, operation: str, assoc: Association | None = None, aborted: bool = False
) -> SlicerMCPError:
    """The error for an association that ended in the middle of an operation.

    A peer that aborts right after a request usually refuses that service to our calling AE
    (Orthanc does this for AEs missing from its DicomModalities); a dropped link is unreachable.
    `aborted`: the caller read the peer's A-ABORT itself (pynetdicom's reactor did not).
    """
    if assoc is not None and not aborted and assoc.is_alive():
        assoc.join(timeout=1.0)  # let the reactor finish reading the peer's last PDU
    if assoc is not None and (aborted or getattr(assoc, "peer_aborted", False)):
        return SlicerMCPError(
            f"{label} aborted the association when asked for {operation}: it refuses this service to our "
            f"calling AE title {assoc.ae.ae_title!r}. Register that AE title on the node (for Orthanc: "
            f"DicomModalities) or change calling_aet in the config.",
            code=ErrorCode.DICOM_ASSOCIATION_REJECTED,
            details={"operation": operation, "calling_aet": assoc.ae.ae_title},
        )
    return SlicerMCPError(
        f"the association with {label} ended during {operation}; the node may have stopped or timed out. "
        f"Run verify_connection and try again.",
        code=ErrorCode.DICOM_NODE_UNREACHABLE,
        details={"operation": operation},
    )


def status_of(status: Dataset | None) -> tuple[int | None, str]:
    """(code, category) of a DIMSE status dataset; (None, 'None') when no response came."""
    if status is None or "Status" not in status:
        return None, "None"
    code = int(status.Status)
    return code, code_to_category(code)


def echo(node: DicomNode, calling_aet: str, node_name: str | None = None) -> EchoResult:
    """C-ECHO: round-trip time and the presentation contexts the peer accepted."""
    started = time.perf_counter()
    with open_association(
        node, calling_aet, [build_context(Verification)], node_name=node_name, retry=True
    ) as assoc:
        connected = time.perf_counter()
        status = assoc.send_c_echo()
        code, category = status_of(status)
        done = time.perf_counter()
        accepted = [
            {"abstract_syntax": str(cx.abstract_syntax), "transfer_syntax": str(cx.transfer_syntax[0])}
            for cx in assoc.accepted_contexts
        ]
    if code is None:
        raise lost_association(node_label(node, node_name), "C-ECHO", assoc)
    return EchoResult(
        node=node_name or "",
        ae_title=node.ae_title,
        host=node.host,
        port=node.port,
        calling_aet=calling_aet,
        success=code == Status.SUCCESS,
        status=f"0x{code:04X} {category}",
        association_ms=round((connected - started) * 1000, 2),
        echo_ms=round((done - connected) * 1000, 2),
        accepted_contexts=accepted,
    )
