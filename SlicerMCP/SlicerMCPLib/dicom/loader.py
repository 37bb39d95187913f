"""DICOM series -> VolumeArray: geometry from the standard's attributes, voxels with numpy.

Slices are ordered by their position along the slice normal; the slice spacing comes from
those positions (never SliceThickness); rescale slope/intercept are applied; LPS becomes
RAS. Non-uniform spacing is resampled to the median spacing, gantry tilt is reported;
both add a warning. Enhanced multi-frame objects are read from their functional groups.
Pure computation: callers run it off the main thread and hand the result to the scene.
"""

from __future__ import annotations

import io
import logging
import threading
from collections import Counter
from collections.abc import Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.charset import convert_encodings, decode_bytes
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from ..core.errors import SlicerMCPError
from ..core.scene_backend import VolumeArray
from .header import read_image
from .volume import (
    Allocate,
    LoadedVolume,
    NotAVolume,
    Slice,
    assemble,
    consistent_slices,
    load_failed,
)

log = logging.getLogger(__name__)

_UNCOMPRESSED = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1"}


def _stored_pixels(ds: Dataset) -> np.ndarray:
    """Stored values as (frames, rows, cols) or (rows, cols); numpy alone for plain uncompressed data."""
    if int(ds.get("SamplesPerPixel", 1)) != 1:
        raise load_failed(
            "colour (RGB) images cannot be loaded as a scalar volume",
            photometric=str(ds.get("PhotometricInterpretation")),
        )
    meta = getattr(ds, "file_meta", None)
    syntax = str(meta.get("TransferSyntaxUID", "")) if meta is not None else ""
    bits = int(ds.BitsAllocated)
    plain = syntax in _UNCOMPRESSED and bits in (8, 16, 32) and int(ds.get("BitsStored", bits)) == bits
    if plain:
        dtype = np.dtype(f"{'i' if int(ds.PixelRepresentation) else 'u'}{bits // 8}").newbyteorder("<")
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        shape = (frames, int(ds.Rows), int(ds.Columns)) if frames > 1 else (int(ds.Rows), int(ds.Columns))
        count = int(np.prod(shape))
        try:
            return np.frombuffer(ds.PixelData, dtype=dtype, count=count).reshape(shape)
        except ValueError as exc:
            raise load_failed(
                f"instance {ds.get('SOPInstanceUID', '?')} has truncated pixel data",
                sop_instance_uid=str(ds.get("SOPInstanceUID", "")),
            ) from exc
    try:
        return ds.pixel_array
    except Exception as exc:  # missing decoder plugin, broken data
        raise load_failed(
            f"cannot decode the pixel data (transfer syntax {syntax}): {exc}; retrieve it uncompressed",
            syntax=syntax,
        ) from exc


def _rescale(item: Dataset | None, ds: Dataset) -> tuple[float, float]:
    for source in (item, ds):
        if source is not None and "RescaleSlope" in source:
            return float(source.RescaleSlope), float(source.get("RescaleIntercept", 0.0))
    return 1.0, 0.0


def _slices_of(ds: Dataset) -> list[Slice]:
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if "PerFrameFunctionalGroupsSequence" in ds:
        return _enhanced_slices(ds)
    if frames > 1:
        raise load_failed("classic multi-frame images without per-frame positions are not supported")
    if "ImagePositionPatient" not in ds or "ImageOrientationPatient" not in ds or "PixelSpacing" not in ds:
        raise load_failed("an image lacks ImagePositionPatient, ImageOrientationPatient or PixelSpacing")
    slope, intercept = _rescale(None, ds)
    return [
        Slice(
            np.array(ds.ImagePositionPatient, dtype=float),
            np.array(ds.ImageOrientationPatient, dtype=float),
            (float(ds.PixelSpacing[0]), float(ds.PixelSpacing[1])),
            slope,
            intercept,
            _stored_pixels(ds),
        )
    ]


