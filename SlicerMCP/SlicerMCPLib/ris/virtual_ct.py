"""The virtual CT: a small axial CT of an abdomen-like phantom with one spherical lesion of known volume.

It behaves as the virtual CR does on the RIS and the PACS (worklist C-FIND for its AE title and
CT, MPPS IN PROGRESS, C-STORE, MPPS COMPLETED with the series) but acquires a 3D series: a
water-density body (40 HU) in air, a lesion (180 HU) whose true volume is 4/3 pi r^3, and a
small calcification (400 HU) apart from it, so a threshold finds two islands and keeping the
largest leaves the lesion. Noise is deterministic (seeded by the accession number).
"""

from __future__ import annotations

import logging
import math
import zlib
from dataclasses import dataclass
from datetime import datetime

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from ..core.domain_config import DicomNode
from ..core.errors import ErrorCode, SlicerMCPError
from ..dicom.send import send
from .db import RisNotFound
from .modality import VirtualCR
from .mpps_scu import series_item

log = logging.getLogger(__name__)

SHAPE = (48, 96, 96)  # slices, rows, columns
PIXEL_MM = 0.8
SLICE_MM = 1.5
BODY_HU, LESION_HU, CALCIFICATION_HU, AIR_HU = 40, 180, 400, -1000
LESION_CENTER_MM = (8.0, -6.0, 0.0)  # from the volume centre, LPS: x (to the left), y (posterior), z (head)
CALCIFICATION_CENTER_MM = (-22.0, 14.0, -12.0)


@dataclass
class CtAcquisition:
    accession_number: str
    study_instance_uid: str
    series_instance_uid: str
    sop_instance_uids: list[str]
    mpps_sop_instance_uid: str
    mpps_status: str
    lesion_diameter_mm: float
    lesion_volume_mm3: float  # 4/3 pi r^3
    lesion_voxels: int  # voxels whose centre lies in the sphere
    lesion_hu: int
    body_hu: int
    sent: int


