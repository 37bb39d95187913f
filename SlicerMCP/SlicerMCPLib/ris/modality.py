"""The virtual CR modality: behaves like a real device on the RIS and the PACS.

It asks the worklist over DICOM for its own AE title and the scheduled date, picks the item
with the accession number, starts an MPPS (N-CREATE IN PROGRESS), acquires one image per
view of the requested procedure with the worklist's patient, Study Instance UID, accession
and request attributes, C-STOREs them to the PACS (through the DICOM package's sender) and
ends the MPPS COMPLETED with the series referenced, or DISCONTINUED when something failed.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from pynetdicom.presentation import build_context
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    ComputedRadiographyImageStorage,
    ModalityPerformedProcedureStep,
    ModalityWorklistInformationFind,
)

from ..core.domain_config import DicomNode
from ..core.errors import ErrorCode, NotSupported, SlicerMCPError
from ..core.localhost import open_private
from ..dicom.associations import lost_association, open_association, status_of
from ..dicom.part10 import write_file
from ..dicom.send import send
from ..dicom.status import STATUS_FAILURE, STATUS_PENDING
from .db import RisNotFound
from .images import MAX_VALUE, Picture, SampleGenerator, generator_for, is_lateral
from .mpps_scu import mpps_request

log = logging.getLogger(__name__)

WORKLIST_KEYS = [
    "AccessionNumber",
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyInstanceUID",
    "ReferringPhysicianName",
    "RequestedProcedureID",
    "RequestedProcedureDescription",
]
SPS_KEYS = [
    "Modality",
    "ScheduledStationAETitle",
    "ScheduledProcedureStepStartDate",
    "ScheduledProcedureStepStartTime",
    "ScheduledProcedureStepID",
    "ScheduledProcedureStepDescription",
    "BodyPartExamined",
]
IMAGE_SIZE = 512
PIXEL_SPACING_MM = 0.35


@dataclass
class Acquisition:
    """What the modality did, for the tool's answer."""

    accession_number: str
    study_instance_uid: str
    series_instance_uids: list[str]  # one series per view
    sop_instance_uids: list[str]
    mpps_sop_instance_uid: str
    mpps_status: str
    image_mode: str
    frame_of_reference_uid: str
    body_part: str
    views: list[str]
    worklist_items_seen: int
    image_description: str | None = None  # the requester's words, as each image's ImageComments
    sent: int = 0
    files: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _dicom_failure(message: str, code: int | None, what: str) -> SlicerMCPError:
    return SlicerMCPError(
        f"{what} failed with status 0x{code or 0:04X}: {message}",
        code=ErrorCode.DICOM_QUERY_FAILED,
        details={"status": f"0x{code or 0:04X}"},
    )


