"""C-STORE: send DICOM files or in-memory datasets to a node.

`send(node, calling_aet, items)` is the one sender (the RIS virtual modality reuses it).
Presentation contexts are built from the objects themselves (SOP class x transfer syntax),
so anything readable on disk can be offered without a fixed list.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset
from pynetdicom import Association
from pynetdicom.presentation import PresentationContext, build_context
from pynetdicom.status import STATUS_FAILURE, STATUS_WARNING

from ..core.domain_config import DicomNode
from ..core.errors import ErrorCode, SlicerMCPError
from ..core.progress import CountProgress
from .associations import UNCOMPRESSED, lost_association, node_label, open_association, status_of
from .models import SendFailure, SendResult

log = logging.getLogger(__name__)


def _identity(item: Path | Dataset) -> tuple[str, str, str]:
    """(SOP Class UID, SOP Instance UID, transfer syntax) of a file or dataset, reading only the header."""
    if isinstance(item, Dataset):
        ds = item
    else:
        try:
            ds = pydicom.dcmread(
                item, stop_before_pixels=True, specific_tags=["SOPClassUID", "SOPInstanceUID"]
            )
        except Exception as exc:  # pydicom raises several types for unreadable input
            raise SlicerMCPError(
                f"{Path(item).name} is not a readable DICOM file ({type(exc).__name__})",
                code=ErrorCode.INVALID_PARAMETER,
                details={"path": str(item)},
            ) from exc
    meta = getattr(ds, "file_meta", None)
    syntax = (
        str(meta.TransferSyntaxUID) if meta is not None and "TransferSyntaxUID" in meta else UNCOMPRESSED[0]
    )
    try:
        return str(ds.SOPClassUID), str(ds.SOPInstanceUID), syntax
    except AttributeError as exc:
        what = "a dataset" if isinstance(item, Dataset) else Path(item).name
        raise SlicerMCPError(
            f"{what} has no SOPClassUID or SOPInstanceUID: it is not a DICOM object that can be sent",
            code=ErrorCode.INVALID_PARAMETER,
            details={} if isinstance(item, Dataset) else {"path": str(item)},
        ) from exc


def storage_contexts(pairs: Sequence[tuple[str, str]]) -> list[PresentationContext]:
    """One context per SOP class, offering the objects' own syntaxes plus the uncompressed ones."""
    by_class: dict[str, list[str]] = {}
    for sop_class, syntax in pairs:
        syntaxes = by_class.setdefault(sop_class, [])
        if syntax not in syntaxes:
            syntaxes.append(syntax)
    contexts = []
    for sop_class, syntaxes in by_class.items():
        offered = syntaxes + [s for s in UNCOMPRESSED if s not in syntaxes]
        contexts.append(build_context(sop_class, offered))
    return contexts


def send(
    node: DicomNode,
    calling_aet: str,
    items: Sequence[Path | Dataset],
    *,
    node_name: str | None = None,
    progress: CountProgress | None = None,
) -> SendResult:
    """C-STORE every file or dataset in `items` over one association and count the outcomes.

    Datasets need `file_meta.TransferSyntaxUID` (or are sent as Explicit VR Little Endian).
    Raises DICOM_NODE_UNREACHABLE / DICOM_ASSOCIATION_REJECTED when no association opens;
    per-instance failures are counted in the result, not raised.
    """
    with storing(node, calling_aet, items, node_name=node_name) as (assoc, identities):
        return store_on(assoc, items, identities, node_label(node, node_name), node.ae_title, progress)


Identity = tuple[str, str, str]


@contextmanager
def storing(
    node: DicomNode,
    calling_aet: str,
    items: Sequence[Path | Dataset],
    *,
    node_name: str | None = None,
    also: Sequence[PresentationContext] = (),
) -> Iterator[tuple[Association, list[Identity]]]:
    """An association able to C-STORE `items` (and whatever `also` asks for), with their identities."""
    if not items:
        raise SlicerMCPError("nothing to send: no DICOM objects were given", code=ErrorCode.INVALID_PARAMETER)
    identities = [_identity(item) for item in items]
    contexts = storage_contexts([(c, s) for c, _, s in identities]) + list(also)
    with open_association(node, calling_aet, contexts, node_name=node_name) as assoc:
        yield assoc, identities


def store_on(
    assoc: Association,
    items: Sequence[Path | Dataset],
    identities: Sequence[Identity],
    label: str,
    destination: str,
    progress: CountProgress | None = None,
) -> SendResult:
    """C-STORE each item on an open association (see `send`)."""
    sent = warning = 0
    failures: list[SendFailure] = []
    for index, (item, (_, sop_instance, _)) in enumerate(zip(items, identities, strict=True), start=1):
        if not assoc.is_established:
            raise lost_association(label, "C-STORE", assoc)
        try:
            status = assoc.send_c_store(item)
        except ValueError as exc:
            # pynetdicom refuses before sending: the peer accepted no context for this SOP class in
            # the object's transfer syntax (e.g. compressed data to an uncompressed-only peer)
            log.warning("C-STORE of %s to %s not attempted: %s", sop_instance, label, exc)
            failures.append(SendFailure(sop_instance_uid=sop_instance, status=f"not sent: {exc}"))
        else:
            code, category = status_of(status)
            if code is None:
                raise lost_association(label, "C-STORE", assoc)
            if category == STATUS_FAILURE:
                failures.append(SendFailure(sop_instance_uid=sop_instance, status=f"0x{code:04X}"))
            else:
                sent += 1
                if category == STATUS_WARNING:
                    warning += 1
        if progress is not None:
            progress(index, len(items))
    log.info("C-STORE to %s: %d sent, %d warnings, %d failed", label, sent, warning, len(failures))
    return SendResult(
        success=not failures,
        destination=destination,
        sent=sent,
        warning=warning,
        failed=len(failures),
        failures=failures,
    )
