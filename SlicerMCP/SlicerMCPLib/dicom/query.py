"""C-FIND at patient, study, series and instance level with attribute presets and a result limit.

Patient level uses the Patient Root model, the others the Study Root model. Pending
responses are counted as they stream in; once the limit is passed we send C-CANCEL and
report `has_more`, so a query that matches a whole archive stays cheap.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pynetdicom import Association
from pynetdicom.presentation import build_context
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    PatientRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelFind,
)

from ..core.domain_config import DicomNode
from ..core.errors import ErrorCode, InvalidParameter, SlicerMCPError
from .associations import lost_association, node_label, open_association, status_of
from .models import AttributePreset, QueryLevel, QueryResult
from .status import STATUS_FAILURE, STATUS_PENDING

log = logging.getLogger(__name__)

_FIND_MSG_ID = 1
_DICOM_LEVEL = {"patient": "PATIENT", "study": "STUDY", "series": "SERIES", "instance": "IMAGE"}

PRESETS: dict[str, dict[str, list[str]]] = {
    "patient": {
        "minimal": ["PatientID", "PatientName"],
        "standard": ["PatientID", "PatientName", "PatientBirthDate", "PatientSex"],
        "extended": [
            "PatientID",
            "PatientName",
            "PatientBirthDate",
            "PatientSex",
            "OtherPatientIDs",
            "NumberOfPatientRelatedStudies",
            "NumberOfPatientRelatedSeries",
            "NumberOfPatientRelatedInstances",
        ],
    },
    "study": {
        "minimal": ["StudyInstanceUID", "StudyDate", "PatientID"],
        "standard": [
            "StudyInstanceUID",
            "StudyDate",
            "StudyTime",
            "StudyDescription",
            "AccessionNumber",
            "PatientID",
            "PatientName",
            "ModalitiesInStudy",
        ],
        "extended": [
            "StudyInstanceUID",
            "StudyDate",
            "StudyTime",
            "StudyDescription",
            "AccessionNumber",
            "StudyID",
            "PatientID",
            "PatientName",
            "PatientBirthDate",
            "PatientSex",
            "ModalitiesInStudy",
            "ReferringPhysicianName",
            "NumberOfStudyRelatedSeries",
            "NumberOfStudyRelatedInstances",
        ],
    },
    "series": {
        "minimal": ["SeriesInstanceUID", "Modality", "SeriesNumber"],
        "standard": [
            "StudyInstanceUID",
            "SeriesInstanceUID",
            "Modality",
            "SeriesNumber",
            "SeriesDescription",
            "NumberOfSeriesRelatedInstances",
        ],
        "extended": [
            "StudyInstanceUID",
            "SeriesInstanceUID",
            "Modality",
            "SeriesNumber",
            "SeriesDescription",
            "SeriesDate",
            "SeriesTime",
            "BodyPartExamined",
            "ProtocolName",
            "NumberOfSeriesRelatedInstances",
        ],
    },
    "instance": {
        "minimal": ["SOPInstanceUID", "InstanceNumber"],
        "standard": ["SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID", "InstanceNumber", "ContentDate"],
        "extended": [
            "StudyInstanceUID",
            "SeriesInstanceUID",
            "SOPInstanceUID",
            "SOPClassUID",
            "InstanceNumber",
            "ContentDate",
            "ContentTime",
            "Rows",
            "Columns",
            "NumberOfFrames",
            "ImagePositionPatient",
            "DocumentTitle",
        ],
    },
}


def attribute_list(
    level: QueryLevel,
    preset: AttributePreset,
    additional: Iterable[str] | None = None,
    exclude: Iterable[str] | None = None,
) -> list[str]:
    """The keywords a query asks for: the preset, plus additional, minus excluded (validated)."""
    keys = list(PRESETS[level][preset])
    for kw in additional or ():
        _check_keyword(kw)
        if kw not in keys:
            keys.append(kw)
    dropped = set()
    for kw in exclude or ():
        _check_keyword(kw)
        dropped.add(kw)
    return [k for k in keys if k not in dropped]


def _check_keyword(keyword: str) -> None:
    if tag_for_keyword(keyword) is None:
        raise InvalidParameter(
            f"{keyword!r} is not a DICOM attribute keyword (e.g. PatientName, StudyDate, SeriesDescription)",
            details={"keyword": keyword},
        )


def build_identifier(level: QueryLevel, attributes: list[str], filters: Mapping[str, str]) -> Dataset:
    """The C-FIND identifier: every requested attribute as a return key, filters as matching keys."""
    ds = Dataset()
    ds.QueryRetrieveLevel = _DICOM_LEVEL[level]
    for kw in attributes:
        setattr(ds, kw, "" if dictionary_VR(kw) != "SQ" else [])
    for kw, value in filters.items():
        setattr(ds, kw, value)
    return ds


def _json_value(elem: DataElement) -> Any:
    """A JSON-friendly value: numbers for IS/DS/US..., text otherwise, lists when multi-valued."""
    value = elem.value
    if value is None or value == "":
        return None
    if elem.VR == "SQ":
        return [{_kw(e): _json_value(e) for e in item} for item in value]
    if isinstance(value, bytes):
        return None
    if elem.VM > 1:
        return [_scalar(v, elem.VR) for v in value]
    return _scalar(value, elem.VR)


def _scalar(value: Any, vr: str) -> Any:
    if vr == "IS":
        return int(value)
    if vr == "DS":
        return float(value)
    if vr in ("US", "UL", "SS", "SL", "FL", "FD"):
        return value
    return str(value)


def _kw(elem: DataElement) -> str:
    return keyword_for_tag(elem.tag) or str(elem.tag)


def find_model(level: QueryLevel) -> Any:
    """The C-FIND information model of a level: Patient Root for patients, Study Root otherwise."""
    return (
        PatientRootQueryRetrieveInformationModelFind
        if level == "patient"
        else StudyRootQueryRetrieveInformationModelFind
    )


def find(
    node: DicomNode,
    calling_aet: str,
    level: QueryLevel,
    attributes: list[str],
    filters: Mapping[str, str],
    *,
    limit: int = 100,
    node_name: str | None = None,
    on_match: Callable[[int], None] | None = None,
) -> QueryResult:
    """Run one C-FIND and collect at most `limit` matches; `on_match(n)` is told of each pending response."""
    with open_association(
        node, calling_aet, [build_context(find_model(level))], node_name=node_name, retry=True
    ) as assoc:
        label = node_label(node, node_name)
        return find_on(
            assoc,
            level,
            attributes,
            filters,
            limit=limit,
            label=label,
            node_name=node_name,
            on_match=on_match,
        )


def can_find(assoc: Association, level: QueryLevel) -> bool:
    """Whether the peer accepted C-FIND at this level on an association opened for something else."""
    model = str(find_model(level))
    return any(str(cx.abstract_syntax) == model for cx in assoc.accepted_contexts)


def find_on(
    assoc: Association,
    level: QueryLevel,
    attributes: list[str],
    filters: Mapping[str, str],
    *,
    limit: int,
    label: str,
    node_name: str | None = None,
    on_match: Callable[[int], None] | None = None,
) -> QueryResult:
    """`find` on an association already open (e.g. the one that just stored what is asked for)."""
    model = find_model(level)
    identifier = build_identifier(level, attributes, filters)
    records: list[dict[str, Any]] = []
    pending = 0
    cancelled = False
    responses = assoc.send_c_find(identifier, model, msg_id=_FIND_MSG_ID)
    for status, match in responses:
        code, category = status_of(status)
        if code is None:
            raise lost_association(label, "C-FIND", assoc)
        if category == STATUS_PENDING:
            pending += 1
            if on_match is not None:
                on_match(pending)
            if len(records) < limit:
                records.append({_kw(e): _json_value(e) for e in match if _kw(e) != "QueryRetrieveLevel"})
            elif not cancelled:
                context = next(cx for cx in assoc.accepted_contexts if cx.abstract_syntax == model)
                assoc.send_c_cancel(_FIND_MSG_ID, context.context_id)
                cancelled = True
            continue
        if category == STATUS_FAILURE:
            raise SlicerMCPError(
                f"the C-FIND at {level} level on {label} failed with status 0x{code:04X}; "
                f"check the filters (for study dates use YYYYMMDD or YYYYMMDD-YYYYMMDD)",
                code=ErrorCode.DICOM_QUERY_FAILED,
                details={"status": f"0x{code:04X}", "level": level},
            )
    log.info("C-FIND %s on %s: %d matches", level, label, pending)
    return QueryResult(
        level=level,
        node=node_name or "",
        records=records,
        count=len(records),
        pending_responses=pending,
        limit=limit,
        has_more=pending > limit or cancelled,
        attributes=attributes,
    )
