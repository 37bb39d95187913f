"""MPPS as an SCU: N-CREATE and N-SET of a performed procedure step over DICOM, for any performer.

The virtual modality and the workstation (SlicerMCP completing a step with its SEG and SR)
both send their steps through `mpps_request`, which opens the association and turns any
status but Success into a coded error. `series_item` writes a Performed Series Sequence item:
images in the Referenced Image Sequence, SEG/SR/PDF in the Referenced Non-Image Composite SOP
Instance Sequence, as PS3.4 F.7.2 has them.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence
from datetime import datetime

from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import generate_uid
from pynetdicom.presentation import build_context
from pynetdicom.sop_class import ModalityPerformedProcedureStep  # type: ignore[attr-defined]
from pynetdicom.status import STATUS_SUCCESS

from ..core.domain_config import DicomNode
from ..core.errors import ErrorCode, SlicerMCPError
from ..dicom.associations import lost_association, open_association, status_of
from .models import MwlEntry

NON_IMAGE_CLASSES = frozenset(
    {
        "1.2.840.10008.5.1.4.1.1.66.4",  # Segmentation
        "1.2.840.10008.5.1.4.1.1.88.22",  # Enhanced SR
        "1.2.840.10008.5.1.4.1.1.88.33",  # Comprehensive SR
        "1.2.840.10008.5.1.4.1.1.88.34",  # Comprehensive 3D SR
        "1.2.840.10008.5.1.4.1.1.104.1",  # Encapsulated PDF
    }
)


def mpps_request(
    ris: DicomNode,
    calling_aet: str,
    action: Callable[[object], tuple[Dataset | None, Dataset | None]],
    what: str,
) -> None:
    """Run one N-CREATE / N-SET on a fresh association; a non-Success status is DICOM_QUERY_FAILED."""
    with open_association(ris, calling_aet, [build_context(ModalityPerformedProcedureStep)]) as assoc:
        status, _ = action(assoc)
    code, category = status_of(status)
    if code is None:
        raise lost_association(ris.ae_title, what)
    if category != STATUS_SUCCESS:
        comment = str(status.get("ErrorComment", "")) if status is not None else ""
        raise SlicerMCPError(
            f"{what} failed with status 0x{code:04X}: {comment}",
            code=ErrorCode.DICOM_QUERY_FAILED,
            details={"status": f"0x{code:04X}", "comment": comment},
        )


def series_item(
    series_uid: str, description: str, protocol: str, refs: Sequence[tuple[str, str]], retrieve_aet: str = ""
) -> Dataset:
    """A Performed Series Sequence item; `refs` are (SOP Class UID, SOP Instance UID)."""
    item = Dataset()
    item.PerformingPhysicianName = ""
    item.ProtocolName = protocol[:64]
    item.OperatorsName = ""
    item.SeriesInstanceUID = series_uid
    item.SeriesDescription = description[:64]
    item.RetrieveAETitle = retrieve_aet
    images, others = [], []
    for sop_class, sop_uid in refs:
        ref = Dataset()
        ref.ReferencedSOPClassUID = sop_class
        ref.ReferencedSOPInstanceUID = sop_uid
        (others if sop_class in NON_IMAGE_CLASSES else images).append(ref)
    item.ReferencedImageSequence = DicomSequence(images)
    item.ReferencedNonImageCompositeSOPInstanceSequence = DicomSequence(others)
    return item


def perform_step(
    ris: DicomNode,
    calling_aet: str,
    entry: MwlEntry,
    series: Sequence[Dataset],
    *,
    modality: str,
    description: str,
    station_name: str = "SlicerMCP",
) -> str:
    """A whole step for a worklist entry: N-CREATE IN PROGRESS, then N-SET COMPLETED with `series`.

    Returns the MPPS SOP Instance UID. The RIS refuses COMPLETED without performed series."""
    uid = generate_uid()
    started = datetime.now()
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    step = Dataset()
    step.StudyInstanceUID = entry.study_instance_uid
    step.ReferencedStudySequence = DicomSequence([])
    step.AccessionNumber = entry.accession_number
    step.RequestedProcedureID = entry.requested_procedure_id
    step.RequestedProcedureDescription = entry.procedure.description
    step.ScheduledProcedureStepID = entry.scheduled_procedure_step_id
    step.ScheduledProcedureStepDescription = entry.procedure.description
    step.ScheduledProtocolCodeSequence = DicomSequence([])
    ds.ScheduledStepAttributesSequence = DicomSequence([step])
    ds.PatientName = f"{entry.patient.family_name}^{entry.patient.given_name}"
    ds.PatientID = entry.patient.mrn
    ds.PatientBirthDate = entry.patient.birth_date or ""
    ds.PatientSex = entry.patient.sex or ""
    ds.ReferencedPatientSequence = DicomSequence([])
    ds.PerformedProcedureStepID = f"PPS{zlib.crc32(uid.encode()) % 10**8}"
    ds.PerformedStationAETitle = calling_aet
    ds.PerformedStationName = station_name
    ds.PerformedLocation = "Reading room"
    ds.PerformedProcedureStepStartDate = started.strftime("%Y%m%d")
    ds.PerformedProcedureStepStartTime = started.strftime("%H%M%S")
    ds.PerformedProcedureStepStatus = "IN PROGRESS"
    ds.PerformedProcedureStepDescription = description[:64]
    ds.PerformedProcedureTypeDescription = ""
    ds.ProcedureCodeSequence = DicomSequence([])
    ds.PerformedProcedureStepEndDate = None
    ds.PerformedProcedureStepEndTime = None
    ds.Modality = modality
    ds.StudyID = entry.requested_procedure_id[:16]
    ds.PerformedProtocolCodeSequence = DicomSequence([])
    ds.PerformedSeriesSequence = DicomSequence([])
    mpps_request(
        ris, calling_aet, lambda a: a.send_n_create(ds, ModalityPerformedProcedureStep, uid), "MPPS N-CREATE"
    )
    done = Dataset()
    done.PerformedProcedureStepStatus = "COMPLETED"
    now = datetime.now()
    done.PerformedProcedureStepEndDate = now.strftime("%Y%m%d")
    done.PerformedProcedureStepEndTime = now.strftime("%H%M%S")
    done.PerformedSeriesSequence = DicomSequence(list(series))
    mpps_request(
        ris,
        calling_aet,
        lambda a: a.send_n_set(done, ModalityPerformedProcedureStep, uid),
        "MPPS N-SET COMPLETED",
    )
    return uid
