"""Small pure pieces of the DICOM package: multipart parsing, header UID reading, validation."""

from __future__ import annotations

import io

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fixtures.orthanc import make_ct_series
from SlicerMCPLib.core.errors import SlicerMCPError
from SlicerMCPLib.dicom.multipart import chunks_body, multipart_parts
from SlicerMCPLib.dicom.retrieve import _sop_instance_uid
from SlicerMCPLib.dicom.validation import check_date, check_text, check_uid

BOUNDARY = b"1f2e3d-boundary"


def multipart(parts: list[bytes], lengths: list[int | None] | None = None) -> bytes:
    """A multipart/related body; `lengths` gives each part a Content-Length header (None: none)."""
    body = b""
    for k, part in enumerate(parts):
        length = lengths[k % len(lengths)] if lengths else None
        header = b"" if length is None else b"Content-Length: %d\r\n" % length
        body += (
            b"--" + BOUNDARY + b"\r\nContent-Type: application/dicom\r\n" + header + b"\r\n" + part + b"\r\n"
        )
    return body + b"--" + BOUNDARY + b"--\r\n"


def cut(body: bytes, cuts: list[int]) -> list[bytes]:
    chunks, pos, i = [], 0, 0
    while pos < len(body):
        size = cuts[i % len(cuts)]
        chunks.append(body[pos : pos + size])
        pos, i = pos + size, i + 1
    return chunks


def parts_of(chunks: list[bytes]) -> list[bytes]:
    return [bytes(p) for p in multipart_parts(chunks_body(iter(chunks), 16), BOUNDARY)]


@settings(max_examples=200, deadline=None)
@given(
    parts=st.lists(st.binary(min_size=0, max_size=300), min_size=1, max_size=6),
    cuts=st.lists(st.integers(min_value=1, max_value=97), min_size=1, max_size=50),
)
def test_multipart_parts_survive_any_chunking(parts: list[bytes], cuts: list[int]) -> None:
    parts = [p.replace(b"\r\n--", b"\n--") for p in parts]  # a body cannot contain its own delimiter
    body = multipart(parts)
    assert parts_of(cut(body, cuts)) == parts


@settings(max_examples=200, deadline=None)
@given(
    parts=st.lists(st.binary(min_size=0, max_size=300), min_size=1, max_size=6),
    cuts=st.lists(st.integers(min_value=1, max_value=97), min_size=1, max_size=50),
    errors=st.lists(st.sampled_from([0, 0, 0, -1, 1, -5, 7, None]), min_size=1, max_size=6),
)
def test_multipart_content_length_read_directly_or_searched_when_wrong(
    parts: list[bytes], cuts: list[int], errors: list[int | None]
) -> None:
    """Parts with a Content-Length are read into their own buffer; one whose boundary is not where its
    Content-Length says (a server bug), or without one, is found by searching: the same parts."""
    parts = [p.replace(b"\r\n--", b"\n--") for p in parts]
    lengths = [
        None if e is None else max(0, len(p) + e) for p, e in zip(parts, errors * len(parts), strict=False)
    ]
    assert parts_of(cut(multipart(parts, lengths), cuts)) == parts


def test_multipart_part_cut_short_is_not_yielded() -> None:
    parts = [b"first" * 50, b"second" * 50]
    for body in (multipart(parts, [len(p) for p in parts]), multipart(parts)):
        for lost in (30, 300):  # the end of the last part is lost, with a Content-Length or without
            assert parts_of(cut(body[:-lost], [64])) == parts[:1]


def test_sop_instance_uid_from_the_file_header() -> None:
    _, datasets = make_ct_series(slices=1)
    buf = io.BytesIO()
    datasets[0].save_as(buf, enforce_file_format=True)
    assert _sop_instance_uid(buf.getvalue()) == str(datasets[0].SOPInstanceUID)
    with pytest.raises(SlicerMCPError):
        _sop_instance_uid(b"not dicom" * 30)


@pytest.mark.parametrize("uid", ["1.2.3", "1.2.840.10008.5.1.4.1.1.2", "0.1", "2." + "1" * 62])
def test_valid_uids(uid: str) -> None:
    assert check_uid(uid) == uid


@pytest.mark.parametrize(
    "uid", ["", "1.2.*", "1.2?", "1.02.3", "1..2", "1.2.", "1.2\\1.3", "1 .2", "2." + "1" * 63]
)
def test_invalid_uids(uid: str) -> None:
    with pytest.raises(SlicerMCPError):
        check_uid(uid)


def test_text_and_date_filters() -> None:
    assert check_text("DOE^J*", "PatientName") == "DOE^J*"
    for bad in ("A\\B", "x\ny", "x" * 65):
        with pytest.raises(SlicerMCPError):
            check_text(bad, "PatientName")
    for good in ("20240101", "20240101-20240131", "-20240131", "20240101-"):
        assert check_date(good, "StudyDate") == good
    for bad in ("2024-01-01", "-", "2024010", "20240101-2024", "20241399", "20240230", "20240101-20241301"):
        with pytest.raises(SlicerMCPError):
            check_date(bad, "StudyDate")


