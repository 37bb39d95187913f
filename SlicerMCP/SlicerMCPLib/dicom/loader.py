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
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.charset import convert_encodings, decode_bytes
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from ..core.errors import ErrorCode, SlicerMCPError
from ..core.scene_backend import VolumeArray
from .header import read_image

log = logging.getLogger(__name__)

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
_UNCOMPRESSED = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1"}
_ORIENTATION_TOL = 1e-3
_SPACING_REL_TOL = 0.01
_TILT_TOL_DEG = 0.05


class NotAVolume(SlicerMCPError):
    """The series holds no image slices that form a volume (a PDF, a structured report...)."""

    default_code = ErrorCode.DICOM_LOAD_FAILED


@dataclass
class _Slice:
    position: np.ndarray
    orientation: np.ndarray  # 6 values: row direction, column direction
    spacing: tuple[float, float]  # (between rows, between columns)
    slope: float
    intercept: float
    pixels: np.ndarray  # (rows, columns) stored values
    _bounds: tuple[int, int] | None = None
    slot: int | None = None  # where SeriesCollector staged these pixels, if it did

    def bounds(self) -> tuple[int, int]:
        """Smallest and largest stored value (integer pixels), computed once."""
        if self._bounds is None:
            self._bounds = (int(self.pixels.min()), int(self.pixels.max()))
        return self._bounds


@dataclass
class LoadedVolume:
    volume: VolumeArray
    slices: int
    warnings: list[str] = field(default_factory=list)


def _fail(message: str, **details: object) -> SlicerMCPError:
    return SlicerMCPError(message, code=ErrorCode.DICOM_LOAD_FAILED, details=dict(details))


