"""DIMSE command sets for a one-thread C-GET receive path (issue 13, first part).

Orthanc sends the next C-STORE sub-operation only after our C-STORE-RSP, so each instance pays
pynetdicom's hand-offs between its reactor and association threads plus a pydicom decode and encode
of the command set. These helpers let one thread do that work: a minimal, strict parser for a
command set (group 0000, implicit VR little endian, PS3.7 section 9.3 and E.1) and a C-STORE-RSP
encoder whose output is byte-for-byte what pynetdicom sends (checked in Testing/test_dicom_units.py).
The socket loop that uses them is not written yet; see docs/benchmarks.md.
"""

from __future__ import annotations

import struct

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
C_STORE_RQ, C_STORE_RSP, C_GET_RSP = 0x0001, 0x8001, 0x8010
NO_DATASET = 0x0101


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
