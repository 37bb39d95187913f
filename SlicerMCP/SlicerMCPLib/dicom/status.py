"""DIMSE status codes by the standard's names (PS3.4, PS3.7 Annex C), as pynetdicom names them.

`Status` extends pynetdicom's own `Status` (SUCCESS, CANCEL, PENDING, MOVE_DESTINATION_UNKNOWN)
with the codes our SCPs answer and our SCUs read; the SCPs, the SCUs and the tests all take
them from here, so no code is typed as a bare number twice. The categories (`STATUS_PENDING`...)
and `code_to_category` are pynetdicom's.
"""

from __future__ import annotations

from enum import IntEnum

from pynetdicom.status import (
    STATUS_CANCEL,
    STATUS_FAILURE,
    STATUS_PENDING,
    STATUS_SUCCESS,
    STATUS_WARNING,
    code_to_category,
)
from pynetdicom.status import Status as _PynetdicomStatus

__all__ = [
    "MAY_NO_LONGER_BE_UPDATED",
    "STATUS_CANCEL",
    "STATUS_FAILURE",
    "STATUS_PENDING",
    "STATUS_SUCCESS",
    "STATUS_WARNING",
    "Status",
    "code_to_category",
]


class Status(IntEnum):
    """A DIMSE response's (0000,0900) Status."""

    SUCCESS = _PynetdicomStatus.SUCCESS
    CANCEL = _PynetdicomStatus.CANCEL
    PENDING = _PynetdicomStatus.PENDING
    MOVE_DESTINATION_UNKNOWN = _PynetdicomStatus.MOVE_DESTINATION_UNKNOWN
    PENDING_WARNING = 0xFF01  # C-FIND: matches continue, some optional keys were not supported
    # PS3.7 C.4: general failures of the N- services (MPPS)
    INVALID_ATTRIBUTE_VALUE = 0x0106
    PROCESSING_FAILURE = 0x0110
    DUPLICATE_SOP_INSTANCE = 0x0111
    NO_SUCH_OBJECT_INSTANCE = 0x0112
    MISSING_ATTRIBUTE = 0x0120
    MISSING_ATTRIBUTE_VALUE = 0x0121  # e.g. an MPPS set COMPLETED without its performed series
    # PS3.4 service-class failures (C-STORE, C-FIND, C-MOVE)
    OUT_OF_RESOURCES = 0xA700
    IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS = 0xA900
    SUB_OPERATIONS_COMPLETE_WITH_FAILURES = 0xB000
    CANNOT_UNDERSTAND = 0xC000
    UNABLE_TO_PROCESS = 0xC001


# Not a status: the (0000,0902) Error ID sent with PROCESSING_FAILURE when an MPPS in a final
# state (COMPLETED, DISCONTINUED) is asked to change (PS3.4 F.7.2.2.1: "may no longer be updated").
MAY_NO_LONGER_BE_UPDATED = 0xA710
