"""Results made in the scene (SEG, SR, and images made for a volume that had none) until they are stored.

`ResultsRegistry` keeps each exported object by SOP Instance UID with what the next step
needs (the SEG's source headers and segment volumes for the SR; the SR's values for FHIR),
and writes it to a file under the DICOM storage folder so it can also be sent by hand.
`store_and_verify` sends objects by C-STORE or STOW-RS, then asks the PACS back for each
series at instance level (C-FIND): only instances the PACS lists count as stored.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field
from pydicom.dataset import Dataset
from pynetdicom.presentation import build_context

from ..core.domain_config import DicomNode
from ..core.errors import ErrorCode, InvalidParameter, SlicerMCPError
from ..core.localhost import open_private
from .associations import node_label
from .models import QueryResult
from .part10 import write_file
from .query import can_find, find, find_model, find_on
from .send import store_on, storing
from .sr_export import SegmentFindings, Value
from .stow import stow

StoreMethod = Literal["c-store", "stow-rs"]
Kind = Literal["SEG", "SR", "IMAGE"]


class SegmentResult(BaseModel):
    segment_number: int
    label: str
    category: str = Field(description="segmented property category, scheme^code^meaning")
    type: str = Field(description="segmented property type, scheme^code^meaning")
    tracking_uid: str
    voxels: int
    volume_mm3: float
    volume_ml: float


class SegExport(BaseModel):
    sop_instance_uid: str
    series_instance_uid: str
    study_instance_uid: str
    patient_id: str
    frame_of_reference_uid: str
    source_series_instance_uid: str
    source_images: int
    frames: int = Field(description="frames written (empty frames are omitted)")
    segments: list[SegmentResult]
    source_images_created: bool = Field(
        description="the volume came from no DICOM series: its images were made too and are stored with the SEG"
    )
    file: str
    bytes: int
    seconds: float


class MeasurementResult(BaseModel):
    tracking_id: str = Field(description="the segment label or markup name")
    tracking_uid: str | None = None
    segment_number: int | None = None
    quantity: str
    value: float
    unit: str = Field(description="UCUM")


class SrExport(BaseModel):
    sop_instance_uid: str
    series_instance_uid: str
    study_instance_uid: str
    patient_id: str
    seg_sop_instance_uid: str
    measurements: list[MeasurementResult]
    file: str
    bytes: int


class StoredInstance(BaseModel):
    sop_instance_uid: str
    kind: str
    series_instance_uid: str
    verified: bool = Field(description="the PACS lists it when asked back (instance-level C-FIND)")


class StoreResultsResult(BaseModel):
    success: bool = Field(description="every instance sent and found on the PACS afterwards")
    node: str
    method: StoreMethod
    sent: int
    failed: int
    verified: int
    instances: list[StoredInstance]
    study_instance_uid: str
    seconds: float


@dataclass
class Exported:
    kind: Kind
    dataset: Dataset
    file: Path
    sources: list[Dataset] = field(default_factory=list)  # SEG: the source image headers, in k order
    findings: list[SegmentFindings] = field(default_factory=list)  # SEG: per segment; SR: what it says
    markups: list[tuple[str, Value]] = field(default_factory=list)
    created_sources: list[Dataset] = field(default_factory=list)  # images made for a non-DICOM volume


class ResultsRegistry:
    """Exported objects of this server session, by SOP Instance UID (thread-safe)."""

    def __init__(self, folder: Path):
        self.folder = folder
        self._items: dict[str, Exported] = {}
        self._lock = threading.Lock()

    def add(self, item: Exported) -> Exported:
        with open_private(item.file) as out:  # patient data: 0600 in a 0700 folder
            write_file(item.dataset, out)
        with self._lock:
            self._items[str(item.dataset.SOPInstanceUID)] = item
        return item

    def path_for(self, kind: str, uid: str) -> Path:
        return self.folder / f"{kind}-{uid}.dcm"

    def get(self, uid: str, kind: Kind | None = None) -> Exported:
        with self._lock:
            item = self._items.get(uid)
        if item is None or (kind is not None and item.kind != kind):
            what = kind or "result"
            raise InvalidParameter(
                f"no {what} with SOP Instance UID {uid} was exported in this session; run export_dicom_"
                f"{(kind or 'seg').lower()} first and pass the sop_instance_uid it returned",
                details={"sop_instance_uid": uid},
            )
        return item

    def datasets_for(self, uids: Sequence[str]) -> list[tuple[str, Dataset, Path | None]]:
        """(kind, dataset, its file) of each object and of the images made for it (no file), each once,
        images first. Sending the file spares encoding the dataset again."""
        out: dict[str, tuple[str, Dataset, Path | None]] = {}
        for uid in uids:
            item = self.get(uid)
            for image in item.created_sources:
                out.setdefault(str(image.SOPInstanceUID), ("IMAGE", image, None))
        for uid in uids:
            item = self.get(uid)
            out.setdefault(uid, (item.kind, item.dataset, item.file))
        return list(out.values())


_LISTED_KEYS = ["SOPInstanceUID", "SOPClassUID"]


def _uids(found: QueryResult) -> set[str]:
    return {str(r.get("SOPInstanceUID", "")) for r in found.records}


def _series_filters(study: str, series: str) -> dict[str, str]:
    return {"StudyInstanceUID": study, "SeriesInstanceUID": series}


def store_and_verify(
    node: DicomNode,
    name: str,
    calling_aet: str,
    objects: Sequence[tuple[str, Dataset, Path | None]],
    method: StoreMethod,
) -> StoreResultsResult:
    """Send the objects, then ask the PACS for each of their series; NOT stored unless listed.

    By C-STORE the instance-level C-FIND goes over the association that stored them when the PACS
    accepts C-FIND on it (Orthanc does): one association, as storescu opens, instead of two."""
    if not objects:
        raise InvalidParameter("nothing to store: pass the sop_instance_uids export_dicom_seg/sr returned")
    started = time.perf_counter()
    datasets = [ds for _, ds, _ in objects]
    items = [path or ds for _, ds, path in objects]
    series_of = {str(ds.SeriesInstanceUID): str(ds.StudyInstanceUID) for ds in datasets}
    listed: dict[str, set[str]] = {}
    if method == "stow-rs":
        sent = stow(node, items, node_name=name)
    else:
        also = [build_context(find_model("instance"))]
        with storing(node, calling_aet, items, node_name=name, also=also) as (assoc, identities):
            label = node_label(node, name)
            sent = store_on(assoc, items, identities, label, node.ae_title)
            if can_find(assoc, "instance"):
                for series, study in series_of.items():
                    filters = _series_filters(study, series)
                    found = find_on(assoc, "instance", _LISTED_KEYS, filters, limit=10_000, label=label)
                    listed[series] = _uids(found)
    for series, study in series_of.items():
        if series not in listed:  # STOW-RS, or a PACS that takes no C-FIND on a storage association
            filters = _series_filters(study, series)
            listed[series] = _uids(
                find(node, calling_aet, "instance", _LISTED_KEYS, filters, limit=10_000, node_name=name)
            )
    study = str(datasets[0].StudyInstanceUID)
    instances = [
        StoredInstance(
            sop_instance_uid=str(ds.SOPInstanceUID),
            kind=kind,
            series_instance_uid=str(ds.SeriesInstanceUID),
            verified=str(ds.SOPInstanceUID) in listed[str(ds.SeriesInstanceUID)],
        )
        for kind, ds, _ in objects
    ]
    verified = sum(1 for i in instances if i.verified)
    result = StoreResultsResult(
        success=verified == len(instances) and sent.failed == 0,
        node=name,
        method=method,
        sent=sent.sent,
        failed=sent.failed,
        verified=verified,
        instances=instances,
        study_instance_uid=study,
        seconds=round(time.perf_counter() - started, 3),
    )
    if verified < len(instances):
        missing = [i.sop_instance_uid for i in instances if not i.verified]
        raise SlicerMCPError(
            f"{len(missing)} of {len(instances)} objects are not on {name} after storing ({sent.failed} refused); "
            "check the PACS log and whether it accepts SEG/SR SOP classes, then store again",
            code=ErrorCode.DICOM_SEND_FAILED,
            details={"missing": missing, "failures": [f.model_dump() for f in sent.failures]},
        )
    return result
