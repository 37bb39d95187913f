"""The NRRD dialect of Slicer's WebServer `/slicer/volume`: raw, little-endian, 3-D, LPS.

POST accepts only `short` voxels; GET sends `short` or `double` (other types are cast to
short by Slicer). Geometry travels as LPS `space directions` / `space origin`; the scene
works in RAS, so the first two axes flip sign both ways.
"""

from __future__ import annotations

import numpy as np

from ..core.errors import ErrorCode, NotSupported, SlicerMCPError
from .webserver_http import VOLUME, WebServerHttp

_LPS_FLIP = np.array([-1.0, -1.0, 1.0])
_TYPES = {
    "short": np.dtype("<i2"),
    "short int": np.dtype("<i2"),
    "signed short": np.dtype("<i2"),
    "signed short int": np.dtype("<i2"),
    "int16": np.dtype("<i2"),
    "int16_t": np.dtype("<i2"),
    "double": np.dtype("<f8"),
    "float": np.dtype("<f4"),
}


def _vector(values: np.ndarray) -> str:
    return "(" + ",".join(repr(float(v)) for v in values) + ")"


def as_int16(array: np.ndarray) -> np.ndarray:
    """The voxels as int16 when that loses nothing; the WebServer takes no other type."""
    if array.dtype == np.int16:
        return array
    if array.size == 0:
        return array.astype(np.int16)
    if np.issubdtype(array.dtype, np.floating) and not np.all(
        np.isfinite(array) & (array == np.round(array))
    ):
        raise NotSupported(
            "Slicer's WebServer accepts only 16-bit integer volumes and this one has fractional values. "
            "Use the SlicerMCP module inside Slicer (the bridge then proxies to it) to load it exactly.",
            details={"dtype": str(array.dtype)},
        )
    low, high = array.min(), array.max()
    if low < -32768 or high > 32767:
        raise NotSupported(
            f"Slicer's WebServer accepts only 16-bit signed volumes; this one ranges {low}..{high}. "
            "Use the SlicerMCP module inside Slicer (the bridge then proxies to it) to load it exactly.",
            details={"dtype": str(array.dtype), "min": float(low), "max": float(high)},
        )
    return array.astype(np.int16)


def encode(array: np.ndarray, ijk_to_ras: np.ndarray) -> bytes:
    """A volume indexed [k, j, i] as the NRRD the WebServer's POST /slicer/volume reads."""
    if array.ndim != 3:
        raise NotSupported(
            "Slicer's WebServer accepts only 3-D single-component volumes", details={"ndim": array.ndim}
        )
    voxels = np.ascontiguousarray(as_int16(array), dtype="<i2")
    k, j, i = voxels.shape
    matrix = np.asarray(ijk_to_ras, dtype=float)
    directions = " ".join(_vector(matrix[:3, axis] * _LPS_FLIP) for axis in range(3))
    header = (
        "NRRD0004\n"
        "type: short\n"
        "dimension: 3\n"
        "space: left-posterior-superior\n"
        f"sizes: {i} {j} {k}\n"
        f"space directions: {directions}\n"
        "kinds: domain domain domain\n"
        "endian: little\n"
        "encoding: raw\n"
        f"space origin: {_vector(matrix[:3, 3] * _LPS_FLIP)}\n"
        "\n"
    )
    return header.encode("ascii") + voxels.tobytes()


def _floats(text: str) -> list[float]:
    return [float(v) for v in text.replace("(", " ").replace(")", " ").replace(",", " ").split()]


def decode_header(data: bytes) -> tuple[dict[str, str], list[int], np.dtype, np.ndarray, int]:
    """The header of the WebServer's GET /slicer/volume answer: (fields, sizes, dtype, IJK->RAS 4x4,
    offset of the voxels). Slicer writes the geometry with Python's `str(float)`, which round-trips
    doubles: spacing and origin read from here are exact (unlike /slicer/mrml/properties)."""
    end = data.find(b"\n\n")
    if not data.startswith(b"NRRD") or end < 0:
        raise SlicerMCPError(
            "Slicer's WebServer sent a volume that is not an NRRD file",
            code=ErrorCode.SLICER_WEBSERVER_ERROR,
            details={"body_start": data[:16].decode("latin-1")},
        )
    fields: dict[str, str] = {}
    for line in data[:end].decode("latin-1").splitlines()[1:]:
        if line.startswith("#") or ": " not in line:
            continue
        key, value = line.split(": ", 1)
        fields[key.strip()] = value.strip()
    try:
        dtype = _TYPES[fields["type"]]
        sizes = [int(v) for v in fields["sizes"].split()]
        directions = fields["space directions"].replace(") (", ")|(").split("|")
        axes = [_floats(d) for d in directions]
        origin = _floats(fields["space origin"])
    except (KeyError, ValueError) as exc:
        raise SlicerMCPError(
            f"cannot read the NRRD header Slicer's WebServer sent ({exc})",
            code=ErrorCode.SLICER_WEBSERVER_ERROR,
            details={"fields": fields},
        ) from exc
    if fields.get("encoding", "raw") != "raw" or len(sizes) != 3 or len(axes) != 3:
        raise NotSupported(
            "only raw 3-D volumes can be read through Slicer's WebServer", details={"fields": fields}
        )
    if any(len(v) != 3 for v in (*axes, origin)):
        raise SlicerMCPError(
            "Slicer's WebServer sent a volume with a broken geometry; export it again",
            code=ErrorCode.SLICER_WEBSERVER_ERROR,
            details={"fields": fields},
        )
    if fields.get("endian", "little") == "big":
        dtype = dtype.newbyteorder(">")
    ijk_to_ras = np.eye(4)
    for axis in range(3):
        ijk_to_ras[:3, axis] = np.asarray(axes[axis]) * _LPS_FLIP
    ijk_to_ras[:3, 3] = np.asarray(origin) * _LPS_FLIP
    return fields, sizes, dtype, ijk_to_ras, end + 2


def decode(data: bytes) -> tuple[np.ndarray, np.ndarray]:
    """The WebServer's GET /slicer/volume body as (voxels [k, j, i], IJK->RAS 4x4)."""
    fields, sizes, dtype, ijk_to_ras, start = decode_header(data)
    count = sizes[0] * sizes[1] * sizes[2]
    if len(data) - start < count * dtype.itemsize:
        raise SlicerMCPError(
            "Slicer's WebServer sent a volume with fewer voxels than its header says; export it again",
            code=ErrorCode.SLICER_WEBSERVER_ERROR,
            details={"fields": fields, "voxel_bytes": len(data) - start},
        )
    voxels = np.frombuffer(data, dtype=dtype, count=count, offset=start)
    return voxels.reshape(sizes[2], sizes[1], sizes[0]).astype(dtype.newbyteorder("=")), ijk_to_ras


def read_ijk_to_ras(http: WebServerHttp, node_id: str, timeout: float) -> np.ndarray | None:
    """IJK->RAS from the header of GET /slicer/volume (full precision), the voxels not fetched; None when
    Slicer can't export the node that way."""
    try:
        response = http.get_head(VOLUME, {"id": node_id}, until=b"\n\n", timeout=timeout)
        if response.status != 200:
            return None
        return decode_header(response.body)[3]
    except SlicerMCPError as exc:
        if exc.code in (ErrorCode.SLICER_WEBSERVER_ERROR, ErrorCode.NOT_SUPPORTED):
            return None
        raise