def phantom(diameter_mm: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(HU [k, j, i] int16, lesion mask) on the SHAPE grid."""
    k, j, i = np.indices(SHAPE, dtype=np.float32)
    z = (k - (SHAPE[0] - 1) / 2) * SLICE_MM
    y = (j - (SHAPE[1] - 1) / 2) * PIXEL_MM
    x = (i - (SHAPE[2] - 1) / 2) * PIXEL_MM
    hu = np.full(SHAPE, AIR_HU, np.float32)
    hu[(x / 34) ** 2 + (y / 30) ** 2 < 1] = BODY_HU
    lx, ly, lz = LESION_CENTER_MM
    lesion = (x - lx) ** 2 + (y - ly) ** 2 + (z - lz) ** 2 < (diameter_mm / 2) ** 2
    hu[lesion] = LESION_HU
    cx, cy, cz = CALCIFICATION_CENTER_MM
    hu[(x - cx) ** 2 + (y - cy) ** 2 + (z - cz) ** 2 < 2.5**2] = CALCIFICATION_HU
    noise = np.random.default_rng(seed).normal(0.0, 8.0, SHAPE).astype(np.float32)
    return np.round(hu + noise).astype(np.int16), lesion


class VirtualCT(VirtualCR):
    """A virtual CT station on the same RIS and PACS protocol as the virtual CR."""

    modality = "CT"

    def acquire_ct(
        self, accession_number: str, scheduled_date: str, pacs: DicomNode, diameter_mm: float
    ) -> CtAcquisition:
        items = [
            i
            for i in self.query_worklist(scheduled_date)
            if str(i.get("AccessionNumber", "")) == accession_number
        ]
        if not items:
            raise RisNotFound(
                f"accession {accession_number} is not on the CT worklist of {self.ae_title} for {scheduled_date}",
                details={"accession_number": accession_number, "station_aet": self.ae_title},
            )
        item = items[0]
        sps = item.ScheduledProcedureStepSequence[0]
        mpps_uid = generate_uid()
        started = datetime.now()
        self._mpps_create(mpps_uid, item, sps, started)
        try:
            hu, lesion = phantom(diameter_mm, zlib.crc32(accession_number.encode()))
            images = self._slices(item, sps, hu, started)
            sent = send(pacs, self.ae_title, images)
            if not sent.success:
                raise SlicerMCPError(
                    f"the PACS refused {sent.failed} of {len(images)} CT images",
                    code=ErrorCode.DICOM_SEND_FAILED,
                    details={"failures": [f.model_dump() for f in sent.failures]},
                )
        except BaseException:
            try:
                self._mpps_finish(mpps_uid, "DISCONTINUED", [])
            except SlicerMCPError:
                log.warning("could not discontinue MPPS %s", mpps_uid)
            raise
        first = images[0]
        refs = [(str(ds.SOPClassUID), str(ds.SOPInstanceUID)) for ds in images]
        performed = series_item(
            str(first.SeriesInstanceUID),
            str(first.SeriesDescription),
            str(first.ProtocolName),
            refs,
            pacs.ae_title,
        )
        self._mpps_finish(mpps_uid, "COMPLETED", [performed])
        log.info("virtual CT %s: %d slices, MPPS %s COMPLETED", self.ae_title, len(images), mpps_uid)
        return CtAcquisition(
            accession_number=accession_number,
            study_instance_uid=str(item.StudyInstanceUID),
            series_instance_uid=str(first.SeriesInstanceUID),
            sop_instance_uids=[r[1] for r in refs],
            mpps_sop_instance_uid=mpps_uid,
            mpps_status="COMPLETED",
            lesion_diameter_mm=diameter_mm,
            lesion_volume_mm3=4.0 / 3.0 * math.pi * (diameter_mm / 2) ** 3,
            lesion_voxels=int(lesion.sum()),
            lesion_hu=LESION_HU,
            body_hu=BODY_HU,
            sent=sent.sent,
        )

    def _slices(self, item: Dataset, sps: Dataset, hu: np.ndarray, started: datetime) -> list[Dataset]:
        series_uid, frame_of_reference = generate_uid(), generate_uid()
        origin = [
            -(SHAPE[2] - 1) / 2 * PIXEL_MM,
            -(SHAPE[1] - 1) / 2 * PIXEL_MM,
            -(SHAPE[0] - 1) / 2 * SLICE_MM,
        ]
        stored = np.clip(hu.astype(np.int32) + 1024, 0, 4095).astype(np.uint16)  # 12-bit CT range
        out = []
        for k in range(SHAPE[0]):
            ds = Dataset()
            uid = generate_uid()
            ds.file_meta = FileMetaDataset()
            ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
            ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
            ds.file_meta.MediaStorageSOPInstanceUID = uid
            ds.SpecificCharacterSet = "ISO_IR 192"
            ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, uid
            for kw in (
                "PatientName",
                "PatientID",
                "PatientBirthDate",
                "PatientSex",
                "ReferringPhysicianName",
            ):
                setattr(ds, kw, item.get(kw, ""))
            ds.StudyInstanceUID, ds.AccessionNumber = item.StudyInstanceUID, item.AccessionNumber
            ds.StudyID = str(item.get("RequestedProcedureID", ""))[:16]
            ds.StudyDate = ds.SeriesDate = started.strftime("%Y%m%d")
            ds.StudyTime = ds.SeriesTime = started.strftime("%H%M%S")
            ds.StudyDescription = item.get("RequestedProcedureDescription", "")
            ds.SeriesInstanceUID, ds.SeriesNumber, ds.InstanceNumber = series_uid, 2, k + 1
            ds.SeriesDescription = "Abdomen axial 1.5 mm"
            ds.ProtocolName = str(sps.get("ScheduledProcedureStepDescription", "") or "CT abdomen")[:64]
            ds.Modality, ds.BodyPartExamined = "CT", "ABDOMEN"
            ds.Manufacturer, ds.ManufacturerModelName, ds.StationName = (
                "SlicerMCP",
                "Virtual CT",
                self.station_name,
            )
            ds.FrameOfReferenceUID = frame_of_reference
            ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
            ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
            ds.ImagePositionPatient = [
                f"{origin[0]:.4f}",
                f"{origin[1]:.4f}",
                f"{origin[2] + k * SLICE_MM:.4f}",
            ]
            ds.PixelSpacing = [PIXEL_MM, PIXEL_MM]
            ds.SliceThickness = SLICE_MM
            ds.Rows, ds.Columns = SHAPE[1], SHAPE[2]
            ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
            ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
            ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = -1024, 1, "HU"
            ds.WindowCenter, ds.WindowWidth = 40, 400
            ds.PixelData = np.ascontiguousarray(stored[k]).tobytes()
            out.append(ds)
        return out
