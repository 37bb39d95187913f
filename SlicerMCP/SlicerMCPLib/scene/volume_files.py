"""Vetting a volume file before any reader opens it: what it names and how big it says it is.

A header (.nhdr/.nrrd `data file`, .mhd/.mha `ElementDataFile`) can name any file, a FIFO or a
device; a readable one leaks its bytes as voxels, a FIFO hangs the reader, and a 1 MB gzip file
can declare a gigabyte of voxels. `vet_volume_file` reads only the header (never blocking: the
file is opened non-blocking after a stat says it is a regular file), resolves every data file it
names (LIST and format-string forms too), and refuses anything that is not a regular file inside
the header's own folder, or whose declared size x type exceeds `limits.max_volume_bytes`.
"""

from __future__ import annotations

import gzip
import math
import os
import re
import stat
import struct
from dataclasses import dataclass, field
from pathlib import Path

from ..core.errors import ErrorCode, SlicerMCPError

_HEADER_MAX = 1 << 20  # bytes of header text read at most
_MAX_LISTED_FILES = 100_000

_NRRD_TYPES = {
    **dict.fromkeys(("signed char", "int8", "int8_t", "uchar", "unsigned char", "uint8", "uint8_t"), 1),
    **dict.fromkeys(("short", "short int", "signed short", "signed short int", "int16", "int16_t"), 2),
    **dict.fromkeys(("ushort", "unsigned short", "unsigned short int", "uint16", "uint16_t"), 2),
    **dict.fromkeys(
        ("int", "signed int", "int32", "int32_t", "uint", "unsigned int", "uint32", "uint32_t"), 4
    ),
    **dict.fromkeys(("longlong", "long long", "long long int", "signed long long", "int64", "int64_t"), 8),
    **dict.fromkeys(("ulonglong", "unsigned long long", "unsigned long long int", "uint64", "uint64_t"), 8),
    "float": 4,
    "double": 8,
    "block": 1,
}
_MET_TYPES = {
    "MET_CHAR": 1,
    "MET_UCHAR": 1,
    "MET_SHORT": 2,
    "MET_USHORT": 2,
    "MET_INT": 4,
    "MET_UINT": 4,
    "MET_LONG": 4,
    "MET_ULONG": 4,
    "MET_LONG_LONG": 8,
    "MET_ULONG_LONG": 8,
    "MET_FLOAT": 4,
    "MET_DOUBLE": 8,
}
_NIFTI_BITPIX_MAX = 256


@dataclass
class VettedFile:
    """What a header declares: the data files it reads and the bytes its voxels take in memory."""

    path: Path
    declared_bytes: int
    data_files: list[Path] = field(default_factory=list)


def _refused(path: Path, why: str, **details: object) -> SlicerMCPError:
    return SlicerMCPError(
        f"refusing to load {path.name}: {why}. The scene was left unchanged.",
        code=ErrorCode.INVALID_PARAMETER,
        details={"path": str(path), **details},
    )


def _malformed(path: Path, why: str) -> SlicerMCPError:
    return SlicerMCPError(
        f"could not load {path.name}: {why}. Check that the file is a readable NRRD, NIfTI or MHA/MHD "
        "volume; the scene was left unchanged.",
        code=ErrorCode.LOAD_FAILED,
        details={"path": str(path)},
    )


def _regular_file(path: Path, label: str, header: Path) -> os.stat_result:
    try:
        st = os.stat(path)
    except OSError as exc:
        raise _refused(header, f"{label} {path.name!r} cannot be read ({exc.strerror})") from None
    if not stat.S_ISREG(st.st_mode):
        raise _refused(header, f"{label} {path.name!r} is not a regular file (a FIFO, device or folder)")
    return st


