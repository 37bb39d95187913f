"""MPPS SCP (N-CREATE / N-SET) over DICOM with pynetdicom: the state rules and statuses of PS3.4 F."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import generate_uid
from pynetdicom import AE, Association
from pynetdicom.sop_class import ModalityPerformedProcedureStep  # type: ignore[attr-defined]

from fixtures.ris import RIS_AET, STATION_AET
from SlicerMCPLib.dicom.status import MAY_NO_LONGER_BE_UPDATED, Status


@pytest.fixture
def mpps(ris_scp: Any) -> Iterator[Association]:
    ae = AE(ae_title=STATION_AET)
    ae.add_requested_context(ModalityPerformedProcedureStep)
    assoc = ae.associate("127.0.0.1", ris_scp.port, ae_title=RIS_AET)
    assert assoc.is_established
    yield assoc
    assoc.release()


def create_request(entry: Any, status: str = "IN PROGRESS") -> Dataset:
    ds = Dataset()
    step = Dataset()
    step.StudyInstanceUID = entry.study_instance_uid
    step.AccessionNumber = entry.accession_number
    step.ScheduledProcedureStepID = entry.scheduled_procedure_step_id
    step.RequestedProcedureID = entry.requested_procedure_id
    ds.ScheduledStepAttributesSequence = Sequence([step])
    ds.PatientID = entry.patient.mrn
    ds.PerformedStationAETitle = STATION_AET
    ds.PerformedProcedureStepStartDate = "20250612"
    ds.PerformedProcedureStepStartTime = "101500"
    ds.PerformedProcedureStepStatus = status
    ds.Modality = "CR"
    ds.PerformedSeriesSequence = Sequence([])
    return ds


def set_request(status: str | None, series_uid: str | None = None) -> Dataset:
    ds = Dataset()
    if status is not None:
        ds.PerformedProcedureStepStatus = status
    ds.PerformedProcedureStepEndDate = "20250612"
    ds.PerformedProcedureStepEndTime = "102000"
    if series_uid:
        item = Dataset()
        item.SeriesInstanceUID = series_uid
        item.SeriesDescription = "CHEST PA"
        item.ProtocolName = "CHEST PA"  # Type 1: a COMPLETED step without it is refused
        ref = Dataset()
        ref.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.1"
        ref.ReferencedSOPInstanceUID = series_uid + ".1"
        item.ReferencedImageSequence = Sequence([ref])
        ds.PerformedSeriesSequence = Sequence([item])
    return ds


def code(status: Dataset) -> int:
    return int(status.Status)


def test_in_progress_then_completed_updates_the_worklist(mpps: Association, sqlite_store: Any) -> None:
    entry = sqlite_store.list_worklist(status="SCHEDULED")[0]
    uid = generate_uid()
    status, _ = mpps.send_n_create(create_request(entry), ModalityPerformedProcedureStep, uid)
    assert code(status) == Status.SUCCESS
    assert sqlite_store.get_mwl(entry.mwl_id).status == "IN_PROGRESS"
    series = generate_uid()
    status, _ = mpps.send_n_set(set_request("COMPLETED", series), ModalityPerformedProcedureStep, uid)
    assert code(status) == Status.SUCCESS
    record = sqlite_store.get_mpps(uid)
    assert record.status == "COMPLETED" and record.mwl_id == entry.mwl_id
    assert record.series[0]["series_instance_uid"] == series
    assert record.series[0]["instances"] == [series + ".1"]
    assert sqlite_store.get_mwl(entry.mwl_id).status == "COMPLETED"
    # final state: no further N-SET, with the standard's "may no longer be updated" error
    status, _ = mpps.send_n_set(set_request("DISCONTINUED"), ModalityPerformedProcedureStep, uid)
    assert code(status) == Status.PROCESSING_FAILURE
    assert int(status.ErrorID) == MAY_NO_LONGER_BE_UPDATED
    assert sqlite_store.get_mpps(uid).status == "COMPLETED"


def test_in_progress_then_discontinued(mpps: Association, sqlite_store: Any) -> None:
    entry = sqlite_store.list_worklist(status="SCHEDULED")[1]
    uid = generate_uid()
    assert (
        code(mpps.send_n_create(create_request(entry), ModalityPerformedProcedureStep, uid)[0])
        == Status.SUCCESS
    )
    # an N-SET that keeps IN PROGRESS is allowed (e.g. adding series as they are made)
    assert code(mpps.send_n_set(set_request(None), ModalityPerformedProcedureStep, uid)[0]) == Status.SUCCESS
    assert (
        code(mpps.send_n_set(set_request("DISCONTINUED"), ModalityPerformedProcedureStep, uid)[0])
        == Status.SUCCESS
    )
    assert sqlite_store.get_mwl(entry.mwl_id).status == "DISCONTINUED"
    history = [h["status"] for h in sqlite_store.get_mpps(uid).history]
    assert history == ["IN PROGRESS", "DISCONTINUED"]


def test_n_set_for_an_unknown_step_is_no_such_instance(mpps: Association) -> None:
    status, _ = mpps.send_n_set(set_request("COMPLETED"), ModalityPerformedProcedureStep, generate_uid())
    assert code(status) == Status.NO_SUCH_OBJECT_INSTANCE


def test_duplicate_n_create_is_refused(mpps: Association, sqlite_store: Any) -> None:
    entry = sqlite_store.list_worklist(status="SCHEDULED")[2]
    uid = generate_uid()
    assert (
        code(mpps.send_n_create(create_request(entry), ModalityPerformedProcedureStep, uid)[0])
        == Status.SUCCESS
    )
    status, _ = mpps.send_n_create(create_request(entry), ModalityPerformedProcedureStep, uid)
    assert code(status) == Status.DUPLICATE_SOP_INSTANCE


def test_n_create_must_start_in_progress(mpps: Association, sqlite_store: Any) -> None:
    entry = sqlite_store.list_worklist(status="SCHEDULED")[3]
    status, _ = mpps.send_n_create(
        create_request(entry, "COMPLETED"), ModalityPerformedProcedureStep, generate_uid()
    )
    assert code(status) == Status.INVALID_ATTRIBUTE_VALUE
    request = create_request(entry)
    del request.PerformedProcedureStepStatus
    status, _ = mpps.send_n_create(request, ModalityPerformedProcedureStep, generate_uid())
    assert code(status) == Status.MISSING_ATTRIBUTE
    assert sqlite_store.get_mwl(entry.mwl_id).status == "SCHEDULED"


def test_unknown_status_value_in_n_set(mpps: Association, sqlite_store: Any) -> None:
    entry = sqlite_store.list_worklist(status="SCHEDULED")[4]
    uid = generate_uid()
    assert (
        code(mpps.send_n_create(create_request(entry), ModalityPerformedProcedureStep, uid)[0])
        == Status.SUCCESS
    )
    status, _ = mpps.send_n_set(set_request("FINISHED"), ModalityPerformedProcedureStep, uid)
    assert code(status) == Status.INVALID_ATTRIBUTE_VALUE
    assert sqlite_store.get_mpps(uid).status == "IN PROGRESS"


def test_scp_assigns_the_uid_when_the_scu_leaves_it_out(mpps: Association, sqlite_store: Any) -> None:
    entry = sqlite_store.list_worklist(status="SCHEDULED")[5]
    status, _ = mpps.send_n_create(create_request(entry), ModalityPerformedProcedureStep, None)
    assert code(status) == Status.SUCCESS
    records = sqlite_store.mpps_for_mwl(entry.mwl_id)
    assert len(records) == 1 and records[0].sop_instance_uid.startswith("1.2.")


def test_in_progress_step_cannot_be_cancelled(mpps: Association, sqlite_store: Any) -> None:
    from SlicerMCPLib.core.errors import ErrorCode, SlicerMCPError

    entry = sqlite_store.list_worklist(status="SCHEDULED")[0]
    assert (
        code(mpps.send_n_create(create_request(entry), ModalityPerformedProcedureStep, generate_uid())[0])
        == 0
    )
    with pytest.raises(SlicerMCPError) as err:
        sqlite_store.cancel_mwl(entry.mwl_id)
    assert err.value.code == ErrorCode.RIS_CONFLICT and "DISCONTINUED" in err.value.message


def test_stopping_the_scp_ends_open_associations(sqlite_store: Any) -> None:
    """A modality holding an idle association must not keep the stopped SCP's thread alive."""
    from fixtures.core import free_port
    from SlicerMCPLib.ris.scp import RisScp

    scp = RisScp(sqlite_store, RIS_AET, "127.0.0.1", free_port()).start()
    ae = AE(ae_title=STATION_AET)
    ae.add_requested_context(ModalityPerformedProcedureStep)
    assoc = ae.associate("127.0.0.1", scp.port, ae_title=RIS_AET)
    assert assoc.is_established
    scp.stop()
    assoc.join(timeout=5)
    try:
        assert assoc.is_aborted and not assoc.is_established
    finally:
        if assoc.is_established:
            assoc.abort()


