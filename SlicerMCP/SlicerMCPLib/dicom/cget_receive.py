"""A C-GET read and answered on one thread, on an association pynetdicom opened.

A PACS sends a series as thousands of 16 kB P-DATA-TF PDUs, and the next C-STORE sub-operation
only after our C-STORE-RSP. Through pynetdicom each PDU is read and queued by its reactor thread,
each message handed to the association thread, its command set decoded and the answer encoded by
pydicom, then queued back: ~3-5 ms per instance in Python. Here, for the length of one C-GET,
the reactor is told to leave the socket alone; this thread sends the C-GET-RQ, reads PDUs, joins
each data set's fragments, answers each C-STORE-RQ with a pre-encoded C-STORE-RSP and stops at
the final C-GET-RSP. The association (negotiation, release, abort) stays pynetdicom's: it is
handed back in the state it was taken (PS3.8 Sta6, established, nothing pending).

Command sets: a minimal, strict parser (group 0000, implicit VR little endian, PS3.7 section 9.3
and E.1) and encoders checked byte for byte against pynetdicom's (Testing/test_dicom_units.py).
"""

from __future__ import annotations

import logging
import socket
import struct
import threading
from collections.abc import Callable
from typing import Any

from pydicom.dataset import Dataset
from pynetdicom import Association
from pynetdicom.dsutils import encode

log = logging.getLogger(__name__)

# Command elements read from a C-STORE-RQ or C-GET-RSP (element number in group 0000).
_US = {0x0100, 0x0110, 0x0120, 0x0700, 0x0800, 0x0900, 0x1020, 0x1021, 0x1022, 0x1023}
_UI = {0x0002, 0x1000}
NAMES = {
    0x0002: "AffectedSOPClassUID",
    0x0100: "CommandField",
    0x0110: "MessageID",
    0x0120: "MessageIDBeingRespondedTo",
    0x0700: "Priority",
    0x0800: "CommandDataSetType",
    0x0900: "Status",
    0x1000: "AffectedSOPInstanceUID",
    0x1020: "NumberOfRemainingSuboperations",
    0x1021: "NumberOfCompletedSuboperations",
    0x1022: "NumberOfFailedSuboperations",
    0x1023: "NumberOfWarningSuboperations",
}
C_STORE_RQ, C_STORE_RSP, C_GET_RQ, C_GET_RSP = 0x0001, 0x8001, 0x0010, 0x8010
NO_DATASET = 0x0101
PENDING = (0xFF00, 0xFF01)
P_DATA_TF, A_RELEASE_RQ, A_ABORT = 0x04, 0x05, 0x07
COMMAND, LAST = 0x01, 0x02  # PDV message control header bits (PS3.8 E.2)


class CommandSetError(ValueError):
    """A command set that is not well-formed group-0000 implicit VR little endian."""


def parse_command_set(data: bytes | bytearray | memoryview) -> dict[str, int | str]:
    """The known elements of an encoded command set, by keyword (UIDs as str, US as int).

    Unknown group-0000 elements are skipped; an element outside group 0000, a cut element, a
    wrong-sized US or elements out of ascending order raise CommandSetError."""
    view = memoryview(data)
    pos, end, last = 0, len(view), -1
    out: dict[str, int | str] = {}
    while pos < end:
        if pos + 8 > end:
            raise CommandSetError("cut element header")
        group, element, length = struct.unpack_from("<HHL", view, pos)
        pos += 8
        if group != 0 or element <= last:
            raise CommandSetError(f"unexpected tag ({group:04X},{element:04X})")
        if pos + length > end:
            raise CommandSetError(f"element (0000,{element:04X}) runs past the command set")
        last = element
        value = view[pos : pos + length]
        pos += length
        if element in _US:
            if length != 2:
                raise CommandSetError(f"(0000,{element:04X}) is US but has {length} bytes")
            out[NAMES[element]] = struct.unpack("<H", value)[0]
        elif element in _UI:
            out[NAMES[element]] = bytes(value).rstrip(b"\0 ").decode("ascii")
    return out


def _element(element: int, value: bytes) -> bytes:
    return struct.pack("<HHL", 0, element, len(value)) + value


def _uid(uid: str) -> bytes:
    raw = uid.encode("ascii")
    return raw + b"\0" if len(raw) % 2 else raw


def c_store_rsp(message_id: int, sop_class_uid: str, sop_instance_uid: str, status: int = 0) -> bytes:
    """The encoded command set of a C-STORE-RSP (no data set) answering `message_id`."""
    body = b"".join(
        (
            _element(0x0002, _uid(sop_class_uid)),
            _element(0x0100, struct.pack("<H", C_STORE_RSP)),
            _element(0x0120, struct.pack("<H", message_id)),
            _element(0x0800, struct.pack("<H", NO_DATASET)),
            _element(0x0900, struct.pack("<H", status)),
            _element(0x1000, _uid(sop_instance_uid)),
        )
    )
    return _element(0x0000, struct.pack("<L", len(body))) + body


