"""Modality Worklist matching as PS3.4 C.2.2.2 and K.2.2 describe it.

A worklist entry becomes a plain tree of attribute keyword -> text (or list of item trees for
sequences). `match(identifier, item)` applies the standard's rules per key: universal
matching (empty value), single-value matching, `*`/`?` wildcards on text VRs, list of UIDs,
date/time ranges incl. open ranges and the combined DA+TM range of the Scheduled Procedure
Step start, and sequence matching (an item matches when one of its items does). `project`
returns exactly the requested keys, with Specific Character Set when text needs it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

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
        "PatientName": f"{e.patient.family_name}^{e.patient.given_name}",
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


# value checks -------------------------------------------------------------------------------


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


def _match_date(query: str, value: str) -> bool:
    rng = _split_range(query)
    if rng is None:
        return value == _check_date(query)
    lo, hi = rng
    if lo and hi and _check_date(lo) > _check_date(hi):
        raise InvalidQuery(f"date range {query!r} ends before it starts")
    return (not lo or value >= _check_date(lo)) and (not hi or value <= _check_date(hi))


def _match_time(query: str, value: str) -> bool:
    have = _norm_time(value, upper=False)
    rng = _split_range(query)
    if rng is None:
        return _norm_time(query, False) <= have <= _norm_time(query, True)
    lo, hi = rng
    return (not lo or have >= _norm_time(lo, False)) and (not hi or have <= _norm_time(hi, True))


def _wildcard(pattern: str, value: str, fold: bool) -> bool:
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value, re.DOTALL | (re.IGNORECASE if fold else 0)) is not None


def _match_value(vr: str, query: str, value: str) -> bool:
    if vr == "DA":
        return bool(value) and _match_date(query, value)
    if vr == "TM":
        return bool(value) and _match_time(query, value)
    if vr == "UI":
        return value in {u.strip() for u in query.split("\\")}
    fold = vr == "PN"  # person names: case-insensitive, as most SCPs do
    if vr in WILDCARD_VRS and ("*" in query or "?" in query):
        return _wildcard(query, value, fold)
    return query.lower() == value.lower() if fold else query == value


# identifier walk ----------------------------------------------------------------------------


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return "\\".join(str(v) for v in value)
    return str(value)


def _combined_start(query: Dataset, item: Item) -> bool | None:
    """PS3.4 C.2.2.2.5: SPS start date and time, both given and the date a range, form one range."""
    d = _text(query.get("ScheduledProcedureStepStartDate", ""))
    t = _text(query.get("ScheduledProcedureStepStartTime", ""))
    if not d or not t or "-" not in d:
        return None
    dlo, dhi = _split_range(d) or (d, d)
    tlo, thi = _split_range(t) or (t, t)
    have = item.get("ScheduledProcedureStepStartDate", "") + _norm_time(
        item.get("ScheduledProcedureStepStartTime") or "000000", False
    )
    lo = _check_date(dlo) + _norm_time(tlo or "00", False) if dlo else ""
    hi = _check_date(dhi) + _norm_time(thi or "23", True) if dhi else ""
    return (not lo or have >= lo) and (not hi or have <= hi)


def match(query: Dataset, item: Item) -> bool:
    """True when every key of the identifier matches the item (PS3.4 C.2.2.2)."""
    combined = _combined_start(query, item)
    for elem in query:
        kw = elem.keyword
        if not kw or kw == "SpecificCharacterSet" or elem.tag.element == 0:
            continue
        if combined is not None and kw in (
            "ScheduledProcedureStepStartDate",
            "ScheduledProcedureStepStartTime",
        ):
            if not combined:
                return False
            continue
        have = item.get(kw)
        if elem.VR == "SQ":
            if not elem.value or have is None:
                continue
            if not any(match(elem.value[0], sub) for sub in have):
                return False
            continue
        wanted = _text(elem.value)
        if not wanted or (elem.VR not in ("DA", "TM", "DT") and wanted == "*"):
            if elem.VR in ("DA", "TM") and wanted:
                raise InvalidQuery(f"{kw}: '*' is not a valid {elem.VR}")
            continue  # universal matching
        if have is None:
            continue  # a key we do not hold: treated as universal (optional matching key)
        if not _match_value(elem.VR, wanted, str(have)):
            return False
    return True


def validate(query: Dataset) -> None:
    """Raise InvalidQuery for malformed dates, times and ranges, even when no item is tested."""
    for elem in query:
        if elem.VR == "SQ":
            for sub in elem.value or []:
                validate(sub)
        elif elem.VR == "DA" and _text(elem.value):
            _match_date(_text(elem.value), "00000000")
        elif elem.VR == "TM" and _text(elem.value):
            _match_time(_text(elem.value), "000000")


def project(query: Dataset, item: Item) -> Dataset:
    """The response: exactly the keys the identifier asked for, values from the item."""
    out = Dataset()
    for elem in query:
        kw = elem.keyword
        if elem.tag.element == 0 or kw == "SpecificCharacterSet":
            continue
        have = item.get(kw) if kw else None
        if elem.VR == "SQ":
            subs = have or []
            if elem.value:
                subs = [s for s in subs if match(elem.value[0], s)]
                out.add_new(elem.tag, "SQ", Sequence([project(elem.value[0], s) for s in subs]))
            else:
                out.add_new(elem.tag, "SQ", Sequence([_full(s) for s in subs]))
        else:
            out.add_new(elem.tag, elem.VR, have if have not in (None, "") else None)
    return out


def _full(item: Item) -> Dataset:
    ds = Dataset()
    for kw, value in item.items():
        if isinstance(value, list):
            setattr(ds, kw, Sequence([_full(v) for v in value]))
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
    text fits it (e.g. ISO_IR 100 for Latin-1 names), else in UTF-8 (ISO_IR 192)."""
    from pydicom.charset import convert_encodings

    if all(t.isascii() for t in _texts(response)):
        if requested:
            response.SpecificCharacterSet = requested
        return
    if requested:
        try:
            encodings = convert_encodings(requested if isinstance(requested, list) else [requested])
            for t in _texts(response):
                t.encode(encodings[0])
            response.SpecificCharacterSet = requested
            return
        except (UnicodeEncodeError, LookupError, ValueError):
            pass
    response.SpecificCharacterSet = "ISO_IR 192"