SEG_CLASS, SR_CLASS = "1.2.840.10008.5.1.4.1.1.66.4", "1.2.840.10008.5.1.4.1.1.88.34"


def _without_end(ds: Dataset) -> None:
    del ds.PerformedProcedureStepEndDate, ds.PerformedProcedureStepEndTime


def _series(ds: Dataset) -> Dataset:
    return ds.PerformedSeriesSequence[0]


INCOMPLETE = {  # what a COMPLETED N-SET leaves out -> what the Error Comment names (PS3.4 F.7.2.2, IHE SWF)
    "end date and time": (_without_end, "PerformedProcedureStepEndDate is empty"),
    "protocol name": (lambda ds: delattr(_series(ds), "ProtocolName"), "performed series 1: ProtocolName"),
    "series uid": (lambda ds: setattr(_series(ds), "SeriesInstanceUID", ""), "performed series 1: SeriesIn"),
    "no reference": (lambda ds: delattr(_series(ds), "ReferencedImageSequence"), "references no image"),
    "reference class": (
        lambda ds: delattr(_series(ds).ReferencedImageSequence[0], "ReferencedSOPClassUID"),
        "a reference lacks its SOP class",
    ),
    "no series": (lambda ds: setattr(ds, "PerformedSeriesSequence", Sequence([])), "has no item"),
}