def c_get_rq(message_id: int, sop_class_uid: str, priority: int = 0) -> bytes:
    """The encoded command set of a C-GET-RQ (an identifier follows)."""
    body = b"".join(
        (
            _element(0x0002, _uid(sop_class_uid)),
            _element(0x0100, struct.pack("<H", C_GET_RQ)),
            _element(0x0110, struct.pack("<H", message_id)),
            _element(0x0700, struct.pack("<H", priority)),
            _element(0x0800, struct.pack("<H", 0x0000)),
        )
    )
    return _element(0x0000, struct.pack("<L", len(body))) + body


def p_data_tf(context_id: int, data: bytes, command: bool, max_pdu: int) -> bytes:
    """`data` as P-DATA-TF PDUs of at most `max_pdu` bytes (0: no limit), one fragment each."""
    room = max(max_pdu - 6, 1) if max_pdu else max(len(data), 1)  # PDU length minus the PDV header
    out = []
    for start in range(0, max(len(data), 1), room):
        piece = data[start : start + room]
        control = (COMMAND if command else 0) | (LAST if start + room >= len(data) else 0)
        item = struct.pack(">LBB", len(piece) + 2, context_id, control) + piece
        out.append(struct.pack(">BBL", P_DATA_TF, 0, len(item)) + item)
    return b"".join(out)


class LinkLost(Exception):
    """The connection closed, or the peer aborted (`aborted`), in the middle of the C-GET."""

    def __init__(self, what: str, aborted: bool = False):
        super().__init__(what)
        self.aborted = aborted


class ProtocolError(Exception):
    """The peer sent something a C-GET does not allow at this point."""


StoreHandler = Callable[[str, str, str, bytes], int]  # (class, instance, transfer syntax, data set) -> status


class _Paused:
    """pynetdicom's reactor kept off the socket: its transport check answers "nothing" until resumed."""

    def __init__(self, assoc: Association, wait_s: float = 2.0):
        self.dul: Any = assoc.dul
        self.wait_s = wait_s
        self.idle = threading.Event()

    def __enter__(self) -> None:
        idle = self.idle

        def nothing() -> bool:
            idle.set()  # the reactor is here, not reading the socket
            return False

        self.dul._is_transport_event = nothing
        if not idle.wait(self.wait_s):  # it never looked: it is gone (the association died)
            self.__exit__()
            raise LinkLost("pynetdicom's reactor is not running")

    def __exit__(self, *exc: object) -> None:
        self.dul.__dict__.pop("_is_transport_event", None)


class _Reader:
    """PDUs from a socket with few system calls (reads of up to 1 MB into one buffer)."""

    def __init__(self, sock: socket.socket, size: int = 1 << 20):
        self.sock = sock
        self.buf = bytearray(size)
        self.view = memoryview(self.buf)
        self.start = self.end = 0

    def _fill(self, need: int) -> None:
        if self.start + need > len(self.buf):  # move what is left to the front (or to a larger buffer)
            kept = self.end - self.start
            if need > len(self.buf):  # a new one: the caller may still hold a view of the old
                larger = bytearray(need)
                larger[:kept] = self.buf[self.start : self.end]
                self.buf, self.view = larger, memoryview(larger)
            else:
                self.buf[:kept] = self.buf[self.start : self.end]
            self.start, self.end = 0, kept
        while self.end - self.start < need:
            n = self.sock.recv_into(self.view[self.end :])
            if n == 0:
                raise LinkLost("the peer closed the connection")
            self.end += n

    def pdu(self) -> tuple[int, memoryview]:
        """(type, body) of the next PDU; the body is valid until the next call."""
        self._fill(6)
        kind, _, length = struct.unpack_from(">BBL", self.buf, self.start)
        self._fill(6 + length)
        body = self.view[self.start + 6 : self.start + 6 + length]
        self.start += 6 + length
        return kind, body


def c_get(
    assoc: Association,
    identifier: Dataset,
    model_uid: str,
    on_store: StoreHandler,
    timeout_s: float,
    message_id: int = 1,
) -> tuple[int, dict[str, int | str]]:
    """Send one C-GET on `assoc` and receive its sub-operations on this thread.

    Returns the final C-GET-RSP's status and command set. Raises LinkLost when the connection
    closes or the peer aborts, ProtocolError when the peer breaks the C-GET's rules, and
    TimeoutError when the peer is silent `timeout_s` (the association is then not usable: the
    caller aborts it).
    """
    contexts = {cx.context_id: cx for cx in assoc.accepted_contexts}
    get_cx = next((cx for cx in contexts.values() if cx.abstract_syntax == model_uid), None)
    if get_cx is None:
        raise ProtocolError(f"no accepted presentation context for {model_uid}")
    syntax = get_cx.transfer_syntax[0]
    max_pdu = int(assoc.acceptor.maximum_length or 0)
    sock: socket.socket = assoc.dul.socket.socket
    ident = encode(identifier, syntax.is_implicit_VR, syntax.is_little_endian, syntax.is_deflated)
    if ident is None:
        raise ProtocolError("the C-GET identifier could not be encoded")
    request = p_data_tf(get_cx.context_id, c_get_rq(message_id, model_uid), True, max_pdu)
    request += p_data_tf(get_cx.context_id, ident, False, max_pdu)
    previous = sock.gettimeout()
    with _Paused(assoc):
        sock.settimeout(timeout_s)
        try:
            sock.sendall(request)
            return _receive(assoc, _Reader(sock), contexts, on_store, max_pdu, message_id)
        finally:
            sock.settimeout(previous)


