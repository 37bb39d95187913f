"""Checks on values that go into DICOM identifiers (UIDs, dates, free-text filters), and C-FIND values as text.

A UID key must match exactly one object, so wildcards and backslashes (value multiplicity,
which asks for a list of UIDs) are refused there; text filters may use `*` and `?` only.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from ..core.domain_config import is_ae_title
from ..core.errors import InvalidParameter

_UID = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")
_DATE_RANGE = re.compile(r"^(\d{8})?(-(\d{8})?)?$")
_CODE = re.compile(r"^[A-Z0-9_ ]{0,16}$")


def check_uid(value: str, key: str = "uid") -> str:
    """A DICOM UID: digits and dots, no leading zeros in a component, at most 64 characters."""
    if not isinstance(value, str) or not value or len(value) > 64 or not _UID.match(value):
        raise InvalidParameter(
            f"{key} must be a DICOM UID (digits and dots, at most 64 characters), got {value!r}",
            details={"parameter": key},
        )
    return value


def check_ae_title(value: str, key: str = "ae_title") -> str:
    if not is_ae_title(value):
        raise InvalidParameter(
            f"{key} must be an AE title: 1 to 16 printable characters, no backslash or surrounding spaces, "
            f"got {value!r}",
            details={"parameter": key},
        )
    return value


def check_text(value: str, key: str, max_length: int = 64) -> str:
    """A free-text matching value: wildcards * and ? allowed, no backslash or control characters."""
    if len(value) > max_length or "\\" in value or not value.isprintable():
        raise InvalidParameter(
            f"{key} must be printable text of at most {max_length} characters without backslash",
            details={"parameter": key},
        )
    return value


def _real_date(text: str | None) -> bool:
    if not text:
        return True
    try:
        datetime.strptime(text, "%Y%m%d")
    except ValueError:
        return False
    return True


def check_date(value: str, key: str) -> str:
    """YYYYMMDD, or a range YYYYMMDD-YYYYMMDD with either end open; each date must exist."""
    match = _DATE_RANGE.match(value) if value and value != "-" else None
    if match is None or not (_real_date(match.group(1)) and _real_date(match.group(3))):
        raise InvalidParameter(
            f"{key} must be YYYYMMDD or a range like 20240101-20240131 (either end may be open), got {value!r}",
            details={"parameter": key},
        )
    return value


def check_code(value: str, key: str) -> str:
    """A code string such as a modality (CT, MR): upper-case letters, digits, underscore."""
    if not _CODE.match(value):
        raise InvalidParameter(
            f"{key} must be a code such as CT or MR, got {value!r}", details={"parameter": key}
        )
    return value


# -- values as their DICOM value representation allows (PS3.5 6.2) ---------------------------------

VR_MAX_LENGTH = {"AE": 16, "CS": 16, "SH": 16, "LO": 64, "PN": 64}
_CS = re.compile(r"^[A-Z0-9_ ]*$")
ID_MAX = 2**63 - 1  # the largest row id SQLite and MariaDB both hold


def check_vr(value: object, vr: str, key: str, *, required: bool = True) -> str:
    """`value` as a valid `vr` value, normalised as DICOM compares it (surrounding spaces dropped).

    AE and CS take the default repertoire only (ASCII: a modality cannot encode anything else in
    them); SH, LO and PN any printable text without backslash (it separates values); PN limits
    each of its component groups (`=`) to 64 characters. INVALID_PARAMETER names the key and rule.
    """
    if not isinstance(value, str):
        raise InvalidParameter(
            f"{key} must be text ({vr}), got {type(value).__name__}", details={"parameter": key, "vr": vr}
        )
    text = value.strip(" ")
    limit = VR_MAX_LENGTH[vr]
    problem = None
    if not text and required:
        problem = "must not be empty"
    elif "\\" in text or not text.isprintable():
        problem = "must be printable text without backslash or control characters"
    elif vr in ("AE", "CS") and not text.isascii():
        problem = f"takes ASCII characters only ({vr} uses DICOM's default repertoire)"
    elif vr == "CS" and not _CS.match(text):
        problem = "takes upper-case letters, digits, space and underscore only"
    elif vr == "PN" and any(len(group) > limit for group in text.split("=")):
        problem = f"allows at most {limit} characters per component group"
    elif vr != "PN" and len(text) > limit:
        problem = f"allows at most {limit} characters"
    if problem:
        shown = text if len(text) <= 80 else text[:77] + "..."
        raise InvalidParameter(f"{key} ({vr}) {problem}, got {shown!r}", details={"parameter": key, "vr": vr})
    return text


def check_id(value: object, key: str) -> int:
    """A database row id: an integer (not a bool, float or digit string) from 1 to 2**63-1."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= ID_MAX:
        raise InvalidParameter(
            f"{key} must be a whole number from 1 to {ID_MAX}, got {value!r}"[:200],
            details={"parameter": key},
        )
    return value


def value_text(value: Any) -> str:
    """A C-FIND value as text the DICOM way: a multi-valued attribute joined by backslashes, '' for none."""
    if value is None:
        return ""
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return "\\".join(str(v) for v in value)
    return str(value)
