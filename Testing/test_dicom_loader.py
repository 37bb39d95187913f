"""The DICOM loader against SimpleITK (ITK GDCM) on synthetic series with known geometry."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from fixtures.orthanc import corrupt_file, make_ct_series, make_mr_series, stored_values
from SlicerMCPLib.core.errors import ErrorCode, SlicerMCPError
from SlicerMCPLib.dicom.export import volume_to_datasets
from SlicerMCPLib.dicom.loader import load_series
from SlicerMCPLib.dicom.volume import LPS_TO_RAS, NotAVolume


def write(datasets: list[pydicom.Dataset], folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for ds in datasets:
        path = folder / f"{ds.SOPInstanceUID}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def sitk_read(folder: Path) -> sitk.Image:
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    return reader.Execute()


def lps_geometry(ijk_to_ras: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(origin, spacing, direction 3x3) in LPS, as ITK reports them."""
    m = LPS_TO_RAS @ ijk_to_ras
    spacing = np.linalg.norm(m[:3, :3], axis=0)
    return m[:3, 3], spacing, m[:3, :3] / spacing


@pytest.mark.parametrize("maker", [make_ct_series, make_mr_series], ids=["ct-axial", "mr-oblique"])
def test_volume_matches_simpleitk(tmp_path: Path, maker) -> None:
    spec, datasets = maker()
    files = write(datasets, tmp_path / "s")
    loaded = load_series(files)
    image = sitk_read(tmp_path / "s")
    origin, spacing, direction = lps_geometry(loaded.volume.ijk_to_ras)
    np.testing.assert_allclose(origin, image.GetOrigin(), atol=1e-4)
    np.testing.assert_allclose(spacing, image.GetSpacing(), atol=1e-5)
    np.testing.assert_allclose(direction, np.array(image.GetDirection()).reshape(3, 3), atol=1e-5)
    np.testing.assert_array_equal(loaded.volume.array, sitk.GetArrayFromImage(image))
    # spacing from positions (2.5 mm), not the deliberately wrong SliceThickness 9.99
    assert spacing[2] == pytest.approx(2.5)
    assert loaded.volume.array[3, 2, 1] == stored_values(spec, 3)[2, 1] + spec.intercept
    assert loaded.volume.name == spec.description
    assert loaded.volume.attributes["DICOM.SeriesInstanceUID"] == spec.series_uid
    assert loaded.volume.attributes["DICOM.StudyInstanceUID"] == spec.study_uid
    assert loaded.warnings == []


def test_rescale_slope_gives_float_values(tmp_path: Path) -> None:
    spec, datasets = make_ct_series(slope=0.5, intercept=-100.0)
    loaded = load_series(write(datasets, tmp_path))
    assert loaded.volume.array.dtype == np.float32
    assert loaded.volume.array[0, 0, 0] == pytest.approx(stored_values(spec, 0)[0, 0] * 0.5 - 100)


def test_the_series_window_is_kept_for_display(tmp_path: Path) -> None:
    _, datasets = make_ct_series()
    for ds in datasets:
        ds.WindowCenter, ds.WindowWidth = ["40", "300"], ["400", "1500"]  # first of several wins
    assert load_series(write(datasets, tmp_path / "a")).volume.window_level == (400.0, 40.0)
    for ds in datasets:
        del ds.WindowCenter, ds.WindowWidth
    assert load_series(write(datasets, tmp_path / "b")).volume.window_level is None


def test_non_uniform_spacing_is_resampled_with_a_warning(tmp_path: Path) -> None:
    positions = [0, 2, 4, 6, 10, 12, 14]
    spec, datasets = make_ct_series(slices=len(positions), slice_positions=positions)
    loaded = load_series(write(datasets, tmp_path))
    assert any("not uniform" in w for w in loaded.warnings)
    _, spacing, _ = lps_geometry(loaded.volume.ijk_to_ras)
    assert spacing[2] == pytest.approx(2.0)
    assert loaded.volume.array.shape[0] == 8  # 0..14 mm every 2 mm
    # the slice at 8 mm lies halfway between the stored slices 3 (6 mm) and 4 (10 mm)
    expected = (stored_values(spec, 3) + stored_values(spec, 4)) / 2 + spec.intercept
    np.testing.assert_allclose(loaded.volume.array[4], expected)


def test_gantry_tilt_is_reported(tmp_path: Path) -> None:
    _, datasets = make_ct_series(tilt_shift=(0.0, 0.5, 0.0))
    loaded = load_series(write(datasets, tmp_path))
    assert any("gantry tilt" in w for w in loaded.warnings)


def test_duplicate_positions_are_refused(tmp_path: Path) -> None:
    _, datasets = make_ct_series(slices=4, slice_positions=[0, 2.5, 2.5, 5])
    with pytest.raises(SlicerMCPError) as err:
        load_series(write(datasets, tmp_path))
    assert err.value.code == ErrorCode.DICOM_LOAD_FAILED


def test_corrupt_file_fails_with_its_name(tmp_path: Path) -> None:
    _, datasets = make_ct_series(slices=3)
    files = write(datasets, tmp_path)
    files.append(corrupt_file(tmp_path / "broken.dcm"))
    with pytest.raises(SlicerMCPError) as err:
        load_series(files)
    assert err.value.code == ErrorCode.DICOM_LOAD_FAILED
    assert "broken.dcm" in err.value.message


