"""Scene segments as a DICOM Segmentation (BINARY) over the images they were drawn on, with highdicom.

The SEG joins the source series' study and frame of reference and references each source
image; one frame per source slice and segment holding anything (empty frames omitted), in
the source slices' order. Segment labels, colours and SNOMED CT category/type come from the
scene (dicom/codes.py). highdicom needs pydicom 3 (Slicer 5.12+ ships both): `require_highdicom`
says what to do when it is missing.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from ..core.errors import ErrorCode, InvalidParameter, NotSupported, SlicerMCPError
from ..core.scene_backend import SegmentationArray
from .codes import segment_codes
from .volume import LPS_TO_RAS

log = logging.getLogger(__name__)

SEG_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.66.4"
MANUFACTURER = "SlicerMCP"
SOFTWARE_VERSION = "0.1.0"
AlgorithmType = Literal["MANUAL", "SEMIAUTOMATIC", "AUTOMATIC"]


def require_highdicom() -> Any:
    """The highdicom module, or a coded error saying how to get it (it needs pydicom >= 3)."""
    try:
        import highdicom
    except ImportError as exc:
        import pydicom

        raise SlicerMCPError(
            f"writing DICOM SEG and SR needs highdicom, which needs pydicom 3; this Python has pydicom "
            f"{pydicom.__version__}{' and no highdicom' if isinstance(exc, ModuleNotFoundError) else ''}. "
            "Slicer 5.12 and newer ship both; on Slicer 5.10 (pydicom 2.4) use Slicer 5.12+ for SEG/SR export "
            "(loading a SEG works everywhere). Outside Slicer: pip install 'highdicom>=0.27,<0.29'.",
            code=ErrorCode.NOT_SUPPORTED,
            details={"missing": "highdicom", "pydicom": pydicom.__version__},
        ) from exc
    return highdicom


def order_sources(
    sources: Sequence[Dataset], ijk_to_ras: np.ndarray, shape: tuple[int, int, int]
) -> list[Dataset]:
    """The source images in the volume's k order, one per slice, checked against its grid.

    A volume the loader resampled (uneven slices) or reoriented no longer matches its images
    voxel for voxel; such a SEG would be wrong, so it is refused."""
    ijk_to_lps = LPS_TO_RAS @ np.asarray(ijk_to_ras, dtype=float)
    lps_to_ijk = np.linalg.inv(ijk_to_lps)
    by_k: dict[int, Dataset] = {}
    for ds in sources:
        if int(ds.get("NumberOfFrames", 1) or 1) != 1 or "ImagePositionPatient" not in ds:
            raise NotSupported(
                "the source series is not made of single-frame slices with a position; a SEG over it is not "
                "supported yet",
                details={"sop_instance_uid": str(ds.get("SOPInstanceUID", ""))},
            )
        ijk = lps_to_ijk @ np.array([*map(float, ds.ImagePositionPatient), 1.0])
        k = int(round(ijk[2]))
        off = np.abs(ijk[:3] - [0.0, 0.0, k])
        if off.max() > 0.01 or not 0 <= k < shape[0] or (int(ds.Rows), int(ds.Columns)) != shape[1:]:
            raise InvalidParameter(
                "the reference volume does not match its DICOM images voxel for voxel (resampled, cropped or "
                "moved after loading); load the series again and segment on that volume",
                details={"sop_instance_uid": str(ds.SOPInstanceUID)},
            )
        by_k.setdefault(k, ds)
    if len(by_k) != shape[0]:
        raise InvalidParameter(
            f"the source series has images for {len(by_k)} of the volume's {shape[0]} slices",
            details={"slices": shape[0], "images": len(by_k)},
        )
    return [by_k[k] for k in range(shape[0])]


def _overlap(masks: Sequence[np.ndarray]) -> bool:
    """Whether any voxel is in two masks: one AND and one OR per mask (no per-voxel sum)."""
    union = np.zeros(masks[0].shape, dtype=bool)
    scratch = np.empty_like(union)
    for mask in masks:
        if np.logical_and(union, mask, out=scratch).any():
            return True
        union |= mask
    return False


def _pixel_array(masks: list[np.ndarray]) -> np.ndarray:
    """A label map (segment numbers) when no two segments overlap, else the masks stacked last.

    highdicom checks a stack for overlap by summing over it; a label map it checks with one max(),
    so overlap is tested here first, cheaply."""
    if len(masks) < 256 and not _overlap(masks):
        labels = np.zeros(masks[0].shape, dtype=np.uint8)
        for number, mask in enumerate(masks, start=1):
            labels[mask] = number
        return labels
    # Stacked segment-first then viewed segment-last: same values, but each segment stays contiguous,
    # so each frame highdicom takes is a contiguous slice; the SEG written is byte-identical.
    return np.moveaxis(np.stack(masks, axis=0), 0, -1)


@functools.cache
def _segmentation_class() -> Any:
    """highdicom's Segmentation, told the overlap of a boolean stack without its per-voxel sum.

    For a 4-D stack highdicom sums over the segment axis into an int64 array (600 MB for two
    512x512x300 masks, ~0.7 s) only to decide SegmentsOverlap; for booleans, whose other checks
    (binary values, shape) hold by type, `_overlap` answers the same in ~0.05 s. Every other input
    takes highdicom's own check. The hook is a private classmethod with the same signature from
    highdicom 0.25 to 0.28; Testing/test_results_dicom.py compares both answers so a change shows.
    """
    hd = require_highdicom()
    binary, overlaps = hd.seg.SegmentationTypeValues.BINARY, hd.seg.SegmentsOverlapValues

    class Segmentation(hd.seg.Segmentation):  # type: ignore[misc,name-defined]
        @classmethod
        def _check_and_cast_pixel_array(
            cls, pixel_array: Any, segment_numbers: np.ndarray, segmentation_type: Any, dtype: type
        ) -> tuple[Any, Any]:
            if (
                type(pixel_array) is np.ndarray
                and pixel_array.ndim == 4
                and pixel_array.dtype == np.bool_
                and pixel_array.shape[-1] == len(segment_numbers) > 1
                and segmentation_type == binary
            ):
                segments = [pixel_array[..., s] for s in range(pixel_array.shape[-1])]
                return pixel_array, overlaps.YES if _overlap(segments) else overlaps.NO
            return super()._check_and_cast_pixel_array(pixel_array, segment_numbers, segmentation_type, dtype)

    return Segmentation


def build_seg(
    segmentation: SegmentationArray,
    sources: Sequence[Dataset],
    *,
    series_description: str | None = None,
    series_number: int = 9100,
    algorithm_type: AlgorithmType = "SEMIAUTOMATIC",
    content_creator: str | None = None,
) -> Any:
    """A highdicom Segmentation (a pydicom Dataset) of every segment over the ordered source images."""
    hd = require_highdicom()
    from pydicom.sr.codedict import codes

    if not segmentation.segments:
        raise InvalidParameter("no segments to write")
    shape = segmentation.segments[0].mask.shape
    ordered = order_sources(sources, segmentation.ijk_to_ras, shape)
    algorithm = None
    if algorithm_type != "MANUAL":
        algorithm = hd.AlgorithmIdentificationSequence(
            name="3D Slicer segmentation", family=codes.cid7162.ManualProcessing, version=SOFTWARE_VERSION
        )
    descriptions = []
    for number, item in enumerate(segmentation.segments, start=1):
        category, kind = segment_codes(item.name, item.terminology)
        extra = {}
        if hasattr(getattr(hd, "color", None), "CIELabColor"):  # 0.27 (Slicer's) and 0.28 have it
            extra["display_color"] = hd.color.CIELabColor.from_rgb(*(round(c * 255) for c in item.color))
        descriptions.append(
            hd.seg.SegmentDescription(
                segment_number=number,
                segment_label=item.name[:64],
                segmented_property_category=hd.sr.CodedConcept(
                    category.value, category.scheme, category.meaning
                ),
                segmented_property_type=hd.sr.CodedConcept(kind.value, kind.scheme, kind.meaning),
                algorithm_type=algorithm_type,
                algorithm_identification=algorithm,
                tracking_uid=generate_uid(),
                tracking_id=item.name[:64],
                **extra,
            )
        )
    pixels = _pixel_array([item.mask for item in segmentation.segments])
    seg = _segmentation_class()(
        source_images=ordered,
        pixel_array=pixels,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions,
        series_instance_uid=generate_uid(),
        series_number=series_number,
        sop_instance_uid=generate_uid(),
        instance_number=1,
        manufacturer=MANUFACTURER,
        manufacturer_model_name="SlicerMCP",
        software_versions=SOFTWARE_VERSION,
        device_serial_number="0",
        content_description=(series_description or f"{segmentation.name} segmentation")[:64],
        content_label="SEGMENTATION",
        content_creator_name=content_creator,
        omit_empty_frames=True,
    )
    seg.SeriesDescription = (series_description or f"{segmentation.name} segmentation")[:64]
    log.info("SEG of %d segments over %d images built", len(descriptions), len(ordered))
    return seg
