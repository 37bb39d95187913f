"""Modality Worklist matching by the standard, checked over DICOM with dcmtk `findscu -W` and pynetdicom."""

from __future__ import annotations

import fnmatch
import logging
from datetime import date, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydicom.dataset import Dataset

from fixtures.ris import STATION_AET, findscu_worklist, mwl_query, worklist_query
from SlicerMCPLib.dicom.status import Status
from SlicerMCPLib.ris.worklist import InvalidQuery, compile_query

SPS = "ScheduledProcedureStepSequence"
# (patient MRN, procedure, scheduled) on station CR2, in June/July 2025
CR2_ITEMS = [
    ("MRN1007", "XR-HAND-3V", datetime(2025, 6, 1, 9, 0)),
    ("MRN1008", "XR-LSPINE-2V", datetime(2025, 6, 10, 8, 0)),
    ("MRN1009", "XR-FOOT-3V", datetime(2025, 6, 15, 11, 0)),
    ("MRN1010", "XR-ABD-2V", datetime(2025, 6, 30, 14, 0)),
    ("MRN1011", "XR-ELBOW-2V", datetime(2025, 7, 1, 8, 0)),
]


@pytest.fixture
def cr2(sqlite_store: Any) -> dict[str, Any]:
    """Five entries on station CR2 with known dates; returns MRN -> entry."""
    out = {}
    for mrn, code, when in CR2_ITEMS:
        order = sqlite_store.create_order(mrn, code)
        out[mrn] = sqlite_store.create_mwl(order.id, "CR2", when, station_name="CR2ROOM")
    return out


def mrns(found: list[Dataset]) -> list[str]:
    return sorted(str(ds.PatientID) for ds in found)


def cr2_query(date: str = "", time: str = "", **top: Any) -> Dataset:
    sps = {"ScheduledStationAETitle": "CR2", "ScheduledProcedureStepStartDate": date}
    sps["ScheduledProcedureStepStartTime"] = time
    return mwl_query(PatientID="", sps=sps, **top)


def match(query: Dataset, item: dict[str, Any]) -> bool:
    """One identifier against one item, as the SCP tests each entry."""
    return compile_query(query)(item)


def validate(query: Dataset) -> None:
    """The identifier's checks alone (the SCP makes them before it reads any entry)."""
    compile_query(query)


# -- pynetdicom queries against our SCP ------------------------------------------------------------


def test_universal_matching_returns_every_scheduled_step(ris_scp: Any, cr2: Any) -> None:
    statuses, found = worklist_query(ris_scp.port, mwl_query(PatientID="", AccessionNumber=""))
    assert statuses[-1] == Status.SUCCESS and set(statuses[:-1]) == {Status.PENDING}
    assert len(found) == 6 + 5


@pytest.mark.parametrize(
    ("date", "expected"),
    [
        ("20250615", ["MRN1009"]),
        ("20250601-20250630", ["MRN1007", "MRN1008", "MRN1009", "MRN1010"]),
        ("20250615-", ["MRN1009", "MRN1010", "MRN1011"]),
        ("-20250610", ["MRN1007", "MRN1008"]),
        ("20250602-20250609", []),
    ],
)
def test_date_ranges_in_the_scheduled_step(ris_scp: Any, cr2: Any, date: str, expected: list[str]) -> None:
    statuses, found = worklist_query(ris_scp.port, cr2_query(date))
    assert statuses[-1] == Status.SUCCESS
    assert mrns(found) == expected


def test_time_range_alone_and_combined_with_a_date_range(ris_scp: Any, cr2: Any) -> None:
    _, found = worklist_query(ris_scp.port, cr2_query("", "1000-1500"))
    assert mrns(found) == ["MRN1009", "MRN1010"]
    # PS3.4 C.2.2.2.5: date range + time range = one range from 0601 10:00 to 0630 15:00,
    # so 0610 08:00 matches although 08:00 alone is outside 10-15.
    _, found = worklist_query(ris_scp.port, cr2_query("20250601-20250630", "1000-1500"))
    assert mrns(found) == ["MRN1008", "MRN1009", "MRN1010"]
    _, found = worklist_query(ris_scp.port, cr2_query("20250610-", "1000-"))
    assert mrns(found) == ["MRN1009", "MRN1010", "MRN1011"]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Kowalski^Anna", ["MRN1007"]),
        ("kowalski^anna", ["MRN1007"]),  # person names match case-insensitively
        ("J*", ["MRN1008"]),
        ("*a", ["MRN1007", "MRN1009"]),  # Kowalski^Anna, Patel^Priya
        ("?atel*", ["MRN1009"]),
        ("B?own^James", ["MRN1010"]),
        ("Nobody*", []),
    ],
)
def test_person_name_wildcards(ris_scp: Any, cr2: Any, name: str, expected: list[str]) -> None:
    _, found = worklist_query(ris_scp.port, cr2_query(PatientName=name))
    assert mrns(found) == expected