def _open_nonblocking(path: Path) -> bytes:
    """The first bytes of a file that was just seen to be regular; O_NONBLOCK in case it was swapped."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise _refused(path, "it is not a regular file")
        with os.fdopen(fd, "rb", closefd=False) as f:
            return f.read(_HEADER_MAX)
    finally:
        os.close(fd)


def _inside_folder(header: Path, name: str) -> Path:
    """`name` (as a header writes it) resolved against the header's folder, which it must not leave."""
    folder = header.parent
    if not name:
        raise _refused(header, "its header names an empty data file")
    if "\x00" in name or os.path.isabs(name) or re.match(r"^[A-Za-z]:", name) or name.startswith("\\"):
        raise _refused(header, f"its header names a data file by absolute path ({name!r})", data_file=name)
    parts = re.split(r"[\\/]", name)
    if ".." in parts:
        raise _refused(header, f"its header names a data file outside its folder ({name!r})", data_file=name)
    target = folder / name
    real_folder = os.path.realpath(folder)
    real_target = os.path.realpath(target)
    if os.path.commonpath([real_folder, real_target]) != real_folder:
        raise _refused(
            header, f"its data file {name!r} is a link to a place outside the header's folder", data_file=name
        )
    _regular_file(target, "its data file", header)
    return target


def _format_names(header: Path, spec: str) -> list[str]:
    """`name%03d.raw min max step [subdim]` (NRRD and MetaImage both write it) as the names it means."""
    parts = spec.split()
    if len(parts) < 4:
        raise _malformed(header, f"its data file format {spec!r} needs a pattern, min, max and step")
    pattern = parts[0]
    try:
        lo, hi, step = (int(p) for p in parts[1:4])
    except ValueError:
        raise _malformed(header, f"its data file format {spec!r} has non-integer bounds") from None
    if step == 0 or (hi - lo) // step + 1 > _MAX_LISTED_FILES or (hi - lo) * step < 0:
        raise _refused(header, f"its data file format {spec!r} names no files or too many")
    if not re.fullmatch(r"[^%]*%0?\d*d[^%]*", pattern):
        raise _malformed(header, f"its data file pattern {pattern!r} is not a single %d pattern")
    return [pattern % i for i in range(lo, hi + (1 if step > 0 else -1), step)]


def _listed_names(header: Path, rest: list[str]) -> list[str]:
    names = [line.strip() for line in rest if line.strip()]
    if not names or len(names) > _MAX_LISTED_FILES:
        raise _refused(header, "its data file LIST names no files or too many")
    return names


def _check_size(path: Path, declared: int, limit: int) -> None:
    if declared > limit:
        raise _refused(
            path,
            f"its header declares {declared:,} bytes of voxels, over limits.max_volume_bytes "
            f"({limit:,}); raise that limit in the config if this volume is expected",
            declared_bytes=declared,
            max_volume_bytes=limit,
        )


def _vet_nrrd(path: Path, raw: bytes, limit: int) -> VettedFile:
    if not raw.startswith(b"NRRD"):
        raise _malformed(path, "it does not start with a NRRD magic line")
    lines = raw.replace(b"\r\n", b"\n").split(b"\n\n", 1)[0].decode("latin-1").split("\n")[1:]
    fields: dict[str, str] = {}
    data_spec: str | None = None
    listed: list[str] = []
    for i, line in enumerate(lines):
        if line.startswith("#") or ":=" in line:  # comments and key/value pairs name no files
            continue
        key, sep, value = line.partition(":")
        if not sep:
            continue
        key = key.strip().lower()
        value = value.strip()
        if key in ("data file", "datafile"):
            data_spec = value
            if value.split()[:1] == ["LIST"]:
                listed = lines[i + 1 :]
            break
        fields[key] = value
    try:
        sizes = [int(s) for s in fields.get("sizes", "").split()]
    except ValueError:
        sizes = []
    type_size = _NRRD_TYPES.get(fields.get("type", "").lower())
    if not sizes or any(s <= 0 for s in sizes) or type_size is None:
        raise _malformed(path, "its NRRD header lacks valid 'sizes' or 'type'")
    if fields.get("type", "").lower() == "block":
        type_size = int(fields.get("block size", fields.get("blocksize", "1")) or 1)
    declared = math.prod(sizes) * type_size
    _check_size(path, declared, limit)
    files = _data_files(path, data_spec, listed)
    return VettedFile(path, declared, files)