def _checked_slices(ds: Dataset) -> list[Slice]:
    """The slices of one instance; a missing or malformed image attribute is DICOM_LOAD_FAILED naming
    the instance (a PACS may hold objects that read but do not describe an image)."""
    uid = str(ds.get("SOPInstanceUID", ""))
    try:
        slices = _slices_of(ds)
    except SlicerMCPError:
        raise
    except (AttributeError, KeyError, IndexError, TypeError, ValueError) as exc:
        raise load_failed(
            f"instance {uid} lacks or has malformed image attributes ({type(exc).__name__}: {exc})",
            sop_instance_uid=uid,
        ) from exc
    for s in slices:
        if s.position.shape != (3,) or s.orientation.shape != (6,):
            raise load_failed(
                f"instance {uid} has an ImagePositionPatient or ImageOrientationPatient of the wrong length",
                sop_instance_uid=uid,
            )
    return slices


def _group(ds: Dataset, frame: Dataset, keyword: str) -> Dataset | None:
    """A functional group macro item from the frame's own groups, else the shared ones."""
    for source in (frame, ds.get("SharedFunctionalGroupsSequence", [None])[0]):
        if source is not None and keyword in source and len(source[keyword].value):
            return source[keyword].value[0]
    return None


def _enhanced_slices(ds: Dataset) -> list[Slice]:
    pixels = _stored_pixels(ds)
    if pixels.ndim == 2:
        pixels = pixels[np.newaxis]
    out = []
    for index, frame in enumerate(ds.PerFrameFunctionalGroupsSequence):
        position = _group(ds, frame, "PlanePositionSequence")
        orientation = _group(ds, frame, "PlaneOrientationSequence")
        measures = _group(ds, frame, "PixelMeasuresSequence")
        if position is None or orientation is None or measures is None:
            raise load_failed(
                "an enhanced multi-frame image lacks plane position, orientation or pixel measures"
            )
        slope, intercept = _rescale(_group(ds, frame, "PixelValueTransformationSequence"), ds)
        out.append(
            Slice(
                np.array(position.ImagePositionPatient, dtype=float),
                np.array(orientation.ImageOrientationPatient, dtype=float),
                (float(measures.PixelSpacing[0]), float(measures.PixelSpacing[1])),
                slope,
                intercept,
                pixels[index],
            )
        )
    return out


@dataclass
class _Instance:
    """What the volume needs from one instance, read by the fast reader or by pydicom."""

    sop_uid: str
    slices: list[Slice]  # empty for a non-image object
    study_uid: str = ""
    series_uid: str = ""
    modality: str = ""
    name: str = ""
    window_level: tuple[float, float] | None = None
    bits_stored: int | None = None  # known for instances the fast reader read
    sop_class: str = ""


def _label(source: Path | bytes, index: int) -> str:
    return Path(source).name if isinstance(source, (str, Path)) else f"instance #{index + 1}"


def _dcmread(source: Path | bytes, index: int) -> Dataset:
    label = _label(source, index)
    try:
        ds = pydicom.dcmread(source if isinstance(source, (str, Path)) else io.BytesIO(source))
        str(ds.SOPInstanceUID), str(ds.SOPClassUID)  # noqa: B018 - a DICOM object must identify itself
    except Exception as exc:  # pydicom raises several types for corrupt input
        raise load_failed(
            f"{label} is not a readable DICOM object ({type(exc).__name__})", item=label
        ) from exc
    return ds


def _series_name(description: str, number: str) -> str:
    return description or f"Series {number}".strip()


