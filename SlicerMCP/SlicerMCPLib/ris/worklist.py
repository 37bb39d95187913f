"""Modality Worklist matching as PS3.4 C.2.2.2 and K.2.2 describe it.

A worklist entry becomes a plain tree of attribute keyword -> text (or list of item trees for
sequences). `compile_query(identifier)` turns the identifier into a test of an item once (malformed
dates, times and ranges raise InvalidQuery there) and applies the standard's rules per key: universal
matching (empty value), single-value matching, `*`/`?` wildcards on text VRs, list of UIDs,
date/time ranges incl. open ranges and the combined DA+TM range of the Scheduled Procedure
Step start, and sequence matching (an item matches when one of its items does). Responses hold
exactly the requested keys (`compile_projection`), with a Specific Character Set when text needs
one (`set_character_set`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from ..dicom.validation import value_text
from .db import like_literal
from .models import MwlEntry

Item = dict[str, Any]  # keyword -> str | list[Item]

WILDCARD_VRS = frozenset({"AE", "CS", "LO", "LT", "PN", "SH", "ST", "UC", "UR", "UT"})
SPS = "ScheduledProcedureStepSequence"
_DA = re.compile(r"^\d{8}$")
_TM = re.compile(r"^(\d{2})(\d{2})?(\d{2})?(\.\d{1,6})?$")
_SPS_STATUS = {"SCHEDULED": "SCHEDULED", "IN_PROGRESS": "STARTED"}


class InvalidQuery(ValueError):
    """The identifier holds a value the standard does not allow (bad date, time or range)."""


def entry_to_item(e: MwlEntry) -> Item:
    """The worklist item of a scheduled step: what a modality may ask for."""
    code_item = {
        "CodeValue": e.procedure.code,
        "CodingSchemeDesignator": "99MINIRIS",
        "CodeMeaning": e.procedure.description,
    }
    sps = {
        "Modality": e.modality,
        "ScheduledStationAETitle": e.scheduled_station_aet,
        "ScheduledStationName": e.scheduled_station_name or "",
        "ScheduledProcedureStepStartDate": e.scheduled_date,
        "ScheduledProcedureStepStartTime": e.scheduled_time,
        "ScheduledPerformingPhysicianName": e.performing_physician or "",
        "ScheduledProcedureStepDescription": e.procedure.description,
        "ScheduledProtocolCodeSequence": [dict(code_item)],
        "ScheduledProcedureStepID": e.scheduled_procedure_step_id,
        "ScheduledProcedureStepStatus": _SPS_STATUS.get(e.status, e.status),
        "BodyPartExamined": e.procedure.body_part,
    }
    return {
        "AccessionNumber": e.accession_number,
        "ReferringPhysicianName": e.referring_physician or "",
        "ReferencedStudySequence": [],
        "ReferencedPatientSequence": [],
        "PatientName": e.patient.dicom_name,
        "PatientID": e.patient.mrn,
        "IssuerOfPatientID": "MINIRIS",
        "PatientBirthDate": e.patient.birth_date or "",
        "PatientSex": e.patient.sex or "",
        "StudyInstanceUID": e.study_instance_uid,
        "RequestedProcedureDescription": e.procedure.description,
        "RequestedProcedureCodeSequence": [dict(code_item)],
        "RequestedProcedureID": e.requested_procedure_id,
        "RequestedProcedurePriority": e.priority,
        "ScheduledProcedureStepSequence": [sps],
    }


# -- value checks ----------------------------------------------------------------------------------


def _check_date(value: str) -> str:
    if not _DA.match(value):
        raise InvalidQuery(f"date {value!r} is not YYYYMMDD")
    try:
        datetime.strptime(value, "%Y%m%d")
    except ValueError as exc:
        raise InvalidQuery(f"date {value!r} is not a calendar date") from exc
    return value


def _norm_time(value: str, upper: bool) -> str:
    m = _TM.match(value.replace(":", ""))
    if not m:
        raise InvalidQuery(f"time {value!r} is not HHMMSS.FFFFFF")
    hh, mm, ss, frac = m.groups()
    if int(hh) > 23 or (mm and int(mm) > 59) or (ss and int(ss) > 60):
        raise InvalidQuery(f"time {value!r} is out of range")
    fill = "9" if upper else "0"
    frac_digits = (frac or ".")[1:]
    return f"{hh}{mm or fill * 2}{ss or fill * 2}.{frac_digits.ljust(6, fill if not frac else '0')}"


def _split_range(value: str) -> tuple[str, str] | None:
    if "-" not in value:
        return None
    lo, _, hi = value.partition("-")
    if "-" in hi or (not lo and not hi):
        raise InvalidQuery(f"range {value!r} must be 'a-b', 'a-' or '-b'")
    return lo.strip(), hi.strip()


def _date_bounds(query: str) -> tuple[str, str]:
    """(low, high) of a DA single value or range; '' is open."""
    rng = _split_range(query)
    if rng is None:
        return _check_date(query), query
    lo, hi = (_check_date(v) if v else "" for v in rng)
    if lo and hi and lo > hi:
        raise InvalidQuery(f"date range {query!r} ends before it starts")
    return lo, hi


def _time_bounds(query: str) -> tuple[str, str]:
    rng = _split_range(query)
    lo, hi = rng if rng is not None else (query, query)
    return (_norm_time(lo, False) if lo else "", _norm_time(hi, True) if hi else "")


Check = Callable[[Item], bool]
_START_DATE, _START_TIME = "ScheduledProcedureStepStartDate", "ScheduledProcedureStepStartTime"


def _in_range(lo: str, hi: str, have: str) -> bool:
    return bool(have) and (not lo or have >= lo) and (not hi or have <= hi)


def _value_check(kw: str, vr: str, wanted: str) -> Check | None:
    """The test for one non-sequence key, or None for universal matching."""
    if vr in ("DA", "TM"):
        if wanted == "*":
            raise InvalidQuery(f"{kw}: '*' is not a valid {vr}")
        if vr == "DA":
            lo, hi = _date_bounds(wanted)
            return lambda item: _in_range(lo, hi, item.get(kw) or "") if kw in item else True
        tlo, thi = _time_bounds(wanted)
        return lambda item: (
            _in_range(tlo, thi, _norm_time(item[kw], False) if item.get(kw) else "") if kw in item else True
        )
    if wanted == "*":
        return None
    if vr == "UI":
        uids = {u.strip() for u in wanted.split("\\")}
        return lambda item: item[kw] in uids if kw in item else True
    fold = vr == "PN"  # person names: case-insensitive, as most SCPs do
    if vr in WILDCARD_VRS and ("*" in wanted or "?" in wanted):
        regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in wanted)
        pattern = re.compile(regex, re.DOTALL | (re.IGNORECASE if fold else 0))
        return lambda item: pattern.fullmatch(str(item[kw])) is not None if kw in item else True
    if fold:
        low = wanted.lower()
        return lambda item: str(item[kw]).lower() == low if kw in item else True
    return lambda item: item[kw] == wanted if kw in item else True


def _combined_check(query: Dataset) -> Check | None:
    """PS3.4 C.2.2.2.5: SPS start date and time, both given and the date a range, form one range."""
    d, t = value_text(query.get(_START_DATE, "")), value_text(query.get(_START_TIME, ""))
    if not d or not t or "-" not in d or d == "*" or t == "*":
        return None
    dlo, dhi = _date_bounds(d)
    tlo, thi = _split_range(t) or (t, t)
    lo = dlo + _norm_time(tlo or "00", False) if dlo else ""
    hi = dhi + _norm_time(thi or "23", True) if dhi else ""

    def check(item: Item) -> bool:
        have = (item.get(_START_DATE) or "") + _norm_time(item.get(_START_TIME) or "000000", False)
        return _in_range(lo, hi, have)

    return check


def compile_query(query: Dataset) -> Check:
    """Parse the identifier once into a predicate over items (PS3.4 C.2.2.2); raises InvalidQuery
    for malformed dates, times and ranges. Keys an item does not hold match universally."""
    checks: list[Check] = []
    combined = _combined_check(query)
    if combined is not None:
        checks.append(combined)
    for elem in query:
        kw = elem.keyword
        if not kw or kw == "SpecificCharacterSet" or elem.tag.element == 0:
            continue
        if combined is not None and kw in (_START_DATE, _START_TIME):
            continue
        if elem.VR == "SQ":
            if elem.value:
                sub = compile_query(elem.value[0])
                checks.append(lambda item, kw=kw, sub=sub: kw not in item or any(sub(x) for x in item[kw]))
            continue
        wanted = value_text(elem.value)
        if wanted:
            check = _value_check(kw, elem.VR, wanted)
            if check is not None:
                checks.append(check)
    return lambda item: all(check(item) for check in checks)


Projection = Callable[[Item], Dataset]


def compile_projection(query: Dataset) -> Projection:
    """Plan the response once: exactly the keys the identifier asked for, in its order, with its
    VRs; sequence keys with an item return only the items that match it, projected likewise."""
    plan: list[tuple[Any, str, str, Check | None, Projection | None]] = []
    for elem in query:
        kw = elem.keyword
        if elem.tag.element == 0 or kw == "SpecificCharacterSet":
            continue
        if elem.VR == "SQ" and elem.value:
            plan.append((elem.tag, "SQ", kw, compile_query(elem.value[0]), compile_projection(elem.value[0])))
        else:
            plan.append((elem.tag, elem.VR, kw, None, None))

    def build(item: Item) -> Dataset:
        out = Dataset()
        for tag, vr, kw, keep, sub in plan:
            have = item.get(kw) if kw else None
            if vr == "SQ":
                items = have or []
                if sub is not None and keep is not None:
                    value: Any = Sequence([sub(x) for x in items if keep(x)])
                else:
                    value = Sequence([_as_dataset(x) for x in items])
            else:
                value = have if have not in (None, "") else None
            out[tag] = DataElement(tag, vr, value)
        return out

    return build


def _as_dataset(item: Item) -> Dataset:
    """The whole item as a pydicom Dataset (every attribute, sequences nested), for a universal query."""
    ds = Dataset()
    for kw, value in item.items():
        if isinstance(value, list):
            setattr(ds, kw, Sequence([_as_dataset(v) for v in value]))
        else:
            setattr(ds, kw, value or None)
    return ds


def _texts(ds: Dataset) -> Iterable[str]:
    for elem in ds:
        if elem.VR == "SQ":
            for sub in elem.value:
                yield from _texts(sub)
        elif isinstance(elem.value, str) or elem.VR == "PN":
            yield str(elem.value or "")


def set_character_set(response: Dataset, requested: str | list[str] | None) -> None:
    """ASCII needs no Specific Character Set; otherwise answer in the requester's set when the
    text fits it (e.g. ISO_IR 100 for Latin-1 names, ISO 2022 IR 87 for kanji), else in UTF-8 (ISO_IR 192)."""
    from pydicom.charset import convert_encodings

    if all(t.isascii() for t in _texts(response)):
        if requested:
            response.SpecificCharacterSet = requested
        return
    if requested:
        # several values (ISO 2022 code extensions) arrive as a MultiValue, not a list
        try:
            encodings = convert_encodings([requested] if isinstance(requested, str) else list(requested))
        except (LookupError, ValueError):
            encodings = []
        if encodings and all(_fits(t, encodings) for t in _texts(response)):
            response.SpecificCharacterSet = requested
            return
    response.SpecificCharacterSet = "ISO_IR 192"


def _fits(text: str, encodings: list[str]) -> bool:
    """True when one encoding of the set holds the whole value (code extensions switch between them)."""
    for encoding in encodings:
        try:
            text.encode(encoding)
        except UnicodeEncodeError:
            continue
        return True
    return False


@dataclass
class Prefilter:
    """Exact keys taken from the identifier so the database returns fewer candidates."""

    where: str
    params: list[Any]


def prefilter(query: Dataset) -> Prefilter:
    """SQL clauses for the keys a database index can answer; `match` still checks everything."""
    clauses, params = ["m.status IN ('SCHEDULED', 'IN_PROGRESS')"], []

    def exact(value: Any) -> str | None:
        text = value_text(value)
        return text if text and "*" not in text and "?" not in text and "\\" not in text else None

    for kw, column in (("PatientID", "p.mrn"), ("AccessionNumber", "o.accession_number")):
        value = exact(query.get(kw, ""))
        if value:
            clauses.append(f"{column} = ?")
            params.append(value)
    family = _family_like(value_text(query.get("PatientName", "")))
    if family:
        clauses.append("LOWER(p.family_name) LIKE ? ESCAPE '!'")
        params.append(family)
    if SPS in query and query.ScheduledProcedureStepSequence:
        sps = query.ScheduledProcedureStepSequence[0]
        for kw, column in (("Modality", "m.modality"), ("ScheduledStationAETitle", "m.station_aet")):
            value = exact(sps.get(kw, ""))
            if value:
                clauses.append(f"{column} = ?")
                params.append(value)
        date = value_text(sps.get(_START_DATE, ""))
        if date and date != "*":
            lo, hi = _date_bounds(date)
            if lo:
                clauses.append("m.sps_date >= ?")
                params.append(lo)
            if hi:
                clauses.append("m.sps_date <= ?")
                params.append(hi)
    return Prefilter(" AND ".join(clauses), params)


def _family_like(pattern: str) -> str | None:
    """A LIKE pattern for the family name that keeps every true match (names here are Family^Given),
    or None when the name pattern cannot be narrowed that way. ASCII only: SQLite folds ASCII case only."""
    if not pattern or pattern == "*" or not pattern.isascii():
        return None
    if "^" in pattern:
        part = pattern.split("^", 1)[0]
    elif "?" not in pattern and "*" not in pattern.rstrip("*"):
        part = pattern  # a plain prefix: Family (or Family^... cut short)
    else:
        return None
    if not part or part.strip("*") == "":
        return None
    return like_literal(part.lower()).replace("*", "%").replace("?", "_")