def _data_files(path: Path, spec: str | None, listed: list[str]) -> list[Path]:
    if spec is None:
        return []
    words = spec.split()
    if words[:1] == ["LIST"]:
        names = _listed_names(path, listed)
    elif "%" in spec and len(words) >= 4:
        names = _format_names(path, spec)
    else:
        names = [spec]
    return [_inside_folder(path, name) for name in names]


def _vet_metaimage(path: Path, raw: bytes, limit: int) -> VettedFile:
    text = raw.split(b"\x00", 1)[0].decode("latin-1")
    fields: dict[str, str] = {}
    data_spec: str | None = None
    listed: list[str] = []
    lines = text.replace("\r\n", "\n").split("\n")
    for i, line in enumerate(lines):
        key, sep, value = line.partition("=")
        if not sep:
            continue
        key, value = key.strip().lower(), value.strip()
        if key == "elementdatafile":
            data_spec = value
            if value.split()[:1] == ["LIST"]:
                listed = lines[i + 1 :]
            break
        fields[key] = value
    if data_spec is None:
        raise _malformed(path, "its MetaImage header has no ElementDataFile")
    try:
        sizes = [int(s) for s in fields.get("dimsize", "").split()]
        channels = int(fields.get("elementnumberofchannels", "1"))
    except ValueError:
        raise _malformed(path, "its MetaImage header has non-integer DimSize") from None
    type_size = _MET_TYPES.get(fields.get("elementtype", "").upper())
    if not sizes or any(s <= 0 for s in sizes) or type_size is None or channels <= 0:
        raise _malformed(path, "its MetaImage header lacks valid DimSize or ElementType")
    declared = math.prod(sizes) * type_size * channels
    _check_size(path, declared, limit)
    if data_spec.upper() == "LOCAL":
        return VettedFile(path, declared, [])
    return VettedFile(path, declared, _data_files(path, data_spec, listed))


def _vet_nifti(path: Path, raw: bytes, limit: int) -> VettedFile:
    if path.name.lower().endswith(".gz"):
        try:
            with gzip.open(path, "rb") as f:
                raw = f.read(540)
        except (OSError, EOFError) as exc:
            raise _malformed(path, f"it is not a readable gzip file ({exc})") from None
    for order in "<>":
        if len(raw) >= 348 and struct.unpack(order + "i", raw[:4])[0] == 348:
            dims = struct.unpack(order + "8h", raw[40:56])
            bitpix = struct.unpack(order + "h", raw[72:74])[0]
            break
        if len(raw) >= 540 and struct.unpack(order + "i", raw[:4])[0] == 540:
            dims = struct.unpack(order + "8q", raw[16:80])
            bitpix = struct.unpack(order + "h", raw[14:16])[0]
            break
    else:
        raise _malformed(path, "it has no NIfTI-1 or NIfTI-2 header")
    count = max(1, min(int(dims[0]), 7))
    extents = [int(d) for d in dims[1 : count + 1]]
    if any(d <= 0 for d in extents) or not 0 < bitpix <= _NIFTI_BITPIX_MAX:
        raise _malformed(path, "its NIfTI header declares no valid dimensions or bits per voxel")
    declared = math.prod(extents) * max(1, bitpix // 8)
    _check_size(path, declared, limit)
    return VettedFile(path, declared, [])


def vet_volume_file(path: Path, limit: int) -> VettedFile:
    """Check `path` and every file its header names; raises INVALID_PARAMETER saying why not.

    Runs on any thread (file system only); call it before a reader sees the file.
    """
    _regular_file(path, "the file", path)
    raw = _open_nonblocking(path)
    name = path.name.lower()
    if name.endswith((".nrrd", ".nhdr")):
        return _vet_nrrd(path, raw, limit)
    if name.endswith((".mhd", ".mha")):
        return _vet_metaimage(path, raw, limit)
    if name.endswith((".nii", ".nii.gz")):
        return _vet_nifti(path, raw, limit)
    raise _malformed(path, "its type is unknown; use .nrrd, .nhdr, .nii, .nii.gz, .mha or .mhd")