@dataclass
class Prefilter:
    """Exact keys taken from the identifier so the database returns fewer candidates."""

    where: str
    params: list[Any]


def prefilter(query: Dataset) -> Prefilter:
    """SQL clauses for the keys a database index can answer; `match` still checks everything."""
    clauses, params = ["m.status IN ('SCHEDULED', 'IN_PROGRESS')"], []

    def exact(value: Any) -> str | None:
        text = _text(value)
        return text if text and "*" not in text and "?" not in text and "\\" not in text else None

    for kw, column in (("PatientID", "p.mrn"), ("AccessionNumber", "o.accession_number")):
        value = exact(query.get(kw, ""))
        if value:
            clauses.append(f"{column} = ?")
            params.append(value)
    if SPS in query and query.ScheduledProcedureStepSequence:
        sps = query.ScheduledProcedureStepSequence[0]
        for kw, column in (("Modality", "m.modality"), ("ScheduledStationAETitle", "m.station_aet")):
            value = exact(sps.get(kw, ""))
            if value:
                clauses.append(f"{column} = ?")
                params.append(value)
        date = _text(sps.get("ScheduledProcedureStepStartDate", ""))
        if date:
            rng = _split_range(date)
            lo, hi = rng if rng else (date, date)
            if lo:
                clauses.append("m.sps_date >= ?")
                params.append(_check_date(lo))
            if hi:
                clauses.append("m.sps_date <= ?")
                params.append(_check_date(hi))
    return Prefilter(" AND ".join(clauses), params)