def test_matching_on_modality_station_and_uid_list(ris_scp: Any, cr2: Any) -> None:
    _, found = worklist_query(ris_scp.port, mwl_query(PatientID="", sps={"Modality": "MR"}))
    assert found == []
    _, found = worklist_query(ris_scp.port, mwl_query(PatientID="", sps={"ScheduledStationAETitle": "CR?"}))
    assert len(found) == 5
    uids = f"{cr2['MRN1007'].study_instance_uid}\\{cr2['MRN1011'].study_instance_uid}"
    _, found = worklist_query(ris_scp.port, mwl_query(PatientID="", StudyInstanceUID=uids))
    assert mrns(found) == ["MRN1007", "MRN1011"]
    _, found = worklist_query(
        ris_scp.port, mwl_query(PatientID="", AccessionNumber=cr2["MRN1009"].accession_number)
    )
    assert mrns(found) == ["MRN1009"]


def test_return_keys_are_exactly_the_requested_ones(ris_scp: Any, cr2: Any) -> None:
    query = mwl_query(
        PatientName="",
        AccessionNumber=cr2["MRN1009"].accession_number,
        RequestedProcedurePriority="",
        sps={"Modality": "", "ScheduledProcedureStepStartDate": "", "ScheduledProcedureStepID": ""},
    )
    _, found = worklist_query(ris_scp.port, query)
    assert len(found) == 1
    ds = found[0]
    assert {e.keyword for e in ds} - {"SpecificCharacterSet"} == {
        "PatientName",
        "AccessionNumber",
        "RequestedProcedurePriority",
        SPS,
    }
    item = ds.ScheduledProcedureStepSequence[0]
    assert {e.keyword for e in item} == {
        "Modality",
        "ScheduledProcedureStepStartDate",
        "ScheduledProcedureStepID",
    }
    assert item.Modality == "CR" and item.ScheduledProcedureStepStartDate == "20250615"
    assert item.ScheduledProcedureStepID == cr2["MRN1009"].scheduled_procedure_step_id
    assert str(ds.PatientName) == "Patel^Priya" and ds.RequestedProcedurePriority == "ROUTINE"


def test_character_sets(ris_scp: Any) -> None:
    """Non-ASCII names: UTF-8 by default, the requester's Latin-1 when it asks for ISO_IR 100."""
    _, found = worklist_query(ris_scp.port, mwl_query(PatientName="Müller*", PatientID=""))
    assert len(found) == 1 and found[0].SpecificCharacterSet == "ISO_IR 192"
    assert str(found[0].PatientName) == "Müller^Jürgen"
    _, found = worklist_query(
        ris_scp.port, mwl_query(SpecificCharacterSet="ISO_IR 100", PatientName="M*ller*", PatientID="")
    )
    assert len(found) == 1 and found[0].SpecificCharacterSet == "ISO_IR 100"
    assert str(found[0].PatientName) == "Müller^Jürgen"
    _, found = worklist_query(ris_scp.port, mwl_query(PatientName="Anderson*", PatientID=""))
    assert len(found) == 1 and "SpecificCharacterSet" not in found[0]  # plain ASCII needs none


def test_multi_valued_character_set_with_code_extensions(ris_scp: Any) -> None:
    """ISO 2022 requesters send several Specific Character Set values; a non-ASCII answer still comes."""
    statuses, found = worklist_query(
        ris_scp.port,
        mwl_query(SpecificCharacterSet=["", "ISO 2022 IR 100"], PatientName="M*ller*", PatientID=""),
    )
    assert statuses[-1] == Status.SUCCESS
    assert [str(ds.PatientName) for ds in found] == ["Müller^Jürgen"]


@pytest.mark.parametrize("bad", ["20251301", "2025-06-01", "June 1", "20250630-20250601", "2025060", "*"])
def test_malformed_dates_are_refused_with_a900(ris_scp: Any, bad: str) -> None:
    statuses, found = worklist_query(ris_scp.port, cr2_query(bad))
    assert found == [] and statuses == [Status.IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS]


