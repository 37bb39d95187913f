"""Slices to a volume: ordering along the normal, spacing from positions, tilt, resampling, voxels.

Pure computation on the slices `loader` read: the geometry rules of the DICOM standard (never
SliceThickness; non-uniform spacing resampled to the median, gantry tilt reported, both with a
warning), rescale applied, LPS turned into RAS, voxels written into memory the caller provides.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ..core.errors import ErrorCode, SlicerMCPError
from ..core.scene_backend import VolumeArray

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
_ORIENTATION_TOL = 1e-3
_SPACING_REL_TOL = 0.01
_TILT_TOL_DEG = 0.05
Allocate = Callable[[tuple[int, ...], np.dtype], np.ndarray]


class NotAVolume(SlicerMCPError):
    """The series holds no image slices that form a volume (a PDF, a structured report...)."""

    default_code = ErrorCode.DICOM_LOAD_FAILED


@dataclass
class Slice:
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


def load_failed(message: str, **details: object) -> SlicerMCPError:
    return SlicerMCPError(message, code=ErrorCode.DICOM_LOAD_FAILED, details=dict(details))


def consistent_slices(slices: list[Slice], warnings: list[str]) -> list[Slice]:
    """Keep the largest group sharing size and orientation (drops e.g. a localizer), with a warning."""
    groups: list[list[Slice]] = []
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


def assemble(
    slices: list[Slice], warnings: list[str], allocate: Allocate, staged: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, tuple[float, float] | None]:
    """(voxels, IJK->RAS, value range when known exactly) of the sorted slices."""
    ref = slices[0]
    row_dir, col_dir = ref.orientation[:3], ref.orientation[3:]
    normal = np.cross(row_dir, col_dir)
    slices.sort(key=lambda s: float(np.dot(s.position, normal)))
    distances = np.array([float(np.dot(s.position, normal)) for s in slices])
    if len(slices) > 1 and np.min(np.diff(distances)) < 1e-4:
        raise load_failed(
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
    slices: list[Slice], allocate: Allocate, staged: np.ndarray | None = None
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
                if staging_usable(staged, slices, dtype):
                    return reorder_in_place(staged, slices, shift), (float(lo), float(hi))  # type: ignore[arg-type]
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


def staging_usable(staged: np.ndarray | None, slices: list[Slice], dtype: np.dtype) -> bool:
    return (
        staged is not None
        and staged.dtype == dtype
        and staged.shape == (len(slices), *slices[0].pixels.shape)
        and sorted(s.slot for s in slices if s.slot is not None) == list(range(len(slices)))
    )


def reorder_in_place(staged: np.ndarray, slices: list[Slice], shift: int) -> np.ndarray:
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