def read_instance(source: Path | bytes, index: int = 0) -> _Instance:
    """One instance's slices and series attributes: the fast reader for plain single-frame images
    (no copy of the pixels), pydicom for everything else."""
    data = Path(source).read_bytes() if isinstance(source, (str, Path)) else source
    fast = read_image(data) if isinstance(data, (bytes, bytearray)) else None
    if fast is not None:
        description = ""
        if fast.series_description:
            encodings = convert_encodings(fast.character_set or ["ISO_IR 6"])
            description = decode_bytes(fast.series_description, encodings, set()).rstrip("\0 ")
        return _Instance(
            fast.sop_instance_uid,
            [
                Slice(
                    np.array(fast.position, dtype=float),
                    np.array(fast.orientation, dtype=float),
                    fast.spacing,
                    fast.slope,
                    fast.intercept,
                    fast.pixels,
                )
            ],
            fast.study_instance_uid,
            fast.series_instance_uid,
            fast.modality,
            _series_name(description, fast.series_number),
            _window_level(fast.window_center, fast.window_width),
            fast.bits_stored,
            fast.sop_class_uid,
        )
    ds = _dcmread(source, index)
    image = "PixelData" in ds
    return _Instance(
        str(ds.SOPInstanceUID),
        _checked_slices(ds) if image else [],
        str(ds.get("StudyInstanceUID", "")),
        str(ds.get("SeriesInstanceUID", "")),
        str(ds.get("Modality", "") or ""),
        _series_name(str(ds.get("SeriesDescription") or ""), str(ds.get("SeriesNumber", ""))),
        _window_level(ds.get("WindowCenter"), ds.get("WindowWidth")) if image else None,
        sop_class=str(ds.SOPClassUID),
    )


def load_series(sources: Sequence[Path | bytes], allocate: Allocate | None = None) -> LoadedVolume:
    """Build one series' volume from its files or encoded instances. Raises NotAVolume for non-images."""
    return build_volume([read_instance(source, index) for index, source in enumerate(sources)], allocate)


def _staged_dtype(stored: np.dtype, bits_stored: int, slope: float, intercept: float) -> np.dtype | None:
    """The volume's type when the header alone decides it (as `_modality_values` would), else None:
    the stored type when there is no rescale, int16 when every value BitsStored allows fits after
    the intercept (12-bit CT). Values that only the data decides are not staged."""
    if stored.kind not in "iu" or slope != 1.0 or not float(intercept).is_integer():
        return None
    shift = int(intercept)
    if shift == 0:
        return stored.newbyteorder("=")
    lo, hi = (
        (-(1 << (bits_stored - 1)), (1 << (bits_stored - 1)) - 1)
        if stored.kind == "i"
        else (0, (1 << bits_stored) - 1)
    )
    info = np.iinfo(np.int16)
    if info.min <= min(lo, lo + shift, shift) and max(hi, hi + shift, shift) <= info.max:
        return np.dtype(np.int16)
    return None


@dataclass
class _Staging:
    key: tuple[Any, ...]  # shape, stored type, slope, intercept, BitsStored of the first slice
    buffer: np.ndarray  # [slot, rows, columns] in the volume's type
    slots: dict[str, int] = field(default_factory=dict)


