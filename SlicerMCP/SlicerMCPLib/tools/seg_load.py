"""load_series of a DICOM SEG: a segmentation node over its source volume, not a volume.

The series' modality (one series-level C-FIND) decides; the SEG's source series is the
volume in the scene with that DICOM.SeriesInstanceUID, or is loaded first. The masks are
placed on the source volume's grid frame by frame (dicom/seg_load.py), so what comes back is
voxel for voxel what was exported.
"""

from __future__ import annotations

import io
from collections.abc import Awaitable, Callable

import anyio.to_thread
import pydicom

from ..core.errors import SlicerMCPError
from ..core.models import NodeSummary
from ..core.scene_backend import SegmentationArray
from ..core.services import Services
from ..dicom.models import LoadedSeries
from ..dicom.move import Target
from ..dicom.query import find
from ..dicom.seg_export import SEG_SOP_CLASS
from ..dicom.seg_load import DecodedSeg, decode_seg, is_seg, masks_on
from ..dicom.service import DicomService
from ..dicom.volume import load_failed

SERIES_ATTRIBUTE = "DICOM.SeriesInstanceUID"
LoadSource = Callable[[Target], Awaitable[list[LoadedSeries]]]


def series_modality(service: DicomService, target: Target) -> str | None:
    """The series' Modality from the current node (None when it does not say); a SEG series this
    session stored there is known without asking."""
    name, node = service.node()
    known = service.stored_series(target, name)
    if known is not None and known.sop_classes == [SEG_SOP_CLASS]:
        return "SEG"
    try:
        found = find(
            node,
            service.calling_aet,
            "series",
            ["SeriesInstanceUID", "Modality"],
            {"StudyInstanceUID": target.study_uid, "SeriesInstanceUID": target.series_uid or ""},
            limit=1,
            node_name=name,
        )
    except SlicerMCPError:
        return None  # the load itself reports an unreachable node with its own words
    return str(found.records[0].get("Modality") or "") if found.records else None


def _decode(service: DicomService, target: Target) -> list[DecodedSeg]:
    items = service.fetch_instances(target)
    out = []
    for data in items.values():
        ds = pydicom.dcmread(data if not isinstance(data, (bytes, bytearray)) else io.BytesIO(data))
        if is_seg(ds):
            out.append(decode_seg(ds))
    if not out:
        raise load_failed(f"series {target.series_uid} is labelled SEG but holds no Segmentation instance")
    return out


async def _source_node(services: Services, series_uid: str) -> str | None:
    listing = await services.backend.list_nodes("vtkMRMLScalarVolumeNode", None, 0, 1000)
    for summary in listing.nodes:
        if summary.class_name == "vtkMRMLLabelMapVolumeNode":
            continue
        details = await services.backend.get_node(summary.id)
        if details.attributes.get(SERIES_ATTRIBUTE) == series_uid:
            return summary.id
    return None


async def load_seg(
    services: Services, service: DicomService, target: Target, load_source: LoadSource
) -> tuple[list[LoadedSeries], list[NodeSummary]]:
    """(source volumes loaded for it, segmentation nodes added) for a SEG series."""
    decoded = await anyio.to_thread.run_sync(_decode, service, target)
    sources: list[LoadedSeries] = []
    added = []
    for seg in decoded:
        source_id = await _source_node(services, seg.referenced_series_uid)
        if source_id is None:
            loaded = await load_source(Target(target.study_uid, seg.referenced_series_uid))
            sources += loaded
            source_id = loaded[0].node.id
        volume = await services.backend.export_volume(source_id)
        masks = await anyio.to_thread.run_sync(masks_on, seg, volume.ijk_to_ras, volume.array.shape)
        attributes = {
            "DICOM.SOPInstanceUID": seg.sop_instance_uid,
            SERIES_ATTRIBUTE: seg.series_instance_uid,
            "DICOM.ReferencedSeriesInstanceUID": seg.referenced_series_uid,
        }
        added.append(
            await services.backend.add_segmentation(
                SegmentationArray(seg.name, masks, source_id, attributes, volume.ijk_to_ras)
            )
        )
    return sources, added
