"""A DICOM Segmentation read back onto its source volume: one boolean mask per segment, [k, j, i].

Read with pydicom alone (no highdicom needed to load): the segments from the Segment
Sequence, each frame's segment and plane position from its functional groups, the source
series from the Referenced Series Sequence. Frames are placed on the source volume's grid by
their position; a SEG on another grid (resampled, tilted, cropped in-plane) is refused rather
than resampled, so a loaded SEG is exactly what was stored.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from pydicom.dataset import Dataset

from ..core.errors import InvalidParameter, NotSupported
from ..core.scene_backend import SegmentMask
from ..core.terminology import Code, entry_tag
from .seg_export import SEG_SOP_CLASS
from .volume import LPS_TO_RAS, load_failed


@dataclass
class SegmentInfo:
    number: int
    label: str
    terminology: str | None
    color: tuple[float, float, float]


@dataclass
class DecodedSeg:
    sop_instance_uid: str
    series_instance_uid: str
    referenced_series_uid: str
    frame_of_reference_uid: str
    name: str
    segments: list[SegmentInfo]
    frames: np.ndarray  # (n, rows, cols) uint8
    frame_segments: list[int] = field(default_factory=list)
    frame_positions: list[np.ndarray] = field(default_factory=list)
    orientation: np.ndarray | None = None


def is_seg(ds: Dataset) -> bool:
    return str(ds.get("SOPClassUID", "")) == SEG_SOP_CLASS


def _code(item: Dataset, keyword: str) -> Code | None:
    seq = item.get(keyword)
    if not seq:
        return None
    c = seq[0]
    return Code(
        str(c.get("CodeValue", "")), str(c.get("CodingSchemeDesignator", "")), str(c.get("CodeMeaning", ""))
    )


def _rgb(item: Dataset) -> tuple[float, float, float]:
    """The segment's recommended display colour (CIELab) as RGB 0..1; red when it has none."""
    lab = item.get("RecommendedDisplayCIELabValue")
    if lab is None:
        return (1.0, 0.0, 0.0)
    try:
        from highdicom.color import CIELabColor

        return tuple(c / 255 for c in CIELabColor.from_dicom_value(list(lab)).to_rgb())  # type: ignore[return-value]
    except ImportError:  # pragma: no cover - highdicom absent (Slicer 5.10): colour only
        return (1.0, 0.0, 0.0)


def _group(ds: Dataset, frame: Dataset, keyword: str) -> Dataset | None:
    for source in (frame, (ds.get("SharedFunctionalGroupsSequence") or [None])[0]):
        if source is not None and source.get(keyword):
            return source[keyword][0]
    return None


def decode_seg(ds: Dataset) -> DecodedSeg:
    """The segments, frames and references of a SEG instance."""
    if not is_seg(ds):
        raise InvalidParameter("not a DICOM Segmentation instance")
    if str(ds.get("SegmentationType", "")) != "BINARY":
        raise NotSupported("only BINARY segmentations load as segments; this one is FRACTIONAL")
    segments = []
    for item in ds.SegmentSequence:
        category, kind = (
            _code(item, "SegmentedPropertyCategoryCodeSequence"),
            _code(item, "SegmentedPropertyTypeCodeSequence"),
        )
        segments.append(
            SegmentInfo(
                int(item.SegmentNumber),
                str(item.get("SegmentLabel", "") or f"Segment {item.SegmentNumber}"),
                entry_tag(category, kind) if category and kind else None,
                _rgb(item),
            )
        )
    refs = ds.get("ReferencedSeriesSequence") or []
    if not refs:
        raise load_failed("the SEG names no source series (Referenced Series Sequence)")
    frames = ds.pixel_array
    if frames.ndim == 2:
        frames = frames[np.newaxis]
    out = DecodedSeg(
        str(ds.SOPInstanceUID),
        str(ds.SeriesInstanceUID),
        str(refs[0].SeriesInstanceUID),
        str(ds.get("FrameOfReferenceUID", "")),
        str(ds.get("SeriesDescription", "") or "Segmentation"),
        segments,
        frames,
    )
    for frame in ds.PerFrameFunctionalGroupsSequence:
        ident = _group(ds, frame, "SegmentIdentificationSequence")
        position = _group(ds, frame, "PlanePositionSequence")
        orientation = _group(ds, frame, "PlaneOrientationSequence")
        if ident is None or position is None or orientation is None:
            raise load_failed("a SEG frame lacks its segment number, plane position or orientation")
        out.frame_segments.append(int(ident.ReferencedSegmentNumber))
        out.frame_positions.append(np.array([float(v) for v in position.ImagePositionPatient]))
        out.orientation = np.array([float(v) for v in orientation.ImageOrientationPatient])
    return out


def masks_on(seg: DecodedSeg, ijk_to_ras: np.ndarray, shape: tuple[int, int, int]) -> list[SegmentMask]:
    """Each segment's mask on the source volume's grid; a frame off that grid is NOT_SUPPORTED."""
    ijk_to_lps = LPS_TO_RAS @ np.asarray(ijk_to_ras, dtype=float)
    lps_to_ijk = np.linalg.inv(ijk_to_lps)
    if seg.orientation is not None:
        axes = [ijk_to_lps[:3, n] / np.linalg.norm(ijk_to_lps[:3, n]) for n in (0, 1)]
        if not np.allclose(np.concatenate(axes), seg.orientation, atol=1e-4):
            raise NotSupported(
                "the SEG's planes are not the source volume's slices; resampling a SEG is not supported"
            )
    if seg.frames.shape[1:] != shape[1:]:
        raise NotSupported(
            f"the SEG frames are {seg.frames.shape[1:]}, the source slices {shape[1:]}: not the same grid"
        )
    masks = {s.number: np.zeros(shape, dtype=bool) for s in seg.segments}
    for frame, number, position in zip(seg.frames, seg.frame_segments, seg.frame_positions, strict=True):
        ijk = lps_to_ijk @ np.array([*position, 1.0])
        k = int(round(ijk[2]))
        if np.abs(ijk[:3] - [0.0, 0.0, k]).max() > 0.01 or not 0 <= k < shape[0]:
            raise NotSupported(
                "a SEG frame lies off the source volume's slices; resampling a SEG is not supported"
            )
        if number not in masks:
            raise load_failed(f"a SEG frame names segment {number}, which the Segment Sequence lacks")
        masks[number][k] |= frame.astype(bool)
    return [
        SegmentMask(str(s.number), s.label, masks[s.number], s.color, s.terminology) for s in seg.segments
    ]