class SeriesCollector:
    """Reads instances while a retrieve is still running (the reader is called per arrival), so
    decoding overlaps the transfer; `build` then assembles one series from the instances asked for.

    Once `expect` says how many instances a series has, each plain slice is also copied into the
    volume's own memory (from `allocate`) as it arrives, in arrival order: the build then only
    reorders the slices in place and adds the intercept, instead of writing the whole volume
    into fresh memory after the transfer. Anything unusual drops that staging and the build
    writes the volume as usual. A failure to read one instance is kept and raised by `build`,
    after the retrieve has been verified (an incomplete retrieve is reported as such).
    """

    def __init__(self, allocate: Allocate | None = None) -> None:
        self._items: dict[str, _Instance | SlicerMCPError] = {}
        self._count = 0
        self._ahead: tuple[list[str], LoadedVolume | SlicerMCPError] | None = None
        self._allocate = allocate or np.empty
        self._lock = threading.Lock()
        self._expected: dict[str, int] = {}
        self._staging: dict[str, _Staging | None] = {}  # None: given up for that series
        self._reader: ThreadPoolExecutor | None = None
        self._last: Future[None] | None = None

    def expect(self, series_uid: str, count: int) -> None:
        """How many instances `series_uid` will have (a hint: a wrong one only costs the staging)."""
        with self._lock:
            if series_uid in self._expected or count <= 0:
                return
            self._expected[series_uid] = count
            for uid, item in list(self._items.items()):
                if isinstance(item, _Instance) and item.series_uid == series_uid:
                    self._stage(uid, item)

    def add(self, sop_uid: str, source: Path | bytes) -> None:
        """Read one arrival on the collector's own thread, so the receiving thread goes back to the
        network at once (the copy into the volume's memory releases the GIL)."""
        with self._lock:
            if self._reader is None:
                self._reader = ThreadPoolExecutor(1, thread_name_prefix="dicom-read")
            self._last = self._reader.submit(self._read, sop_uid, source)

    def _drain(self) -> None:
        """Wait until every arrival handed to `add` has been read."""
        last = self._last
        if last is not None:
            last.result()

    def close(self) -> None:
        """Stop the reading thread (after the last build)."""
        if self._reader is not None:
            self._reader.shutdown(wait=True)

    def _read(self, sop_uid: str, source: Path | bytes) -> None:
        self._count += 1
        try:
            item: _Instance | SlicerMCPError = read_instance(source, self._count - 1)
        except SlicerMCPError as exc:
            item = exc
        except Exception as exc:  # never let a reader bug break the transfer: report it at build
            item = load_failed(f"instance #{self._count} could not be read ({type(exc).__name__})")
        if isinstance(item, _Instance) and item.bits_stored is not None:
            item.slices[0].bounds()  # while the next instance downloads
        with self._lock:
            self._items[sop_uid] = item
            if isinstance(item, _Instance) and item.series_uid in self._expected:
                self._stage(sop_uid, item)

    def _stage(self, sop_uid: str, item: _Instance) -> None:
        """Copy one slice into the series' staging buffer (caller holds the lock)."""
        series = item.series_uid
        staging = self._staging.get(series)
        if series in self._staging and staging is None:
            return
        if item.bits_stored is None or len(item.slices) != 1:
            self._staging[series] = None
            return
        s = item.slices[0]
        key = (s.pixels.shape, s.pixels.dtype, s.slope, s.intercept, item.bits_stored)
        if staging is None:
            dtype = _staged_dtype(s.pixels.dtype, item.bits_stored, s.slope, s.intercept)
            if dtype is None:
                self._staging[series] = None
                return
            staging = _Staging(key, self._allocate((self._expected[series], *s.pixels.shape), dtype))
            self._staging[series] = staging
        slot = staging.slots.get(sop_uid, len(staging.slots))
        if key != staging.key or slot >= staging.buffer.shape[0]:
            self._staging[series] = None
            return
        staging.slots[sop_uid] = slot
        np.copyto(staging.buffer[slot], s.pixels, casting="unsafe")  # exact: the type holds BitsStored
        s.slot = slot

    def _take_staged(self, instances: Sequence[_Instance]) -> np.ndarray | None:
        """The staging buffer when it holds exactly these instances (it is then used up)."""
        if not instances:
            return None
        with self._lock:
            staging = self._staging.get(instances[0].series_uid)
            if staging is None or len(staging.slots) != staging.buffer.shape[0]:
                return None
            if len(instances) != len(staging.slots) or any(i.sop_uid not in staging.slots for i in instances):
                return None
            self._staging[instances[0].series_uid] = None  # reordered in place by the build
            for i in instances:
                i.slices[0].slot = staging.slots[i.sop_uid]
            return staging.buffer

    def all_of_series(self, sop_uids: Iterable[str], series_uid: str) -> bool:
        """Whether each of these arrivals was read and says it is an instance of `series_uid`
        under the UID it arrived with (what lets a count stand for the instance list)."""
        self._drain()
        with self._lock:
            for uid in sop_uids:
                item = self._items.get(uid)
                if not isinstance(item, _Instance) or item.series_uid != series_uid or item.sop_uid != uid:
                    return False
        return True

    def build_ahead(self, series_uid: str) -> None:
        """Assemble `series_uid` from every instance read so far, before the retrieve is verified
        (the expected-instance query may still be running): `build` reuses the result when it
        is asked for exactly these instances, in this order, and builds again otherwise."""
        self._drain()
        with self._lock:
            items = list(self._items.items())
        uids = [u for u, item in items if isinstance(item, _Instance) and item.series_uid == series_uid]
        if not uids or len(uids) != len(items):
            return  # other series or unreadable instances around: leave it to `build`
        instances = [item for _, item in items]
        try:
            result: LoadedVolume | SlicerMCPError = build_volume(
                instances,  # type: ignore[arg-type]
                self._allocate,
                self._take_staged(instances),  # type: ignore[arg-type]
            )
        except SlicerMCPError as exc:
            result = exc
        self._ahead = (uids, result)

    def build(self, sop_uids: Sequence[str]) -> LoadedVolume:
        self._drain()
        ahead, self._ahead = self._ahead, None
        if ahead is not None and ahead[0] == list(sop_uids):
            for uid in sop_uids:
                self._items.pop(uid, None)
            if isinstance(ahead[1], SlicerMCPError):
                raise ahead[1]
            return ahead[1]
        instances = []
        for uid in sop_uids:
            item = self._items.pop(uid, None)
            if item is None:
                raise load_failed(f"instance {uid} was retrieved but not read", sop_instance_uid=uid)
            if isinstance(item, SlicerMCPError):
                raise item
            instances.append(item)
        return build_volume(instances, self._allocate, self._take_staged(instances))


