"""STOW-RS: store DICOM instances through a node's DICOMweb root (POST {root}/studies).

One multipart/related request of application/dicom parts; the answer's Failed SOP Sequence
(0008,1198) and Referenced SOP Sequence (0008,1199) give the per-instance outcome, counted
the same way as C-STORE (dicom/send.py) so callers see one SendResult shape.
"""

from __future__ import annotations

import io
import uuid
from collections.abc import Sequence
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset

from ..core.domain_config import DicomNode
from ..core.errors import ErrorCode, SlicerMCPError
from .associations import node_label
from .dicomweb_http import dicomweb_request, request_deadline
from .models import SendFailure, SendResult
from .part10 import write_file

FAILED_SOP_SEQUENCE = "00081198"
REFERENCED_SOP_SEQUENCE = "00081199"
REFERENCED_SOP_INSTANCE_UID = "00081155"
FAILURE_REASON = "00081197"


def _encoded(item: Dataset | Path) -> bytes:
    if isinstance(item, Path):
        return item.read_bytes()
    part = io.BytesIO()
    write_file(item, part)
    return part.getvalue()


def _body(items: Sequence[Dataset | Path], boundary: str) -> bytes:
    out = io.BytesIO()
    for item in items:
        out.write(f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode("ascii"))
        out.write(_encoded(item))
        out.write(b"\r\n")
    out.write(f"--{boundary}--\r\n".encode("ascii"))
    return out.getvalue()


def _uids(answer: dict, keyword: str) -> list[tuple[str, str]]:
    items = (answer.get(keyword) or {}).get("Value") or []
    out = []
    for item in items:
        uid = ((item.get(REFERENCED_SOP_INSTANCE_UID) or {}).get("Value") or [""])[0]
        reason = ((item.get(FAILURE_REASON) or {}).get("Value") or [""])[0]
        out.append((str(uid), f"0x{int(reason):04X}" if str(reason).isdigit() else str(reason or "failed")))
    return out


def _uid(item: Dataset | Path) -> str:
    if isinstance(item, Path):
        return str(
            pydicom.dcmread(item, stop_before_pixels=True, specific_tags=["SOPInstanceUID"]).SOPInstanceUID
        )
    return str(item.SOPInstanceUID)


def stow(node: DicomNode, datasets: Sequence[Dataset | Path], *, node_name: str | None = None) -> SendResult:
    """POST the datasets (or Part 10 files) to the node's STOW-RS endpoint; per-instance failures are counted, not raised."""
    label = node_label(node, node_name)
    if not node.dicomweb_url:
        raise SlicerMCPError(
            f"{label} has no dicomweb_url in the config; set it, or store with method c-store",
            code=ErrorCode.CONFIG_ERROR,
            details={"node": node_name},
        )
    boundary = uuid.uuid4().hex
    headers = {
        "Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}',
        "Accept": "application/dicom+json",
    }
    deadline = request_deadline(node, node_name, "the STOW-RS request", "transfer")
    body = _body(datasets, boundary)  # bytes: one sendall, itself bounded by the socket timeout
    url = f"{node.dicomweb_url}/studies"
    with dicomweb_request(node, node_name, "POST", url, deadline, data=body, headers=headers) as resp:
        resp.content  # noqa: B018 - read here, within the deadline
    if resp.status_code >= 400 and resp.status_code != 409:  # 409: some or all failed, listed in the body
        raise SlicerMCPError(
            f"STOW-RS to {label} failed: HTTP {resp.status_code}",
            code=ErrorCode.DICOM_SEND_FAILED,
            details={"status": resp.status_code},
        )
    try:
        answer = resp.json() if resp.content else {}
    except ValueError:
        answer = {}
    failed = [SendFailure(sop_instance_uid=u, status=s) for u, s in _uids(answer, FAILED_SOP_SEQUENCE)]
    stored = {u for u, _ in _uids(answer, REFERENCED_SOP_SEQUENCE)}
    sent = sum(1 for uid in map(_uid, datasets) if uid in stored) if stored else len(datasets) - len(failed)
    return SendResult(
        success=not failed and sent == len(datasets),
        destination=node.ae_title,
        sent=sent,
        warning=1 if resp.status_code == 202 else 0,
        failed=len(datasets) - sent,
        failures=failed,
    )