def test_japanese_requester_gets_its_iso_2022_set(ris_scp: Any, sqlite_store: Any) -> None:
    """A kanji name fits the requested ISO 2022 IR 87 (its second value): answer in that set, not UTF-8."""
    sqlite_store.add_patient("MRN2001", "山田", "太郎")
    order = sqlite_store.create_order("MRN2001", "XR-CHEST-1V")
    sqlite_store.create_mwl(order.id, "CRJ", datetime(2025, 6, 2, 9, 0))
    statuses, found = worklist_query(
        ris_scp.port,
        mwl_query(SpecificCharacterSet=["", "ISO 2022 IR 87"], PatientName="", PatientID="MRN2001"),
    )
    assert statuses[-1] == Status.SUCCESS and len(found) == 1
    assert list(found[0].SpecificCharacterSet) == ["", "ISO 2022 IR 87"]
    assert str(found[0].PatientName) == "山田^太郎"


def test_refused_query_keeps_its_values_out_of_the_log(
    ris_scp: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """A malformed birth date is PHI: the requester hears it back, the log (ours or pynetdicom's, even
    at DEBUG) does not."""
    query = mwl_query(PatientBirthDate="19801340", PatientID="MRN1007")  # pydicom warns here, in the SCU
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="pynetdicom")
    statuses, _ = worklist_query(ris_scp.port, query)
    assert statuses == [Status.IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS]
    assert "worklist query" in caplog.text
    assert "19801340" not in caplog.text and "MRN1007" not in caplog.text


def test_malformed_time_is_refused(ris_scp: Any) -> None:
    statuses, _ = worklist_query(ris_scp.port, cr2_query("", "2561"))
    assert statuses == [Status.IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS]


# -- dcmtk findscu -W ------------------------------------------------------------------------------


def test_findscu_worklist_by_station_and_date(ris_scp: Any, cr2: Any) -> None:
    code, found, log = findscu_worklist(
        ris_scp.port,
        [
            "PatientName",
            "PatientID",
            "AccessionNumber",
            "StudyInstanceUID",
            f"{SPS}[0].ScheduledStationAETitle=CR2",
            f"{SPS}[0].ScheduledProcedureStepStartDate=20250601-20250615",
            f"{SPS}[0].Modality=CR",
        ],
    )
    assert code == 0, log
    assert mrns(found) == ["MRN1007", "MRN1008", "MRN1009"]
    by_mrn = {str(ds.PatientID): ds for ds in found}
    assert by_mrn["MRN1008"].StudyInstanceUID == cr2["MRN1008"].study_instance_uid
    assert by_mrn["MRN1008"].AccessionNumber == cr2["MRN1008"].accession_number


def test_findscu_today_for_the_virtual_cr(ris_scp: Any) -> None:
    today = datetime.now().strftime("%Y%m%d")
    code, found, log = findscu_worklist(
        ris_scp.port,
        [
            "PatientName",
            f"{SPS}[0].ScheduledStationAETitle={STATION_AET}",
            f"{SPS}[0].ScheduledProcedureStepStartDate={today}",
            f"{SPS}[0].ScheduledProcedureStepStartTime=0900-1000",
        ],
    )
    assert code == 0, log
    names = sorted(str(ds.PatientName) for ds in found)
    assert names == ["Müller^Jürgen", "Nguyen^Linh", "Okafor^Chinedu"]


def test_findscu_latin1_query(ris_scp: Any) -> None:
    code, found, log = findscu_worklist(
        ris_scp.port, [b"SpecificCharacterSet=ISO_IR 100", "PatientName=M\xfcller*".encode("latin-1")]
    )
    assert code == 0, log
    assert [str(ds.PatientName) for ds in found] == ["Müller^Jürgen"]
    assert found[0].SpecificCharacterSet == "ISO_IR 100"


def test_findscu_malformed_date(ris_scp: Any) -> None:
    code, found, log = findscu_worklist(
        ris_scp.port, ["PatientID", f"{SPS}[0].ScheduledProcedureStepStartDate=20251340"]
    )
    assert found == []
    assert "DataSetDoesNotMatchSOPClass" in log or "0xa900" in log.lower()


# -- the matcher without a network -----------------------------------------------------------------


def test_validate_catches_bad_values_even_without_candidates() -> None:
    with pytest.raises(InvalidQuery):
        validate(mwl_query(sps={"ScheduledProcedureStepStartDate": "20250631"}))
    with pytest.raises(InvalidQuery):
        validate(mwl_query(sps={"ScheduledProcedureStepStartTime": "2460"}))
    validate(
        mwl_query(
            sps={"ScheduledProcedureStepStartDate": "20250601-", "ScheduledProcedureStepStartTime": "0800-"}
        )
    )


