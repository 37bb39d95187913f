"""C-MOVE of a study or series from a node to a destination AE (another node, or our Storage SCP).

The destination is an AE title the source node must already know; we never send an
address. Sub-operation counts (completed, failed, warning) come from the final response.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from pydicom.dataset import Dataset
from pynetdicom.presentation import build_context
from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelMove  # type: ignore[attr-defined]

from ..core.domain_config import DicomNode
from ..core.errors import ErrorCode, SlicerMCPError
from .associations import lost_association, node_label, open_association, status_of
from .models import MoveResult
from .status import STATUS_PENDING, Status

log = logging.getLogger(__name__)

Level = Literal["study", "series", "instance"]
# C-MOVE/C-GET Warning: sub-operations complete, one or more failed or had warnings (PS3.4 C.4.2.1.5)


@dataclass(frozen=True)
class Target:
    """What to retrieve or move: a study, a series of it, or one instance of that series."""

    study_uid: str
    series_uid: str | None = None
    sop_uid: str | None = None

    @property
    def level(self) -> Level:
        return "instance" if self.sop_uid else "series" if self.series_uid else "study"

    def identifier(self) -> Dataset:
        """The Study Root identifier that C-GET and C-MOVE both use."""
        ds = Dataset()
        ds.QueryRetrieveLevel = {"study": "STUDY", "series": "SERIES", "instance": "IMAGE"}[self.level]
        ds.StudyInstanceUID = self.study_uid
        if self.series_uid:
            ds.SeriesInstanceUID = self.series_uid
        if self.sop_uid:
            ds.SOPInstanceUID = self.sop_uid
        return ds


def _count(status: Dataset, keyword: str) -> int:
    value = status.get(keyword)
    return int(value) if value not in (None, "") else 0


def move(
    node: DicomNode,
    calling_aet: str,
    destination_aet: str,
    target: Target,
    *,
    node_name: str | None = None,
    on_pending: Callable[[int, int], None] | None = None,
) -> MoveResult:
    """Ask `node` to C-STORE a study or series to `destination_aet`; returns the sub-operation counts.

    Raises DICOM_MOVE_FAILED when the node refuses the move as a whole (e.g. unknown destination).
    """
    model = StudyRootQueryRetrieveInformationModelMove
    label = node_label(node, node_name)
    completed = failed = warning = 0
    final: int | None = None
    with open_association(node, calling_aet, [build_context(model)], node_name=node_name) as assoc:
        for status, _ in assoc.send_c_move(target.identifier(), destination_aet, model):
            code, category = status_of(status)
            if code is None:
                raise lost_association(label, "C-MOVE", assoc)
            completed = _count(status, "NumberOfCompletedSuboperations") or completed
            failed = _count(status, "NumberOfFailedSuboperations") or failed
            warning = _count(status, "NumberOfWarningSuboperations") or warning
            if category == STATUS_PENDING:
                if on_pending is not None:
                    remaining = _count(status, "NumberOfRemainingSuboperations")
                    on_pending(completed + failed + warning, completed + failed + warning + remaining)
                continue
            final = code
    if final == Status.MOVE_DESTINATION_UNKNOWN:
        raise SlicerMCPError(
            f"{label} does not know the move destination {destination_aet!r}. Register that AE title "
            f"(with host and port) in the node's configuration, or pick another destination.",
            code=ErrorCode.DICOM_MOVE_FAILED,
            details={"status": f"0x{final:04X}", "destination": destination_aet},
        )
    if final is None:
        raise lost_association(label, "C-MOVE", assoc)
    if final not in (Status.SUCCESS, Status.SUB_OPERATIONS_COMPLETE_WITH_FAILURES) and completed == 0:
        raise SlicerMCPError(
            f"{label} refused the C-MOVE to {destination_aet!r} with status 0x{final:04X}",
            code=ErrorCode.DICOM_MOVE_FAILED,
            details={"status": f"0x{final:04X}", "destination": destination_aet, "failed": failed},
        )
    ok = final == Status.SUCCESS and failed == 0
    log.info(
        "C-MOVE %s from %s to %s: %d completed, %d failed",
        target.level,
        label,
        destination_aet,
        completed,
        failed,
    )
    return MoveResult(
        success=ok,
        level=target.level,
        destination=destination_aet,
        completed=completed,
        failed=failed,
        warning=warning,
        status=f"0x{final:04X}",
        message="all sub-operations completed"
        if ok
        else f"{failed} sub-operations failed, {warning} completed with warnings",
    )