@pytest.mark.parametrize(
    ("keyword", "value"),
    [
        ("BitsAllocated", None),
        ("Rows", None),
        ("PixelRepresentation", None),
        ("PixelSpacing", ["0.8"]),
        ("ImageOrientationPatient", [1, 0, 0, 0, 1]),
        ("ImagePositionPatient", [0, 0]),
    ],
)
def test_malformed_image_attributes_fail_the_load_with_a_code(
    tmp_path: Path, keyword: str, value: object
) -> None:
    """A readable instance with a missing or malformed image attribute is DICOM_LOAD_FAILED naming the
    instance, not an exception that leaves the tool as INTERNAL_ERROR."""
    _, datasets = make_ct_series(slices=3)
    files = write(datasets, tmp_path)
    broken = pydicom.dcmread(files[1])
    if value is None:
        delattr(broken, keyword)
    else:
        setattr(broken, keyword, value)
    broken.save_as(files[1])
    with pytest.raises(SlicerMCPError) as err:
        load_series(files)
    assert err.value.code == ErrorCode.DICOM_LOAD_FAILED
    assert err.value.details["sop_instance_uid"] == str(datasets[1].SOPInstanceUID)


def test_series_without_images_is_not_a_volume(tmp_path: Path) -> None:
    from fixtures.orthanc import make_pdf_instance

    path = tmp_path / "pdf.dcm"
    make_pdf_instance("P1", ["hello"]).save_as(path, enforce_file_format=True)
    with pytest.raises(NotAVolume):
        load_series([path])


def test_non_image_instances_in_an_image_series_are_reported(tmp_path: Path) -> None:
    """An SR-like object among the slices: the images load and the result says what was skipped."""
    from fixtures.orthanc import make_pdf_instance

    spec, datasets = make_ct_series()
    other = make_pdf_instance(spec.patient_id, ["report"])
    other.StudyInstanceUID, other.SeriesInstanceUID = (
        datasets[0].StudyInstanceUID,
        datasets[0].SeriesInstanceUID,
    )
    loaded = load_series(write([*datasets, other], tmp_path))
    assert loaded.slices == len(datasets)
    assert any("skipped 1 non-image instance" in w and str(other.Modality) in w for w in loaded.warnings)


def test_enhanced_multiframe_matches_single_frames(tmp_path: Path) -> None:
    """An enhanced CT built from the single-frame series loads to the same volume."""
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    _, datasets = make_ct_series(slices=5, shuffle=False)
    single = load_series(write(datasets, tmp_path / "single"))
    first = datasets[0]
    mf = Dataset()
    mf.file_meta = first.file_meta.copy()
    mf.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2.1"
    for key in ("PatientID", "StudyInstanceUID", "SeriesInstanceUID", "Modality", "SeriesDescription"):
        setattr(mf, key, first[key].value)
    mf.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2.1"
    mf.SOPInstanceUID = mf.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
    for key in (
        "Rows",
        "Columns",
        "SamplesPerPixel",
        "PhotometricInterpretation",
        "BitsAllocated",
        "BitsStored",
    ):
        setattr(mf, key, first[key].value)
    mf.HighBit, mf.PixelRepresentation, mf.NumberOfFrames = 15, 1, len(datasets)
    shared = Dataset()
    shared.PlaneOrientationSequence = Sequence([Dataset()])
    shared.PlaneOrientationSequence[0].ImageOrientationPatient = first.ImageOrientationPatient
    shared.PixelMeasuresSequence = Sequence([Dataset()])
    shared.PixelMeasuresSequence[0].PixelSpacing = first.PixelSpacing
    shared.PixelValueTransformationSequence = Sequence([Dataset()])
    shared.PixelValueTransformationSequence[0].RescaleSlope = "1"
    shared.PixelValueTransformationSequence[0].RescaleIntercept = "-1024"
    mf.SharedFunctionalGroupsSequence = Sequence([shared])
    frames = []
    for ds in reversed(datasets):  # frame order must not matter
        item = Dataset()
        item.PlanePositionSequence = Sequence([Dataset()])
        item.PlanePositionSequence[0].ImagePositionPatient = ds.ImagePositionPatient
        frames.append(item)
    mf.PerFrameFunctionalGroupsSequence = Sequence(frames)
    mf.PixelData = b"".join(ds.PixelData for ds in reversed(datasets))
    path = tmp_path / "mf.dcm"
    mf.save_as(path, enforce_file_format=True)
    loaded = load_series([path])
    np.testing.assert_array_equal(loaded.volume.array, single.volume.array)
    np.testing.assert_allclose(loaded.volume.ijk_to_ras, single.volume.ijk_to_ras)


def test_export_round_trip(tmp_path: Path) -> None:
    """A volume written as a new series loads back with the same geometry and values."""
    spec, datasets = make_mr_series(slices=6)
    original = load_series(write(datasets, tmp_path / "a")).volume
    reference = datasets[0]
    exported = volume_to_datasets(original, reference=reference, series_description="Derived")
    assert {str(ds.SeriesInstanceUID) for ds in exported} != {spec.series_uid}
    assert all(ds.StudyInstanceUID == spec.study_uid and ds.PatientID == spec.patient_id for ds in exported)
    assert len({ds.SOPInstanceUID for ds in exported}) == 6
    again = load_series(write(exported, tmp_path / "b")).volume
    np.testing.assert_allclose(again.ijk_to_ras, original.ijk_to_ras, atol=1e-5)
    np.testing.assert_array_equal(again.array, original.array)