def test_empty_sequence_item_is_universal() -> None:
    item = {"PatientID": "X", SPS: [{"Modality": "CR"}]}
    query = mwl_query(PatientID="X")
    query.ScheduledProcedureStepSequence = []
    assert match(query, item)


# -- properties of the matcher against simple references -------------------------------------------

_days = st.dates(min_value=date(2020, 1, 1), max_value=date(2030, 12, 31))


@settings(max_examples=300, deadline=None)
@given(have=_days, lo=st.one_of(st.none(), _days), hi=st.one_of(st.none(), _days))
def test_date_range_matching_is_interval_membership(have: date, lo: date | None, hi: date | None) -> None:
    if lo is None and hi is None:
        return
    text = f"{lo:%Y%m%d}" if lo else ""
    text += "-" + (f"{hi:%Y%m%d}" if hi else "")
    query = mwl_query(sps={"ScheduledProcedureStepStartDate": text})
    item = {SPS: [{"ScheduledProcedureStepStartDate": f"{have:%Y%m%d}"}]}
    if lo and hi and lo > hi:
        with pytest.raises(InvalidQuery):
            match(query, item)
        return
    assert match(query, item) == ((lo is None or lo <= have) and (hi is None or have <= hi))


@settings(max_examples=400, deadline=None)
@given(pattern=st.text(alphabet="ab*?", min_size=1, max_size=6), value=st.text(alphabet="ab", max_size=6))
def test_wildcards_match_like_shell_patterns(pattern: str, value: str) -> None:
    query = mwl_query(AccessionNumber=pattern)
    expected = fnmatch.fnmatchcase(value, pattern) or pattern == "*"
    assert match(query, {"AccessionNumber": value}) == expected


# -- responses encoded without pydicom -------------------------------------------------------------


@pytest.mark.parametrize("explicit", [True, False], ids=["explicit", "implicit"])
@pytest.mark.parametrize("charset", [None, "ISO_IR 100"])
def test_encoded_responses_are_pydicoms_bytes(
    sqlite_store: Any, cr2: Any, explicit: bool, charset: Any
) -> None:
    """The wire encoder writes exactly what pydicom writes for the same projected response."""
    from pynetdicom.dsutils import encode

    from SlicerMCPLib.ris.scp import RisScp
    from SlicerMCPLib.ris.wire import compile_encoder
    from SlicerMCPLib.ris.worklist import compile_projection, set_character_set

    query = cr2_query(PatientName="", AccessionNumber="", ReferencedStudySequence=[], IssuerOfPatientID="")
    query[SPS].value[0].ScheduledProtocolCodeSequence = []
    query[SPS].value[0].Modality = ""
    if charset:
        query.SpecificCharacterSet = charset
    scp = RisScp(sqlite_store)
    items = list(scp.matches(query))
    assert len(items) == 5
    fast = compile_encoder(query, query.get("SpecificCharacterSet"), explicit)
    respond = compile_projection(query)
    for item in items:
        response = respond(item)
        set_character_set(response, query.get("SpecificCharacterSet"))
        assert fast(item) == encode(response, not explicit, True)
    non_ascii = dict(items[0], PatientName="Müller^Jörg")
    assert fast(non_ascii) is None  # pydicom's turn: it knows the character sets


def test_small_peer_pdu_splits_responses(ris_scp: Any, cr2: Any) -> None:
    """A requestor with a tiny maximum PDU gets every response, fragmented to its limit."""
    from pynetdicom import AE, evt
    from pynetdicom.pdu import P_DATA_TF
    from pynetdicom.sop_class import ModalityWorklistInformationFind  # type: ignore[attr-defined]

    from fixtures.ris import RIS_AET

    sizes: list[int] = []

    def on_pdu(event: Any) -> None:
        if isinstance(event.pdu, P_DATA_TF):
            sizes.append(event.pdu.pdu_length)

    ae = AE(ae_title=STATION_AET)
    ae.add_requested_context(ModalityWorklistInformationFind)
    assoc = ae.associate(
        "127.0.0.1", ris_scp.port, ae_title=RIS_AET, max_pdu=64, evt_handlers=[(evt.EVT_PDU_RECV, on_pdu)]
    )
    assert assoc.is_established
    try:
        got = list(assoc.send_c_find(cr2_query(PatientName=""), ModalityWorklistInformationFind))
    finally:
        assoc.release()
    assert [int(s.Status) for s, _ in got] == [Status.PENDING] * 5 + [Status.SUCCESS]
    assert sorted(str(i.PatientID) for _, i in got[:-1]) == sorted(mrn for mrn, _, _ in CR2_ITEMS)
    assert len(sizes) > 6 * 2 and max(sizes) <= 64