@pytest.mark.parametrize("missing", sorted(INCOMPLETE))
def test_completed_without_what_it_must_carry_is_refused_and_the_step_stays_open(
    mpps: Association, sqlite_store: Any, missing: str
) -> None:
    entry = sqlite_store.list_worklist(status="SCHEDULED")[2]
    uid = generate_uid()
    status, _ = mpps.send_n_create(create_request(entry), ModalityPerformedProcedureStep, uid)
    assert code(status) == Status.SUCCESS
    spoil, named = INCOMPLETE[missing]
    request = set_request("COMPLETED", generate_uid())
    spoil(request)
    status, _ = mpps.send_n_set(request, ModalityPerformedProcedureStep, uid)
    assert code(status) == Status.MISSING_ATTRIBUTE_VALUE == 0x0121
    assert named in str(status.ErrorComment)
    assert sqlite_store.get_mpps(uid).status == "IN PROGRESS"
    assert sqlite_store.get_mwl(entry.mwl_id).status == "IN_PROGRESS"
    # not frozen: the complete N-SET is taken afterwards
    status, _ = mpps.send_n_set(set_request("COMPLETED", generate_uid()), ModalityPerformedProcedureStep, uid)
    assert code(status) == Status.SUCCESS and sqlite_store.get_mpps(uid).status == "COMPLETED"


def test_completed_with_seg_and_sr_as_non_image_references(mpps: Association, sqlite_store: Any) -> None:
    """A reading step performs no images: its SEG and SR are Referenced Non-Image Composite SOP Instances,
    and the end date/time an earlier N-SET gave counts."""
    from SlicerMCPLib.ris.reports import order_results

    entry = sqlite_store.list_worklist(status="SCHEDULED")[3]
    uid = generate_uid()
    status, _ = mpps.send_n_create(create_request(entry), ModalityPerformedProcedureStep, uid)
    assert code(status) == Status.SUCCESS
    status, _ = mpps.send_n_set(set_request(None), ModalityPerformedProcedureStep, uid)  # end date/time only
    assert code(status) == Status.SUCCESS
    request = Dataset()
    request.PerformedProcedureStepStatus = "COMPLETED"
    items = []
    for sop_class, description in ((SEG_CLASS, "Segmentation"), (SR_CLASS, "Measurement report")):
        item, ref = Dataset(), Dataset()
        item.SeriesInstanceUID, item.SeriesDescription, item.ProtocolName = (
            generate_uid(),
            description,
            "Reading",
        )
        ref.ReferencedSOPClassUID, ref.ReferencedSOPInstanceUID = sop_class, generate_uid()
        item.ReferencedNonImageCompositeSOPInstanceSequence = Sequence([ref])
        items.append(item)
    request.PerformedSeriesSequence = Sequence(items)
    status, _ = mpps.send_n_set(request, ModalityPerformedProcedureStep, uid)
    assert code(status) == Status.SUCCESS
    record = sqlite_store.get_mpps(uid)
    assert record.status == "COMPLETED" and record.end == "20250612 102000"
    assert [s["sop_classes"] for s in record.series] == [[SEG_CLASS], [SR_CLASS]]
    shown = order_results([record])
    assert [(r.kind, r.sop_instance_uid) for r in shown] == [
        ("SEG", items[0].ReferencedNonImageCompositeSOPInstanceSequence[0].ReferencedSOPInstanceUID),
        ("SR", items[1].ReferencedNonImageCompositeSOPInstanceSequence[0].ReferencedSOPInstanceUID),
    ]
