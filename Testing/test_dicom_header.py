"""The fast image reader against pydicom: same values where it reads, None (pydicom's turn) elsewhere."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRBigEndian, ImplicitVRLittleEndian, RLELossless

from fixtures.orthanc import make_ct_series, make_mr_series
from SlicerMCPLib.dicom import loader
from SlicerMCPLib.dicom.header import read_image
from SlicerMCPLib.dicom.loader import build_volume, load_series, read_instance


def encode(ds: Dataset, syntax: str | None = None) -> bytes:
    if syntax is not None:
        ds.file_meta.TransferSyntaxUID = syntax
    buf = io.BytesIO()
    ds.save_as(
        buf,
        enforce_file_format=True,
        implicit_vr=syntax == ImplicitVRLittleEndian,
        little_endian=syntax != ExplicitVRBigEndian,
    )
    return buf.getvalue()


def with_sequences(ds: Dataset) -> Dataset:
    """Nested sequences of undefined length before the image attributes, as modalities write them."""
    inner = Dataset()
    inner.CodeValue = "T-D1100"
    inner.CodingSchemeDesignator = "SRT"
    outer = Dataset()
    outer.ReferencedSOPInstanceUID = "1.2.3.4"
    outer.AnatomicRegionSequence = Sequence([inner])
    ds.ReferencedImageSequence = Sequence([outer, Dataset()])
    ds.ReferencedImageSequence.is_undefined_length = True
    ds.SeriesDescription = "Kopf ÄÖÜ"
    ds.SpecificCharacterSet = "ISO_IR 100"
    return ds


@pytest.mark.parametrize("syntax", [None, ImplicitVRLittleEndian], ids=["explicit", "implicit"])
@pytest.mark.parametrize("maker", [make_ct_series, make_mr_series], ids=["ct", "mr-oblique"])
def test_reads_what_pydicom_reads(maker, syntax) -> None:
    _, datasets = maker(slices=3)
    for ds in datasets:
        data = encode(with_sequences(ds), syntax)
        fast = read_image(data)
        assert fast is not None
        ref = pydicom.dcmread(io.BytesIO(data))
        assert fast.sop_instance_uid == ref.SOPInstanceUID
        assert fast.series_instance_uid == ref.SeriesInstanceUID
        assert fast.study_instance_uid == ref.StudyInstanceUID
        assert fast.modality == ref.Modality
        assert fast.position == tuple(float(v) for v in ref.ImagePositionPatient)
        assert fast.orientation == tuple(float(v) for v in ref.ImageOrientationPatient)
        assert fast.spacing == (float(ref.PixelSpacing[0]), float(ref.PixelSpacing[1]))
        assert (fast.slope, fast.intercept) == (float(ref.RescaleSlope), float(ref.RescaleIntercept))
        np.testing.assert_array_equal(fast.pixels, ref.pixel_array)
        assert read_instance(data).name == "Kopf ÄÖÜ"


def test_big_endian_goes_to_pydicom() -> None:
    _, datasets = make_ct_series(slices=1)
    assert read_image(encode(datasets[0], ExplicitVRBigEndian)) is None


@pytest.mark.parametrize("maker", [make_ct_series, make_mr_series], ids=["ct", "mr-oblique"])
def test_volume_same_by_both_readers(maker, monkeypatch: pytest.MonkeyPatch) -> None:
    """The loader's result does not depend on which reader read the instances."""
    _, datasets = maker(slices=4)
    encoded = [encode(ds) for ds in datasets]
    fast = load_series(encoded).volume
    monkeypatch.setattr(loader, "read_image", lambda data: None)
    slow = build_volume([read_instance(data) for data in encoded]).volume
    np.testing.assert_array_equal(fast.array, slow.array)
    assert fast.array.dtype == slow.array.dtype
    np.testing.assert_allclose(fast.ijk_to_ras, slow.ijk_to_ras)
    assert (fast.name, fast.attributes, fast.window_level) == (slow.name, slow.attributes, slow.window_level)
    assert fast.value_range == (float(fast.array.min()), float(fast.array.max()))


def test_leaves_other_cases_to_pydicom() -> None:
    _, datasets = make_ct_series(slices=1)
    ds = datasets[0]
    odd = ds.copy()
    odd.BitsStored, odd.HighBit = 12, 15
    assert read_image(encode(odd)) is None
    frames = ds.copy()
    frames.NumberOfFrames = 2
    assert read_image(encode(frames)) is None
    no_position = ds.copy()
    del no_position.ImagePositionPatient
    assert read_image(encode(no_position)) is None
    truncated = encode(ds.copy())[:-100]
    assert read_image(truncated) is None
    compressed = encode(ds.copy())
    assert read_image(compressed.replace(b"1.2.840.10008.1.2.1\0", RLELossless.encode() + b"\0")) is None
    assert read_image(b"\0" * 200) is None