def build_volume(
    instances: Sequence[_Instance], allocate: Allocate | None = None, staged: np.ndarray | None = None
) -> LoadedVolume:
    """The volume of one series' instances (in the order given); `allocate` provides the voxel memory,
    `staged` the slices already copied into it (see SeriesCollector), when there are any."""
    images = [item for item in instances if item.slices]
    if not images:
        kinds = sorted({item.modality or "?" for item in instances})
        raise NotAVolume(f"the series has no images (modality {', '.join(kinds)}); it is not a volume")
    first = images[0]
    image_classes = {item.sop_class for item in images}
    damaged = [item.sop_uid for item in instances if not item.slices and item.sop_class in image_classes]
    if damaged:  # an image of the series' own class without pixels was cut short: a gap, not an SR
        raise load_failed(
            f"{len(damaged)} instance(s) of the series' image class have no pixel data (the file is "
            "truncated or damaged on the PACS); the volume would have a gap. Ask the PACS administrator "
            "to check these instances, or load another series",
            sop_instance_uids=damaged[:20],
        )
    slices = [s for item in images for s in item.slices]
    warnings: list[str] = []
    others = Counter(item.modality or "?" for item in instances if not item.slices)
    if others:
        # an SR or other non-image object in an image series: said, not silently dropped (no PHI: counts only)
        kinds = ", ".join(f"{count} {modality}" for modality, count in sorted(others.items()))
        warnings.append(
            f"skipped {sum(others.values())} non-image instance(s) (by modality: {kinds}): no pixel data"
        )
    slices = consistent_slices(slices, warnings)
    array, ijk_to_ras, value_range = assemble(slices, warnings, allocate or np.empty, staged)
    attributes = {
        "DICOM.StudyInstanceUID": first.study_uid,
        "DICOM.SeriesInstanceUID": first.series_uid,
        "DICOM.Modality": first.modality,
        "DICOM.instanceUIDs": " ".join(item.sop_uid for item in images),
    }
    for w in warnings:
        log.warning("series %s: %s", attributes["DICOM.SeriesInstanceUID"], w)
    volume = VolumeArray(
        array,
        ijk_to_ras,
        first.name or "DICOM volume",
        attributes,
        window_level=first.window_level,
        value_range=value_range,
    )
    return LoadedVolume(volume, len(slices), warnings)


def _window_level(center: object, width: object) -> tuple[float, float] | None:
    """The series' own display window (first value when several), in rescaled units like the voxels."""
    if center is None or width is None:
        return None
    try:
        c = float(_first_value(center))
        w = float(_first_value(width))
    except (TypeError, ValueError, IndexError):
        return None
    return (w, c) if w > 0 else None


def _first_value(value: object) -> object:
    if isinstance(value, MultiValue):
        return value[0]
    if isinstance(value, str) and "\\" in value:
        return value.split("\\")[0]
    return value