def _stored_pixels(ds: Dataset) -> np.ndarray:
    """Stored values as (frames, rows, cols) or (rows, cols); numpy alone for plain uncompressed data."""
    if int(ds.get("SamplesPerPixel", 1)) != 1:
        raise _fail(
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
            raise _fail(
                f"instance {ds.get('SOPInstanceUID', '?')} has truncated pixel data",
                sop_instance_uid=str(ds.get("SOPInstanceUID", "")),
            ) from exc
    try:
        return ds.pixel_array
    except Exception as exc:  # missing decoder plugin, broken data
        raise _fail(
            f"cannot decode the pixel data (transfer syntax {syntax}): {exc}; retrieve it uncompressed",
            syntax=syntax,
        ) from exc


def _rescale(item: Dataset | None, ds: Dataset) -> tuple[float, float]:
    for source in (item, ds):
        if source is not None and "RescaleSlope" in source:
            return float(source.RescaleSlope), float(source.get("RescaleIntercept", 0.0))
    return 1.0, 0.0


def _slices_of(ds: Dataset) -> list[_Slice]:
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if "PerFrameFunctionalGroupsSequence" in ds:
        return _enhanced_slices(ds)
    if frames > 1:
        raise _fail("classic multi-frame images without per-frame positions are not supported")
    if "ImagePositionPatient" not in ds or "ImageOrientationPatient" not in ds or "PixelSpacing" not in ds:
        raise _fail("an image lacks ImagePositionPatient, ImageOrientationPatient or PixelSpacing")
    slope, intercept = _rescale(None, ds)
    return [
        _Slice(
            np.array(ds.ImagePositionPatient, dtype=float),
            np.array(ds.ImageOrientationPatient, dtype=float),
            (float(ds.PixelSpacing[0]), float(ds.PixelSpacing[1])),
            slope,
            intercept,
            _stored_pixels(ds),
        )
    ]


def _checked_slices(ds: Dataset) -> list[_Slice]:
    """The slices of one instance; a missing or malformed image attribute is DICOM_LOAD_FAILED naming
    the instance (a PACS may hold objects that read but do not describe an image)."""
    uid = str(ds.get("SOPInstanceUID", ""))
    try:
        slices = _slices_of(ds)
    except SlicerMCPError:
        raise
    except (AttributeError, KeyError, IndexError, TypeError, ValueError) as exc:
        raise _fail(
            f"instance {uid} lacks or has malformed image attributes ({type(exc).__name__}: {exc})",
            sop_instance_uid=uid,
        ) from exc
    for s in slices:
        if s.position.shape != (3,) or s.orientation.shape != (6,):
            raise _fail(
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


def _enhanced_slices(ds: Dataset) -> list[_Slice]:
    pixels = _stored_pixels(ds)
    if pixels.ndim == 2:
        pixels = pixels[np.newaxis]
    out = []
    for index, frame in enumerate(ds.PerFrameFunctionalGroupsSequence):
        position = _group(ds, frame, "PlanePositionSequence")
        orientation = _group(ds, frame, "PlaneOrientationSequence")
        measures = _group(ds, frame, "PixelMeasuresSequence")
        if position is None or orientation is None or measures is None:
            raise _fail("an enhanced multi-frame image lacks plane position, orientation or pixel measures")
        slope, intercept = _rescale(_group(ds, frame, "PixelValueTransformationSequence"), ds)
        out.append(
            _Slice(
                np.array(position.ImagePositionPatient, dtype=float),
                np.array(orientation.ImageOrientationPatient, dtype=float),
                (float(measures.PixelSpacing[0]), float(measures.PixelSpacing[1])),
                slope,
                intercept,
                pixels[index],
            )
        )
    return out


Allocate = Callable[[tuple[int, ...], np.dtype], np.ndarray]


@dataclass
class _Instance:
    """What the volume needs from one instance, read by the fast reader or by pydicom."""

    sop_uid: str
    slices: list[_Slice]  # empty for a non-image object
    study_uid: str = ""
    series_uid: str = ""
    modality: str = ""
    name: str = ""
    window_level: tuple[float, float] | None = None
    bits_stored: int | None = None  # known for instances the fast reader read


def read_datasets(sources: Sequence[Path | bytes]) -> list[Dataset]:
    """Read every file (or encoded instance in memory); an unreadable one fails the load."""
    return [_dcmread(source, index) for index, source in enumerate(sources)]


def _label(source: Path | bytes, index: int) -> str:
    return Path(source).name if isinstance(source, (str, Path)) else f"instance #{index + 1}"


def _dcmread(source: Path | bytes, index: int) -> Dataset:
    label = _label(source, index)
    try:
        ds = pydicom.dcmread(source if isinstance(source, (str, Path)) else io.BytesIO(source))
        str(ds.SOPInstanceUID), str(ds.SOPClassUID)  # noqa: B018 - a DICOM object must identify itself
    except Exception as exc:  # pydicom raises several types for corrupt input
        raise _fail(f"{label} is not a readable DICOM object ({type(exc).__name__})", item=label) from exc
    return ds


def _series_name(description: str, number: str) -> str:
    return description or f"Series {number}".strip()


def read_instance(source: Path | bytes, index: int = 0) -> _Instance:
    """One instance's slices and series attributes: the fast reader for plain single-frame images
    (no copy of the pixels), pydicom for everything else."""
    data = Path(source).read_bytes() if isinstance(source, (str, Path)) else source
    fast = read_image(data) if isinstance(data, bytes) else None
    if fast is not None:
        description = ""
        if fast.series_description:
            encodings = convert_encodings(fast.character_set or ["ISO_IR 6"])
            description = decode_bytes(fast.series_description, encodings, set()).rstrip("\0 ")
        return _Instance(
            fast.sop_instance_uid,
            [
                _Slice(
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
            item = _fail(f"instance #{self._count} could not be read ({type(exc).__name__})")
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
                raise _fail(f"instance {uid} was retrieved but not read", sop_instance_uid=uid)
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
    slices = [s for item in images for s in item.slices]
    warnings: list[str] = []
    slices = _consistent(slices, warnings)
    array, ijk_to_ras, value_range = _assemble(slices, warnings, allocate or np.empty, staged)
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


def _consistent(slices: list[_Slice], warnings: list[str]) -> list[_Slice]:
    """Keep the largest group sharing size and orientation (drops e.g. a localizer), with a warning."""
    groups: list[list[_Slice]] = []
    for s in slices:
        for g in groups:
            ref = g[0]
            if ref.pixels.shape == s.pixels.shape and (
                (np.array_equal(ref.orientation, s.orientation) and ref.spacing == s.spacing)
                or (
                    np.allclose(ref.orientation, s.orientation, atol=_ORIENTATION_TOL)
                    and np.allclose(ref.spacing, s.spacing, rtol=1e-4)
                )
            ):
                g.append(s)
                break
        else:
            groups.append([s])
    groups.sort(key=len, reverse=True)
    if len(groups) > 1:
        dropped = sum(len(g) for g in groups[1:])
        warnings.append(
            f"{dropped} image(s) with another size or orientation (e.g. a localizer) were left out"
        )
    return groups[0]


def _assemble(
    slices: list[_Slice], warnings: list[str], allocate: Allocate, staged: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, tuple[float, float] | None]:
    """(voxels, IJK->RAS, value range when known exactly) of the sorted slices."""
    ref = slices[0]
    row_dir, col_dir = ref.orientation[:3], ref.orientation[3:]
    normal = np.cross(row_dir, col_dir)
    slices.sort(key=lambda s: float(np.dot(s.position, normal)))
    distances = np.array([float(np.dot(s.position, normal)) for s in slices])
    if len(slices) > 1 and np.min(np.diff(distances)) < 1e-4:
        raise _fail(
            "several images share one slice position (several phases, echoes or time points in one series); "
            "this series cannot be loaded as a single volume",
            slices=len(slices),
        )
    spacing_k = 1.0
    uniform = True
    if len(slices) > 1:
        steps = np.diff(distances)
        spacing_k = float(np.median(steps))
        uniform = not np.max(np.abs(steps - spacing_k)) > _SPACING_REL_TOL * spacing_k
    if uniform:
        data, value_range = _modality_values(slices, allocate, staged)
    else:
        data, distances = _resample_uniform(_modality_values(slices, np.empty)[0], distances, spacing_k)
        value_range = None
        warnings.append(
            f"slice spacing is not uniform ({steps.min():.3g}-{steps.max():.3g} mm); resampled to "
            f"{spacing_k:.3g} mm along the slice normal"
        )
    if len(slices) > 1:
        span = slices[-1].position - slices[0].position
        cos = abs(float(np.dot(span, normal))) / float(np.linalg.norm(span))
        tilt = float(np.degrees(np.arccos(min(1.0, cos))))
        if tilt > _TILT_TOL_DEG:
            warnings.append(
                f"gantry tilt of {tilt:.2f} degrees: slices are stacked along the normal without shear, so "
                f"in-plane positions drift by up to {float(np.linalg.norm(span)) * np.sin(np.radians(tilt)):.1f} mm"
            )
    row_spacing, col_spacing = ref.spacing
    ijk_to_lps = np.eye(4)
    ijk_to_lps[:3, 0] = row_dir * col_spacing
    ijk_to_lps[:3, 1] = col_dir * row_spacing
    ijk_to_lps[:3, 2] = normal * spacing_k
    ijk_to_lps[:3, 3] = slices[0].position
    return np.ascontiguousarray(data), LPS_TO_RAS @ ijk_to_lps, value_range


def _modality_values(
    slices: list[_Slice], allocate: Allocate, staged: np.ndarray | None = None
) -> tuple[np.ndarray, tuple[float, float] | None]:
    """Modality values (rescale applied) written slice by slice into one array from `allocate`: the
    stored pixels are read once and never stacked first. Stays integer (int16 when it fits) when the
    slope is 1 and the intercepts are one whole number. Also returns the exact value range."""
    shape = (len(slices), *slices[0].pixels.shape)
    stored = slices[0].pixels.dtype
    slopes = np.array([s.slope for s in slices])
    intercepts = np.array([s.intercept for s in slices])
    integer = stored.kind in "iu" and all(s.pixels.dtype == stored for s in slices)
    if (
        integer
        and np.all(slopes == 1.0)
        and np.all(intercepts == intercepts[0])
        and float(intercepts[0]).is_integer()
    ):
        shift = int(intercepts[0])
        bounds = [s.bounds() for s in slices]
        smin, smax = min(b[0] for b in bounds), max(b[1] for b in bounds)
        lo, hi = smin + shift, smax + shift
        candidates = (stored.newbyteorder("="),) if shift == 0 else (np.dtype(np.int16), np.dtype(np.int32))
        for dtype in candidates:
            info = np.iinfo(dtype)
            if info.min <= lo and hi <= info.max:
                if _usable(staged, slices, dtype):
                    return _reorder_in_place(staged, slices, shift), (float(lo), float(hi))  # type: ignore[arg-type]
                out = allocate(shape, dtype)
                for k, s in enumerate(slices):
                    if shift == 0:
                        np.copyto(out[k], s.pixels)
                    else:  # computed wide enough for the stored values, written as `dtype`
                        wide = (
                            dtype
                            if info.min <= min(smin, shift) and max(smax, shift) <= info.max
                            else np.dtype(np.int64)
                        )
                        np.add(s.pixels, shift, out=out[k], dtype=wide, casting="unsafe")
                return out, (float(lo), float(hi))
    out = allocate(shape, np.dtype(np.float32))
    lo_hi: list[float] = []
    for k, s in enumerate(slices):
        slope, intercept = np.float32(s.slope), np.float32(s.intercept)
        np.multiply(s.pixels, slope, out=out[k], dtype=np.float32, casting="unsafe")
        np.add(out[k], intercept, out=out[k])
        if integer:  # float32 rescale is monotonic: the ends of the stored range map to the ends
            ends = np.array(s.bounds(), dtype=np.float32) * slope + intercept
            lo_hi += [float(ends.min()), float(ends.max())]
    return out, ((min(lo_hi), max(lo_hi)) if integer else None)


def _usable(staged: np.ndarray | None, slices: list[_Slice], dtype: np.dtype) -> bool:
    return (
        staged is not None
        and staged.dtype == dtype
        and staged.shape == (len(slices), *slices[0].pixels.shape)
        and sorted(s.slot for s in slices if s.slot is not None) == list(range(len(slices)))
    )


def _reorder_in_place(staged: np.ndarray, slices: list[_Slice], shift: int) -> np.ndarray:
    """Put slot `slices[k].slot` at position k (following cycles, one slice of scratch), then add
    the intercept; the values fit the type (checked by the caller)."""
    source = [int(s.slot) for s in slices]  # type: ignore[arg-type]
    done = [False] * len(source)
    for start in range(len(source)):
        if done[start] or source[start] == start:
            done[start] = True
            continue
        scratch = staged[start].copy()
        k = start
        while True:
            done[k] = True
            nxt = source[k]
            if nxt == start:
                staged[k] = scratch
                break
            staged[k] = staged[nxt]
            k = nxt
    if shift:
        np.add(staged, shift, out=staged, dtype=staged.dtype, casting="unsafe")
    return staged


def _resample_uniform(
    data: np.ndarray, distances: np.ndarray, spacing: float
) -> tuple[np.ndarray, np.ndarray]:
    """Linear interpolation along k onto positions distances[0] + n * spacing."""
    count = int(round((distances[-1] - distances[0]) / spacing)) + 1
    targets = distances[0] + spacing * np.arange(count)
    upper = np.clip(np.searchsorted(distances, targets, side="right"), 1, len(distances) - 1)
    lower = upper - 1
    w = ((targets - distances[lower]) / (distances[upper] - distances[lower])).astype(np.float32)
    w = np.clip(w, 0.0, 1.0)[:, None, None]
    src = data.astype(np.float32, copy=False)
    return (1.0 - w) * src[lower] + w * src[upper], targets