def test_encoded_instance_is_pynetdicoms_file() -> None:
    """Our file framing of a received C-STORE data set is byte for byte pynetdicom's own."""
    from io import BytesIO

    from pynetdicom import evt
    from pynetdicom.dimse_primitives import C_STORE
    from pynetdicom.events import Event
    from pynetdicom.presentation import build_context

    from SlicerMCPLib.dicom.storage_scp import encoded_instance

    for syntax in ("1.2.840.10008.1.2.1", "1.2.840.10008.1.2"):
        request = C_STORE()
        request.AffectedSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
        request.AffectedSOPInstanceUID = "1.2.3.45"  # odd length: padded
        request.DataSet = BytesIO(b"\x08\x00\x18\x00UI\x08\x001.2.3.45")
        context = build_context("1.2.840.10008.5.1.4.1.1.2", syntax)
        context.context_id = 1
        event = Event(None, evt.EVT_C_STORE, {"request": request, "context": context.as_tuple})  # type: ignore[arg-type]
        assert encoded_instance(event) == event.encoded_dataset()


@settings(max_examples=50, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(1, 255).filter(lambda i: i % 2), st.binary(min_size=1, max_size=300)),
        min_size=1,
        max_size=5,
    )
)
def test_pdata_values_match_pynetdicoms_decoder(items: list[tuple[int, bytes]]) -> None:
    from pynetdicom.pdu import P_DATA_TF
    from pynetdicom.pdu_primitives import P_DATA

    from SlicerMCPLib.dicom.associations import pdata_values

    primitive = P_DATA()
    primitive.presentation_data_value_list = [[cid, value] for cid, value in items]
    pdu = P_DATA_TF()
    pdu.from_primitive(primitive)
    encoded = pdu.encode()
    decoded = P_DATA_TF()
    decoded.decode(encoded)
    theirs = [tuple(v) for v in decoded.to_primitive().presentation_data_value_list]
    assert pdata_values(encoded[6:]) == theirs == [tuple(i) for i in items]
    assert pdata_values(encoded[6:-1]) is None  # a cut item is malformed, never a short value


_uids = st.from_regex(r"1\.2(\.[1-9][0-9]{0,8}){1,12}", fullmatch=True).filter(lambda u: len(u) <= 64)


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 65535), _uids, _uids, st.sampled_from([0x0000, 0xB000, 0xA700, 0xC000]))
def test_command_sets_match_pynetdicoms_encoder(
    msg_id: int, sop_class: str, sop_uid: str, status: int
) -> None:
    """cget_receive parses pynetdicom's C-STORE-RQ and C-GET-RSP and writes its C-STORE-RSP byte for byte."""
    from io import BytesIO

    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset
    from pynetdicom.dimse_messages import C_GET_RSP, C_STORE_RQ, C_STORE_RSP
    from pynetdicom.dimse_primitives import C_GET, C_STORE

    from SlicerMCPLib.dicom.cget_receive import CommandSetError, c_store_rsp, parse_command_set

    def encoded(message_type, primitive) -> bytes:
        message = message_type()
        message.primitive_to_message(primitive)
        buf = DicomBytesIO()
        buf.is_little_endian, buf.is_implicit_VR = True, True
        write_dataset(buf, message.command_set)
        return buf.getvalue()

    rq = C_STORE()
    rq.MessageID, rq.AffectedSOPClassUID, rq.AffectedSOPInstanceUID = msg_id, sop_class, sop_uid
    rq.Priority, rq.DataSet = 2, BytesIO(b"\0\0")
    raw = encoded(C_STORE_RQ, rq)
    ours = parse_command_set(raw)
    assert ours["CommandField"] == 0x0001 and ours["MessageID"] == msg_id and ours["Priority"] == 2
    assert ours["AffectedSOPClassUID"] == sop_class and ours["AffectedSOPInstanceUID"] == sop_uid
    assert ours["CommandDataSetType"] != 0x0101
    with pytest.raises(CommandSetError):
        parse_command_set(raw[:-1])

    rsp = C_STORE()
    rsp.MessageIDBeingRespondedTo, rsp.Status = msg_id, status
    rsp.AffectedSOPClassUID, rsp.AffectedSOPInstanceUID = sop_class, sop_uid
    assert c_store_rsp(msg_id, sop_class, sop_uid, status) == encoded(C_STORE_RSP, rsp)

    get = C_GET()
    get.MessageIDBeingRespondedTo, get.Status, get.AffectedSOPClassUID = msg_id, 0xFF00, sop_class
    get.NumberOfRemainingSuboperations, get.NumberOfCompletedSuboperations = 7, 3
    get.NumberOfFailedSuboperations, get.NumberOfWarningSuboperations = 1, 0
    parsed = parse_command_set(encoded(C_GET_RSP, get))
    assert parsed["CommandField"] == 0x8010 and parsed["Status"] == 0xFF00
    assert parsed["MessageIDBeingRespondedTo"] == msg_id
    assert [parsed[f"NumberOf{k}Suboperations"] for k in ("Remaining", "Completed", "Failed", "Warning")] == [
        7,
        3,
        1,
        0,
    ]