def _receive(
    assoc: Association,
    reader: _Reader,
    contexts: dict[int, Any],
    on_store: StoreHandler,
    max_pdu: int,
    message_id: int,
) -> tuple[int, dict[str, int | str]]:
    sock = reader.sock
    idle_timer = getattr(assoc.dul, "_idle_timer", None)
    command: list[bytes] = []
    data: list[bytes] = []
    pending: dict[str, int | str] | None = None  # a command whose data set is still arriving
    pending_cx = 0
    while True:
        kind, body = reader.pdu()
        if idle_timer is not None:
            idle_timer.restart()  # pynetdicom's own network timeout: the link is not idle
        if kind == A_ABORT:
            raise LinkLost("the peer aborted the association", aborted=True)
        if kind == A_RELEASE_RQ:
            raise ProtocolError("the peer asked to release the association in the middle of the C-GET")
        if kind != P_DATA_TF:
            raise ProtocolError(f"unexpected PDU type 0x{kind:02X} during the C-GET")
        pos, end = 0, len(body)
        while pos < end:
            if pos + 6 > end:
                raise ProtocolError("a cut presentation data value")
            length, cx_id, control = struct.unpack_from(">LBB", body, pos)
            if length < 2 or pos + 4 + length > end:
                raise ProtocolError("a presentation data value runs past its PDU")
            value = bytes(body[pos + 6 : pos + 4 + length])
            pos += 4 + length
            if cx_id not in contexts:
                raise ProtocolError(f"data on presentation context {cx_id}, which was not accepted")
            if control & COMMAND:
                if pending is not None:
                    raise ProtocolError("a new command before the last one's data set ended")
                command.append(value)
                if not control & LAST:
                    continue
                try:
                    fields = parse_command_set(b"".join(command))
                except CommandSetError as exc:
                    raise ProtocolError(str(exc)) from exc
                command.clear()
                has_data = fields.get("CommandDataSetType", NO_DATASET) != NO_DATASET
                if fields.get("CommandField") == C_GET_RSP and not has_data:
                    done = _get_rsp(fields, message_id)
                    if done is not None:
                        return done, fields
                elif fields.get("CommandField") in (C_STORE_RQ, C_GET_RSP) and has_data:
                    pending, pending_cx = fields, cx_id
                elif fields.get("CommandField") == C_STORE_RQ:
                    raise ProtocolError("a C-STORE-RQ without a data set")
                else:
                    raise ProtocolError(f"unexpected command 0x{int(fields.get('CommandField', 0)):04X}")
            else:
                if pending is None or cx_id != pending_cx:
                    raise ProtocolError("a data set fragment without its command")
                data.append(value)
                if not control & LAST:
                    continue
                dataset = b"".join(data)
                data.clear()
                fields, pending = pending, None
                if fields.get("CommandField") == C_GET_RSP:  # a final answer with its failed-instance list
                    done = _get_rsp(fields, message_id)
                    if done is not None:
                        return done, fields
                    continue
                _store(sock, contexts[cx_id], cx_id, fields, dataset, on_store, max_pdu)


def _get_rsp(fields: dict[str, int | str], message_id: int) -> int | None:
    """The final status of a C-GET-RSP, or None while sub-operations are pending."""
    if fields.get("MessageIDBeingRespondedTo") != message_id:
        raise ProtocolError("a C-GET-RSP to another request")
    status = int(fields.get("Status", 0xC000))
    return None if status in PENDING else status


def _store(
    sock: socket.socket,
    context: Any,
    cx_id: int,
    fields: dict[str, int | str],
    dataset: bytes,
    on_store: StoreHandler,
    max_pdu: int,
) -> None:
    sop_class = str(fields.get("AffectedSOPClassUID", ""))
    sop_uid = str(fields.get("AffectedSOPInstanceUID", ""))
    if sop_class != str(context.abstract_syntax):
        status = 0x0122  # SOP class not supported on this context (PS3.7 C.4.2.1.4)
    else:
        status = on_store(sop_class, sop_uid, str(context.transfer_syntax[0]), dataset)
    rsp = c_store_rsp(int(fields.get("MessageID", 0)), sop_class, sop_uid, status)
    sock.sendall(p_data_tf(cx_id, rsp, True, max_pdu))
