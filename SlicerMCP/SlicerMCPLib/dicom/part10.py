"""Writing a DICOM Part 10 file with the pydicom Slicer ships: 2.4 in Slicer 5.10, 3.x later.

pydicom 3 writes the file format with `enforce_file_format=True` and takes the encoding from
the Transfer Syntax; pydicom 2.4 spells it `write_like_original=False` and needs the encoding
on the dataset. Everything else we call is the same in both (see docs/slicer-compatibility.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

import pydicom
from pydicom.dataset import Dataset

PYDICOM_MAJOR = int(pydicom.__version__.split(".")[0])


def write_file(ds: Dataset, target: str | Path | BinaryIO) -> None:
    """Save `ds` with preamble and file meta, encoded as its file meta's Transfer Syntax says."""
    if PYDICOM_MAJOR >= 3:
        ds.save_as(target, enforce_file_format=True)
        return
    syntax = ds.file_meta.TransferSyntaxUID
    ds.is_little_endian = syntax.is_little_endian
    ds.is_implicit_VR = syntax.is_implicit_VR
    ds.save_as(target, write_like_original=False)