@pytest.mark.parametrize("signed", [0, 1])
def test_bits_stored_below_bits_allocated(signed: int) -> None:
    """12-bit values in 16-bit words (most CTs): masked, or sign-extended, exactly as pydicom does."""
    _, datasets = make_ct_series(slices=1)
    ds = datasets[0]
    ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 12, 11, signed
    ds.Rows, ds.Columns = 2, 4
    ds.PixelData = np.array([0x0FFF, 0x0800, 0x07FF, 0xF123, 5, 0, 0x8000, 0x1FFF], dtype="<u2").tobytes()
    data = encode(ds)
    fast = read_image(data)
    assert fast is not None
    expected = pydicom.dcmread(io.BytesIO(data)).pixel_array
    np.testing.assert_array_equal(fast.pixels, expected)
    assert fast.pixels.dtype == expected.dtype
    assert not np.shares_memory(fast.pixels, np.frombuffer(data, np.uint8))  # masked: a copy
    ds.PixelData = np.array([0x0FFF, 0, 5, 0x0800, 7, 1, 2, 3], dtype="<u2").tobytes()
    if signed:
        ds.PixelData = np.array([-2048, 2047, -1, 0, 5, 6, 7, 8], dtype="<i2").tobytes()
    data = encode(ds)
    fast = read_image(data)
    assert fast is not None
    np.testing.assert_array_equal(fast.pixels, pydicom.dcmread(io.BytesIO(data)).pixel_array)
    assert np.shares_memory(fast.pixels, np.frombuffer(data, np.uint8))  # clean words: a view


def test_collector_reuses_the_early_assembly_only_for_the_same_instances() -> None:
    """The series assembled before verification is used when exactly those instances are
    expected; otherwise (an instance dropped as unexpected) the volume is built again."""
    from SlicerMCPLib.dicom.loader import SeriesCollector

    spec, datasets = make_ct_series(slices=5)
    encoded = {str(ds.SOPInstanceUID): encode(ds) for ds in datasets}
    uids = list(encoded)

    collector = SeriesCollector()
    for uid, data in encoded.items():
        collector.add(uid, data)
    collector.build_ahead(spec.series_uid)
    early = collector._ahead[1] if collector._ahead else None
    assert collector.build(uids) is early is not None

    collector = SeriesCollector()
    for uid, data in encoded.items():
        collector.add(uid, data)
    collector.build_ahead(spec.series_uid)
    fewer = collector.build(uids[:-1])
    assert fewer.slices == 4
    assert fewer.volume.attributes["DICOM.instanceUIDs"] == " ".join(uids[:-1])


def twelve_bit_ct(signed: int) -> tuple[Any, list[bytes]]:
    spec, datasets = make_ct_series(slices=7, rows=16, columns=12, shuffle=True)
    out = []
    for ds in datasets:
        ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 12, 11, signed
        out.append(encode(ds))
    return spec, out


@pytest.mark.parametrize("signed", [0, 1])
@pytest.mark.parametrize("hint", ["before", "midway", "too-small", "too-large", "none"])
def test_staged_slices_give_the_same_volume(signed: int, hint: str) -> None:
    """Slices copied into the volume as they arrive (12-bit CT, shuffled arrival) end up exactly as
    the plain build makes them; a wrong or missing count only means the plain build is used."""
    from SlicerMCPLib.dicom.loader import SeriesCollector

    spec, encoded = twelve_bit_ct(signed)
    reference = load_series(encoded).volume
    allocated: list[np.ndarray] = []

    def allocate(shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        allocated.append(np.empty(shape, dtype))
        return allocated[-1]

    count = {"before": 7, "midway": 7, "too-small": 6, "too-large": 8, "none": 0}[hint]
    collector = SeriesCollector(allocate)
    if hint != "midway":
        collector.expect(spec.series_uid, count)
    uids = []
    for n, data in enumerate(encoded):
        uid = str(pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True).SOPInstanceUID)
        uids.append(uid)
        collector.add(uid, data)
        if hint == "midway" and n == 3:
            collector.expect(spec.series_uid, count)
    volume = collector.build(uids).volume
    np.testing.assert_array_equal(volume.array, reference.array)
    assert volume.array.dtype == reference.array.dtype == np.int16
    np.testing.assert_allclose(volume.ijk_to_ras, reference.ijk_to_ras)
    assert volume.attributes == reference.attributes
    assert volume.value_range == reference.value_range
    staged = hint in ("before", "midway")
    if staged:  # the staging buffer is the volume: nothing was written twice
        assert np.shares_memory(volume.array, allocated[0])
    assert len(allocated) == (1 if staged else 1 + (hint in ("too-small", "too-large")))
