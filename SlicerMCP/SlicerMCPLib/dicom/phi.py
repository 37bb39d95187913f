"""Keeping patient data (PHI) out of the process's logs: one call at each host's start.

pynetdicom logs whole identifiers (patient names, IDs) at INFO, and pydicom reports a malformed
value it reads (a peer's birth date, name...) by logging and printing the value itself. Both
switches are process-wide, so a host (`slicer-mcp`, the in-Slicer controller) turns them off
once where it starts, rather than an import doing it as a side effect.
"""

from __future__ import annotations

import logging

from pydicom import config as pydicom_config
from pynetdicom import _config as pynetdicom_config


def keep_phi_out_of_logs() -> None:
    """Log no identifiers and no read values, also when someone turns pynetdicom's logger up later
    for a network problem (the switches remove the dataset dumps themselves). Safe to call again.

    Values are read without pydicom's checks; ours (validation.py, the MWL matcher) refuse bad ones.
    """
    logging.getLogger("pynetdicom").setLevel(logging.WARNING)
    pynetdicom_config.LOG_REQUEST_IDENTIFIERS = False
    pynetdicom_config.LOG_RESPONSE_IDENTIFIERS = False
    pydicom_config.settings.reading_validation_mode = pydicom_config.IGNORE
