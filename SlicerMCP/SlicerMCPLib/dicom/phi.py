"""Keeping patient data (PHI) out of the process's logs: one call at each host's start.

pynetdicom logs whole identifiers (patient names, IDs) at INFO, and pydicom reports a malformed
value it reads (a peer's birth date, name...) by logging and printing the value itself; other
libraries write message bodies at DEBUG (core/log_levels.py caps them). All of it is
process-wide, so a host (`slicer-mcp`, the in-Slicer controller) turns it off once where it
starts, rather than an import doing it as a side effect.
"""

from __future__ import annotations

from pydicom import config as pydicom_config
from pynetdicom import _config as pynetdicom_config

from ..core.log_levels import cap_third_party_loggers


def keep_phi_out_of_logs() -> None:
    """Log no identifiers and no read values, also when someone turns pynetdicom's logger up later
    for a network problem (the switches remove the dataset dumps themselves). Safe to call again.

    Values are read without pydicom's checks; ours (validation.py, the MWL matcher) refuse bad ones.
    """
    cap_third_party_loggers()  # pynetdicom at WARNING, and no library logs bodies even under -v
    pynetdicom_config.LOG_REQUEST_IDENTIFIERS = False
    pynetdicom_config.LOG_RESPONSE_IDENTIFIERS = False
    pydicom_config.settings.reading_validation_mode = pydicom_config.IGNORE
