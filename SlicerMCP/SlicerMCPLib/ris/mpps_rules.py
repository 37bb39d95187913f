"""What a Modality Performed Procedure Step must carry when it is set COMPLETED (PS3.4 F.7.2.2, IHE SWF).

A step may be created bare, but the N-SET that completes it must leave it with an end date
and time and at least one performed series; each series needs its Series Instance UID and
Protocol Name (Type 1 in the Performed Series Sequence) and must reference at least one
instance, as an image (Referenced Image Sequence) or as a non-image object such as a SEG or
SR (Referenced Non-Image Composite SOP Instance Sequence). The SCP refuses the N-SET with
Missing Attribute Value (0x0121) naming the first problems, and the step stays IN PROGRESS.
"""

from __future__ import annotations

from typing import Any

from pydicom.dataset import Dataset

from ..dicom.status import Status

MISSING_ATTRIBUTE_VALUE = Status.MISSING_ATTRIBUTE_VALUE
IMAGE_REFS = "ReferencedImageSequence"
NON_IMAGE_REFS = "ReferencedNonImageCompositeSOPInstanceSequence"


def _refs(item: Dataset) -> list[Dataset]:
    return [*(item.get(IMAGE_REFS) or []), *(item.get(NON_IMAGE_REFS) or [])]


def completion_problems(ds: Dataset, stored: dict[str, Any]) -> list[str]:
    """Why this N-SET cannot complete the step (empty: it can). `stored` holds what the step
    already has: end_date, end_time, series (records, as the store keeps them)."""
    problems = []
    for keyword, key in (
        ("PerformedProcedureStepEndDate", "end_date"),
        ("PerformedProcedureStepEndTime", "end_time"),
    ):
        if not str(ds.get(keyword, "") or "") and not stored.get(key):
            problems.append(f"{keyword} is empty")
    if "PerformedSeriesSequence" not in ds:
        if not stored.get("series"):
            problems.append("PerformedSeriesSequence has no item")
        return problems
    items = list(ds.PerformedSeriesSequence or [])
    if not items:
        problems.append("PerformedSeriesSequence has no item")
    for n, item in enumerate(items, start=1):
        for keyword in ("SeriesInstanceUID", "ProtocolName"):
            if not str(item.get(keyword, "") or ""):
                problems.append(f"performed series {n}: {keyword} is empty")
        refs = _refs(item)
        if not refs:
            problems.append(f"performed series {n}: references no image or non-image instance")
        for ref in refs:
            if not ref.get("ReferencedSOPInstanceUID") or not ref.get("ReferencedSOPClassUID"):
                problems.append(f"performed series {n}: a reference lacks its SOP class or instance UID")
                break
    return problems


def series_records(ds: Dataset) -> list[dict[str, Any]]:
    """The Performed Series Sequence as plain records for the store: images and non-image objects."""
    out = []
    for item in ds.get("PerformedSeriesSequence", []) or []:
        refs = [r for r in _refs(item) if "ReferencedSOPInstanceUID" in r]
        out.append(
            {
                "series_instance_uid": str(item.get("SeriesInstanceUID", "")),
                "series_description": str(item.get("SeriesDescription", "")),
                "retrieve_aet": str(item.get("RetrieveAETitle", "")),
                "instances": [str(r.ReferencedSOPInstanceUID) for r in refs],
                "sop_classes": [str(r.get("ReferencedSOPClassUID", "")) for r in refs],
            }
        )
    return out