class VirtualCR:
    """One virtual CR station: its AE title, the RIS it asks and the PACS it sends to."""

    modality = "CR"  # what it asks the worklist for and reports in its MPPS (VirtualCT: CT)

    def __init__(
        self,
        ae_title: str,
        station_name: str,
        ris: DicomNode,
        ai_endpoint: str | None = None,
        ai_api_key: str | None = None,
    ):
        self.ae_title = ae_title
        self.station_name = station_name
        self.ris = ris
        self.ai_endpoint = ai_endpoint
        self.ai_api_key = ai_api_key

    # -- worklist ----------------------------------------------------------------------------------

    def query_worklist(self, date: str, accession_number: str | None = None) -> list[Dataset]:
        """C-FIND on the Modality Worklist for this station and date, as a device does at start of day."""
        query = Dataset()
        for kw in WORKLIST_KEYS:
            setattr(query, kw, "")
        if accession_number:
            query.AccessionNumber = accession_number
        sps = Dataset()
        for kw in SPS_KEYS:
            setattr(sps, kw, "")
        sps.ScheduledStationAETitle = self.ae_title
        sps.ScheduledProcedureStepStartDate = date
        sps.Modality = self.modality
        query.ScheduledProcedureStepSequence = Sequence([sps])
        query.SpecificCharacterSet = "ISO_IR 192"
        items: list[Dataset] = []
        with open_association(
            self.ris, self.ae_title, [build_context(ModalityWorklistInformationFind)]
        ) as assoc:
            for status, identifier in assoc.send_c_find(query, ModalityWorklistInformationFind):
                code, category = status_of(status)
                if code is None:
                    raise lost_association(self.ris.ae_title, "worklist C-FIND")
                if category == STATUS_PENDING and identifier is not None:
                    items.append(identifier)
                elif category == STATUS_FAILURE:
                    raise _dicom_failure(str(status.get("ErrorComment", "")), code, "the worklist query")
        return items

    # -- MPPS --------------------------------------------------------------------------------------

    def _mpps(self, action: Callable[[object], tuple[Dataset | None, Dataset | None]], what: str) -> None:
        mpps_request(self.ris, self.ae_title, action, what)

    def _mpps_create(self, uid: str, item: Dataset, sps: Dataset, started: datetime) -> None:
        ds = Dataset()
        ds.SpecificCharacterSet = "ISO_IR 192"
        step = Dataset()
        step.StudyInstanceUID = item.StudyInstanceUID
        step.ReferencedStudySequence = Sequence([])
        step.AccessionNumber = item.AccessionNumber
        step.RequestedProcedureID = item.get("RequestedProcedureID", "")
        step.RequestedProcedureDescription = item.get("RequestedProcedureDescription", "")
        step.ScheduledProcedureStepID = sps.get("ScheduledProcedureStepID", "")
        step.ScheduledProcedureStepDescription = sps.get("ScheduledProcedureStepDescription", "")
        step.ScheduledProtocolCodeSequence = Sequence([])
        ds.ScheduledStepAttributesSequence = Sequence([step])
        for kw in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex"):
            setattr(ds, kw, item.get(kw, ""))
        ds.ReferencedPatientSequence = Sequence([])
        ds.PerformedProcedureStepID = _pps_id(uid)
        ds.PerformedStationAETitle = self.ae_title
        ds.PerformedStationName = self.station_name
        ds.PerformedLocation = "Radiology"
        ds.PerformedProcedureStepStartDate = started.strftime("%Y%m%d")
        ds.PerformedProcedureStepStartTime = started.strftime("%H%M%S")
        ds.PerformedProcedureStepStatus = "IN PROGRESS"
        ds.PerformedProcedureStepDescription = item.get("RequestedProcedureDescription", "")
        ds.PerformedProcedureTypeDescription = ""
        ds.ProcedureCodeSequence = Sequence([])
        ds.PerformedProcedureStepEndDate = None
        ds.PerformedProcedureStepEndTime = None
        ds.Modality = self.modality
        ds.StudyID = str(item.get("RequestedProcedureID", ""))[:16]
        ds.PerformedProtocolCodeSequence = Sequence([])
        ds.PerformedSeriesSequence = Sequence([])
        self._mpps(lambda a: a.send_n_create(ds, ModalityPerformedProcedureStep, uid), "MPPS N-CREATE")

    def _mpps_finish(self, uid: str, status: str, series: list[Dataset]) -> None:
        ds = Dataset()
        ds.PerformedProcedureStepStatus = status
        now = datetime.now()
        ds.PerformedProcedureStepEndDate = now.strftime("%Y%m%d")
        ds.PerformedProcedureStepEndTime = now.strftime("%H%M%S")
        ds.PerformedSeriesSequence = Sequence(series)
        self._mpps(lambda a: a.send_n_set(ds, ModalityPerformedProcedureStep, uid), f"MPPS N-SET {status}")

    # -- acquisition -------------------------------------------------------------------------------

    def acquire(
        self,
        accession_number: str,
        scheduled_date: str,
        image_mode: str,
        pacs: DicomNode | None,
        output_dir: Path | None = None,
        image_description: str | None = None,
    ) -> Acquisition:
        """The whole exam: worklist, MPPS, images, C-STORE (or files), MPPS end.

        `image_description` ("pneumonia right lower lobe") goes into each image's ImageComments
        and, in ai mode, to the generator; the simple generator cannot draw it."""
        items = self.query_worklist(scheduled_date)
        chosen = [i for i in items if str(i.get("AccessionNumber", "")) == accession_number]
        if not chosen:
            raise RisNotFound(
                f"accession {accession_number} is not on the worklist of {self.ae_title} for {scheduled_date} "
                f"({len(items)} other items); schedule it with create_mwl_from_order for this station",
                details={
                    "accession_number": accession_number,
                    "station_aet": self.ae_title,
                    "date": scheduled_date,
                },
            )
        item = chosen[0]
        sps = item.ScheduledProcedureStepSequence[0]
        body_part = str(sps.get("BodyPartExamined", "") or "CHEST")
        views = _views_of(str(sps.get("ScheduledProcedureStepDescription", "")), body_part)
        generator = generator_for(image_mode, body_part, self.ai_endpoint, self.ai_api_key, image_description)
        if isinstance(generator, SampleGenerator) and not generator.available(body_part):
            raise NotSupported(  # refused before the step starts: nothing to discontinue
                f"no sample image ships for body part {body_part}; use image_mode simple or auto",
                details={"body_part": body_part, "folder": str(generator.folder)},
            )
        mpps_uid = generate_uid()
        started = datetime.now()
        self._mpps_create(mpps_uid, item, sps, started)
        log.info(
            "virtual CR %s: MPPS %s started for study %s", self.ae_title, mpps_uid, item.StudyInstanceUID
        )
        result = Acquisition(
            accession_number=accession_number,
            study_instance_uid=str(item.StudyInstanceUID),
            series_instance_uids=[generate_uid() for _ in views],
            sop_instance_uids=[],
            mpps_sop_instance_uid=mpps_uid,
            mpps_status="IN PROGRESS",
            image_mode=image_mode,
            frame_of_reference_uid=generate_uid(),
            body_part=body_part,
            views=views,
            worklist_items_seen=len(items),
            image_description=image_description,
        )
        try:
            images = []
            for n, view in enumerate(views, start=1):
                picture = generator.generate(
                    body_part, view, IMAGE_SIZE, zlib.crc32(f"{accession_number}{n}".encode())
                )
                result.image_mode = picture.mode
                result.notes += [note for note in picture.notes if note not in result.notes]
                images.append(self._cr_image(item, result, n, picture, started))
            result.sop_instance_uids = [str(ds.SOPInstanceUID) for ds in images]
            if pacs is not None:
                sent = send(pacs, self.ae_title, images)
                result.sent = sent.sent
                if not sent.success:
                    raise SlicerMCPError(
                        f"the PACS refused {sent.failed} of {len(images)} images",
                        code=ErrorCode.DICOM_SEND_FAILED,
                        details={"failures": [f.model_dump() for f in sent.failures]},
                    )
            if output_dir is not None:
                for ds in images:
                    path = output_dir / f"{ds.SOPInstanceUID}.dcm"
                    with open_private(path) as out:  # names, MRNs: 0600 in a 0700 folder
                        write_file(ds, out)
                    result.files.append(str(path))
        except BaseException:
            try:
                self._mpps_finish(mpps_uid, "DISCONTINUED", [])
                result.mpps_status = "DISCONTINUED"
            except SlicerMCPError:
                log.warning("could not discontinue MPPS %s", mpps_uid)
            raise
        self._mpps_finish(mpps_uid, "COMPLETED", [self._performed_series(ds) for ds in images])
        result.mpps_status = "COMPLETED"
        log.info("virtual CR %s: %d images, MPPS %s COMPLETED", self.ae_title, len(images), mpps_uid)
        return result

    @staticmethod
    def _performed_series(image: Dataset) -> Dataset:
        """A Performed Series Sequence item for the (one-image) series of `image`."""
        series = Dataset()
        series.PerformingPhysicianName = ""
        series.ProtocolName = image.ProtocolName
        series.OperatorsName = ""
        series.SeriesInstanceUID = image.SeriesInstanceUID
        series.SeriesDescription = image.SeriesDescription
        series.RetrieveAETitle = ""
        ref = Dataset()
        ref.ReferencedSOPClassUID = image.SOPClassUID
        ref.ReferencedSOPInstanceUID = image.SOPInstanceUID
        series.ReferencedImageSequence = Sequence([ref])
        series.ReferencedNonImageCompositeSOPInstanceSequence = Sequence([])
        return series

    def _cr_image(
        self, item: Dataset, result: Acquisition, number: int, picture: Picture, started: datetime
    ) -> Dataset:
        """Image `number` (1-based, one per view) of the exam `result` records for worklist `item`."""
        sps = item.ScheduledProcedureStepSequence[0]
        view = result.views[number - 1]
        mpps_uid = result.mpps_sop_instance_uid
        lateral = is_lateral(view)
        now = datetime.now()
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta.MediaStorageSOPClassUID = ComputedRadiographyImageStorage
        sop_uid = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
        ds.SpecificCharacterSet = "ISO_IR 192"
        ds.SOPClassUID = ComputedRadiographyImageStorage
        ds.SOPInstanceUID = sop_uid
        for kw in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "ReferringPhysicianName"):
            setattr(ds, kw, item.get(kw, ""))
        ds.StudyInstanceUID = item.StudyInstanceUID
        ds.AccessionNumber = item.AccessionNumber
        ds.StudyID = str(item.get("RequestedProcedureID", ""))[:16]
        ds.StudyDate = started.strftime("%Y%m%d")
        ds.StudyTime = started.strftime("%H%M%S")
        ds.StudyDescription = item.get("RequestedProcedureDescription", "")
        ds.SeriesInstanceUID = result.series_instance_uids[number - 1]
        ds.SeriesNumber = number
        ds.SeriesDescription = f"{result.body_part} {view}"
        ds.SeriesDate, ds.SeriesTime = ds.StudyDate, ds.StudyTime
        ds.Modality = "CR"
        ds.BodyPartExamined = result.body_part
        ds.ViewPosition = view
        ds.ProtocolName = str(sps.get("ScheduledProcedureStepDescription", ""))[:64]
        ds.PerformedProcedureStepID = _pps_id(mpps_uid)
        ds.PerformedProcedureStepStartDate = ds.StudyDate
        ds.PerformedProcedureStepStartTime = ds.StudyTime
        ref_pps = Dataset()
        ref_pps.ReferencedSOPClassUID = ModalityPerformedProcedureStep
        ref_pps.ReferencedSOPInstanceUID = mpps_uid
        ds.ReferencedPerformedProcedureStepSequence = Sequence([ref_pps])
        request = Dataset()
        request.RequestedProcedureID = item.get("RequestedProcedureID", "")
        request.ScheduledProcedureStepID = sps.get("ScheduledProcedureStepID", "")
        request.AccessionNumber = item.AccessionNumber
        request.StudyInstanceUID = item.StudyInstanceUID
        ds.RequestAttributesSequence = Sequence([request])
        ds.Manufacturer = "SlicerMCP"
        ds.ManufacturerModelName = "Virtual CR"
        ds.StationName = self.station_name
        ds.SoftwareVersions = picture.mode
        ds.InstanceNumber = number
        ds.ContentDate = now.strftime("%Y%m%d")
        ds.ContentTime = now.strftime("%H%M%S")
        ds.AcquisitionDate, ds.AcquisitionTime = ds.ContentDate, ds.ContentTime
        ds.PatientOrientation = ["L", "F"] if lateral else ["R", "F"]
        ds.ImageType = ["ORIGINAL", "PRIMARY"]
        if result.image_description:
            ds.ImageComments = result.image_description
        pixels = picture.pixels
        ds.Rows, ds.Columns = pixels.shape
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 12, 11
        ds.PixelRepresentation = 0
        ds.ImagerPixelSpacing = [PIXEL_SPACING_MM, PIXEL_SPACING_MM]
        # Standard extended: a display plane so volume loaders (Slicer's too) place the projection
        # (frontal views in the coronal plane, laterals in the sagittal plane).
        ds.PixelSpacing = [PIXEL_SPACING_MM, PIXEL_SPACING_MM]
        ds.ImageOrientationPatient = [0, 1, 0, 0, 0, -1] if lateral else [1, 0, 0, 0, 0, -1]
        half = IMAGE_SIZE * PIXEL_SPACING_MM / 2
        ds.ImagePositionPatient = [0, -half, half] if lateral else [-half, 0, half]
        ds.FrameOfReferenceUID = result.frame_of_reference_uid
        ds.WindowCenter, ds.WindowWidth = MAX_VALUE // 2, MAX_VALUE
        ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = 0, 1, "US"
        ds.PixelData = pixels.tobytes()
        return ds


def _pps_id(mpps_uid: str) -> str:
    """The Performed Procedure Step ID (SH, 16 characters) the MPPS and its images share."""
    return f"PPS{zlib.crc32(mpps_uid.encode()) % 10**8}"


def _views_of(description: str, body_part: str) -> list[str]:
    """The views of the procedure (from the RIS's procedure table, by description)."""
    from .schema import PROCEDURES

    for _code, desc, _mod, _part, views, _count in PROCEDURES:
        if desc == description:
            return views.split(",")
    for _code, _desc, _mod, part, views, _count in PROCEDURES:
        if part == body_part:
            return views.split(",")
    return ["AP"]
