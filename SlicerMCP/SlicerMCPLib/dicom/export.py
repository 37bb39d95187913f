"""A scene volume as a new DICOM series: new Series and SOP Instance UIDs, geometry from IJK->RAS.

Patient and study come from a reference instance when given (the volume then joins that
study and frame of reference), otherwise a new study is made for the given patient.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ExplicitVRLittleEndian, generate_uid

from ..core.errors import InvalidParameter
from ..core.scene_backend import VolumeArray
from .volume import LPS_TO_RAS

SOP_CLASS_FOR_MODALITY = {
    "CT": "1.2.840.10008.5.1.4.1.1.2",
    "MR": "1.2.840.10008.5.1.4.1.1.4",
}
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
PATIENT_KEYS = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex")
STUDY_KEYS = (
    "StudyInstanceUID",
    "StudyDate",
    "StudyTime",
    "StudyID",
    "AccessionNumber",
    "StudyDescription",
    "ReferringPhysicianName",
)


def _to_int16(array: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Stored int16 values and the rescale (slope, intercept) that give back the array's values."""
    lo, hi = float(array.min()), float(array.max())
    if np.issubdtype(array.dtype, np.integer) and lo >= -32768 and hi <= 32767:
        return array.astype("<i2"), 1.0, 0.0
    slope = (hi - lo) / 65535.0 if hi > lo else 1.0
    stored = np.round((array.astype(np.float64) - lo) / slope - 32768.0)
    return stored.astype("<i2"), slope, lo + 32768.0 * slope


def volume_to_datasets(
    volume: VolumeArray,
    *,
    reference: Dataset | None = None,
    series_description: str | None = None,
    patient_id: str | None = None,
    patient_name: str | None = None,
    modality: str | None = None,
) -> list[Dataset]:
    """One single-frame image per k slice; UIDs are all new except the reference study's."""
    if volume.array.ndim != 3:
        raise InvalidParameter("only scalar 3D volumes can be sent as a DICOM series")
    ijk_to_lps = LPS_TO_RAS @ np.asarray(volume.ijk_to_ras, dtype=float)
    columns = [ijk_to_lps[:3, i] for i in range(3)]
    spacing = [float(np.linalg.norm(c)) for c in columns]
    if min(spacing) <= 0:
        raise InvalidParameter("the volume has a zero spacing; it cannot be written as DICOM")
    row_dir, col_dir = columns[0] / spacing[0], columns[1] / spacing[1]
    stored, slope, intercept = _to_int16(volume.array)
    modality = modality or (str(reference.get("Modality", "")) if reference is not None else "") or "OT"
    sop_class = SOP_CLASS_FOR_MODALITY.get(modality, SECONDARY_CAPTURE)
    now = dt.datetime.now()
    series_uid = generate_uid()
    shared = Dataset()
    if reference is not None:
        for key in PATIENT_KEYS + STUDY_KEYS:
            if key in reference:
                setattr(shared, key, reference[key].value)
        shared.FrameOfReferenceUID = reference.get("FrameOfReferenceUID") or generate_uid()
    else:
        shared.PatientID = patient_id or "SLICERMCP"
        shared.PatientName = patient_name or ""
        shared.StudyInstanceUID = generate_uid()
        shared.StudyDate = now.strftime("%Y%m%d")
        shared.StudyTime = now.strftime("%H%M%S")
        shared.FrameOfReferenceUID = generate_uid()
    shared.Modality = modality
    shared.SeriesInstanceUID = series_uid
    shared.SeriesNumber = 9001
    shared.SeriesDescription = (series_description or volume.name or "Slicer volume")[:64]
    shared.SeriesDate = now.strftime("%Y%m%d")
    shared.SeriesTime = now.strftime("%H%M%S")
    shared.ImageType = ["DERIVED", "SECONDARY"]
    shared.ImageOrientationPatient = [round(float(v), 8) for v in (*row_dir, *col_dir)]
    shared.PixelSpacing = [round(spacing[1], 8), round(spacing[0], 8)]
    shared.SliceThickness = round(spacing[2], 8)
    shared.SamplesPerPixel = 1
    shared.PhotometricInterpretation = "MONOCHROME2"
    shared.Rows, shared.Columns = int(stored.shape[1]), int(stored.shape[2])
    shared.BitsAllocated = shared.BitsStored = 16
    shared.HighBit = 15
    shared.PixelRepresentation = 1
    shared.RescaleSlope = f"{slope:.10g}"
    shared.RescaleIntercept = f"{intercept:.10g}"
    shared.SOPClassUID = sop_class
    out = []
    for k in range(stored.shape[0]):
        ds = Dataset()
        ds.update(shared)
        sop_uid = generate_uid()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = sop_class
        ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
        ds.SOPInstanceUID = sop_uid
        ds.InstanceNumber = k + 1
        position = ijk_to_lps[:3, 3] + k * columns[2]
        ds.ImagePositionPatient = [round(float(v), 6) for v in position]
        ds.PixelData = np.ascontiguousarray(stored[k]).tobytes()
        out.append(ds)
    return out
