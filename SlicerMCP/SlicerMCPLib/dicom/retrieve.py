"""Bring a study or series to a local folder: DICOMweb WADO-RS, C-GET or C-MOVE to our SCP.

Whatever the method, the instances the node listed in a C-FIND are the contract: each
arrives as `<SOPInstanceUID>.dcm`, progress is reported per instance, and anything missing
at the end is RETRIEVE_INCOMPLETE with the missing UIDs (never a silent partial series).
A caller may instead vouch for what arrived once the transfer is over (a DICOMweb or C-GET
series load whose every instance is of the series, as many as the node counts for it); the
list is asked for only when it cannot.
"""

from __future__ import annotations

import logging
import struct
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path

from pynetdicom import build_role
from pynetdicom.presentation import build_context
from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelGet  # type: ignore[attr-defined]

from ..core.domain_config import DicomNode, RetrieveMethod
from ..core.errors import ErrorCode, SlicerMCPError
from ..core.localhost import private_dir, write_private_bytes
from ..core.progress import CountProgress
from . import cget_receive
from .associations import (
    MAX_CONTEXTS,
    UNCOMPRESSED,
    lost_association,
    node_label,
    open_association,
)
from .dicomweb_http import dicomweb_request, request_deadline, response_body
from .move import Target, move
from .multipart import multipart_parts
from .query import find
from .status import Status
from .storage_scp import StorageScp, framed_instance
from .validation import check_uid

log = logging.getLogger(__name__)

MAX_INSTANCES = 100_000


@dataclass
class Expected:
    """What the node says the study or series holds: SOP instance -> (series, SOP class)."""

    instances: dict[str, tuple[str, str]] = field(default_factory=dict)

    @property
    def series(self) -> list[str]:
        return sorted({s for s, _ in self.instances.values()})

    @property
    def sop_classes(self) -> list[str]:
        return sorted({c for _, c in self.instances.values() if c})


def expected_instances(
    node: DicomNode,
    calling_aet: str,
    target: Target,
    node_name: str | None = None,
    with_classes: bool = True,
) -> Expected:
    """C-FIND at instance level: the SOP instances a retrieve must deliver.

    Without `with_classes` the SOP Class UIDs (needed only to negotiate C-GET) are not asked
    for and stay empty: SOPClassUID is not in Orthanc's index, so asking for it makes Orthanc
    read every instance from its storage (300 instances: 0.32 s -> 0.23 s without it).
    """
    study_uid, series_uid = target.study_uid, target.series_uid
    filters = {"StudyInstanceUID": study_uid}
    if series_uid:
        filters["SeriesInstanceUID"] = series_uid
    if target.sop_uid:
        filters["SOPInstanceUID"] = target.sop_uid
    keys = ["StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"] + (
        ["SOPClassUID"] if with_classes else []
    )
    result = find(
        node,
        calling_aet,
        "instance",
        keys,
        filters,
        limit=MAX_INSTANCES,
        node_name=node_name,
    )
    expected = Expected()
    for rec in result.records:
        sop = check_uid(str(rec.get("SOPInstanceUID") or ""), "SOPInstanceUID from the node")
        # both name folders and presentation contexts: a hostile node must not smuggle paths in
        series = check_uid(
            str(rec.get("SeriesInstanceUID") or series_uid or ""), "SeriesInstanceUID from the node"
        )
        expected.instances[sop] = (
            series,
            check_uid(str(rec.get("SOPClassUID") or ""), "SOPClassUID from the node") if with_classes else "",
        )
    if not expected.instances:
        what = f"{target.level} {target.sop_uid or series_uid or study_uid}"
        raise SlicerMCPError(
            f"{node_label(node, node_name)} has no instances for {what}; check the UIDs with query_studies / query_series",
            code=ErrorCode.DICOM_QUERY_FAILED,
            details={"study_instance_uid": study_uid, "series_instance_uid": series_uid},
        )
    return expected


def choose_method(node: DicomNode) -> RetrieveMethod:
    """The configured method, else DICOMweb when the node has a URL, else C-GET."""
    if node.retrieve_method:
        return node.retrieve_method
    return "dicomweb" if node.dicomweb_url else "c-get"


class Arrivals:
    """Where arriving instances go (a folder, or memory when `directory` is None), counted
    against the expected set with a progress report per instance.

    `expected` may still be a Future (its C-FIND running alongside a DICOMweb transfer) or a
    function called once when it is first needed (after the transfer): until then any instance
    with a valid UID is kept; `settle()` then drops the unexpected.
    """

    def __init__(
        self,
        expected: Expected | Future[Expected] | Callable[[], Expected],
        directory: Path | None,
        progress: CountProgress | None = None,
        on_item: Callable[[str, Path | bytes], None] | None = None,
    ):
        self._expected = expected
        self.directory = directory
        self.progress = progress
        self.on_item = on_item  # e.g. a decoder reading each instance while the next one arrives
        self.items: dict[str, Path | bytes] = {}
        self.bytes = 0
        if directory is not None:
            private_dir(directory)

    @property
    def expected(self) -> Expected:
        """The expected instances (waits for the C-FIND when it is still running)."""
        if isinstance(self._expected, Future):
            self._expected = self._expected.result()
        elif not isinstance(self._expected, Expected):
            self._expected = self._expected()
        return self._expected

    def _known(self) -> Expected | None:
        if isinstance(self._expected, Future):
            return self.expected if self._expected.done() else None
        return self._expected if isinstance(self._expected, Expected) else None

    def put(self, sop_uid: str, data: bytes) -> bool:
        """Keep one encoded instance (DICOM file format); False when it is not expected."""
        known = self._known()
        if known is not None and sop_uid not in known.instances:
            log.warning("ignored unexpected instance %s", sop_uid)
            return False
        if self.directory is None:
            self.items[sop_uid] = data
        else:
            path = self.directory / f"{check_uid(sop_uid, 'SOPInstanceUID')}.dcm"
            write_private_bytes(path, data)  # patient data: 0600
            self.items[sop_uid] = path
        self.bytes += len(data)
        if self.on_item is not None:
            self.on_item(sop_uid, self.items[sop_uid])
        if self.progress is not None:
            self.progress(len(self.items), len(known.instances) if known is not None else 0)
        return True

    def known_classes(self) -> list[str]:
        """The expected SOP classes when the list is already in hand (else empty: not waited for)."""
        known = self._known()
        return known.sop_classes if known is not None else []

    def settle(self) -> list[str]:
        """Drop what was not expected; returns the expected SOP Instance UIDs that did not arrive."""
        expected = self.expected.instances
        for uid in [u for u in self.items if u not in expected]:
            item = self.items.pop(uid)
            if isinstance(item, Path):
                item.unlink(missing_ok=True)
            log.warning("dropped unexpected instance %s", uid)
        return sorted(set(expected) - set(self.items))


def retrieve(
    node: DicomNode,
    calling_aet: str,
    target: Target,
    arrivals: Arrivals,
    *,
    method: RetrieveMethod,
    scp: StorageScp | None = None,
    node_name: str | None = None,
    transferred: Callable[[], None] | None = None,
) -> dict[str, Path | bytes]:
    """Fetch the expected instances into `arrivals`; returns SOP Instance UID -> file or bytes.

    `transferred` runs when the transfer is over but before the arrivals are checked against
    the expected list (whose query may still be running). Raises RETRIEVE_INCOMPLETE with the
    missing UIDs when any expected instance did not arrive.
    """
    started = time.perf_counter()
    if method == "dicomweb":
        _dicomweb(node, node_name, target, arrivals)
    elif method == "c-get":
        _c_get(node, calling_aet, node_name, target, arrivals)
    else:
        if scp is None:
            raise SlicerMCPError("C-MOVE retrieve needs our Storage SCP", code=ErrorCode.INTERNAL_ERROR)
        with scp.receiving(set(arrivals.expected.instances), arrivals.put):
            move(node, calling_aet, scp.ae_title, target, node_name=node_name)
    if transferred is not None:
        transferred()
    missing = arrivals.settle()
    expected = arrivals.expected
    log.info(
        "retrieved %d/%d instances by %s in %.2f s (study %s)",
        len(arrivals.items),
        len(expected.instances),
        method,
        time.perf_counter() - started,
        target.study_uid,
    )
    if missing:
        raise SlicerMCPError(
            f"{len(missing)} of {len(expected.instances)} instances did not arrive from "
            f"{node_label(node, node_name)} by {method}; nothing was loaded. Try again, or another "
            f"retrieve method, and check the node's log for the missing instances.",
            code=ErrorCode.RETRIEVE_INCOMPLETE,
            details={"method": method, "expected": len(expected.instances), "missing": missing[:100]},
        )
    return arrivals.items


# -- DICOMweb WADO-RS ------------------------------------------------------------------------------


def _dicomweb(
    node: DicomNode,
    node_name: str | None,
    target: Target,
    arrivals: Arrivals,
) -> None:
    if not node.dicomweb_url:
        raise SlicerMCPError(
            f"{node_label(node, node_name)} has no dicomweb_url in the config; set it or use retrieve_method c-get",
            code=ErrorCode.CONFIG_ERROR,
        )
    url = f"{node.dicomweb_url}/studies/{target.study_uid}"
    if target.series_uid:
        url += f"/series/{target.series_uid}"
        if target.sop_uid:
            url += f"/instances/{target.sop_uid}"
    # identity: pixel data barely compresses, and an unencoded body is read without a copy
    headers = {
        "Accept": 'multipart/related; type="application/dicom"; transfer-syntax=*',
        "Accept-Encoding": "identity",
    }
    deadline = request_deadline(node, node_name, "the WADO-RS retrieve", "transfer")
    with dicomweb_request(node, node_name, "GET", url, deadline, headers=headers) as resp:
        if resp.status_code == 404:
            return  # nothing there: the verification reports every instance missing
        if resp.status_code >= 400:
            raise SlicerMCPError(
                f"DICOMweb retrieve from {node_label(node, node_name)} failed: HTTP {resp.status_code}",
                code=ErrorCode.DOWNLOAD_FAILED,
                details={"status": resp.status_code},
            )
        boundary = _boundary(resp.headers.get("Content-Type", ""))
        for part in multipart_parts(response_body(resp), boundary):
            arrivals.put(_sop_instance_uid(part), part)


def _boundary(content_type: str) -> bytes:
    for piece in content_type.split(";"):
        key, _, value = piece.strip().partition("=")
        if key.lower() == "boundary":
            return value.strip('"').encode("ascii")
    raise SlicerMCPError(
        f"DICOMweb answer is not multipart (Content-Type {content_type!r})", code=ErrorCode.DOWNLOAD_FAILED
    )


def _sop_instance_uid(part: bytes | bytearray) -> str:
    """MediaStorageSOPInstanceUID from a part's file meta header (group 0002, explicit VR little endian)."""
    if part[128:132] != b"DICM":
        raise SlicerMCPError("a DICOMweb part is not a DICOM file", code=ErrorCode.DOWNLOAD_FAILED)
    pos = 132
    while pos + 8 <= len(part):
        group, element = struct.unpack_from("<HH", part, pos)
        if group != 0x0002:
            break
        vr = part[pos + 4 : pos + 6]
        if vr in (b"OB", b"OW", b"OF", b"SQ", b"UT", b"UN"):
            (length,) = struct.unpack_from("<I", part, pos + 8)
            value_at = pos + 12
        else:
            (length,) = struct.unpack_from("<H", part, pos + 6)
            value_at = pos + 8
        if element == 0x0003:
            uid = part[value_at : value_at + length].rstrip(b"\0 ").decode("ascii", "replace")
            return check_uid(uid, "SOPInstanceUID")
        pos = value_at + length
    raise SlicerMCPError(
        "a DICOMweb part has no SOP Instance UID in its header", code=ErrorCode.DOWNLOAD_FAILED
    )


# -- C-GET -----------------------------------------------------------------------------------------


def _sop_classes_in_study(
    node: DicomNode, calling_aet: str, node_name: str | None, target: Target
) -> list[str]:
    """SOPClassesInStudy from one study-level C-FIND: lets C-GET start before the instance list
    is complete. Empty when the node does not return the attribute (then the list is awaited)."""
    try:
        found = find(
            node,
            calling_aet,
            "study",
            ["StudyInstanceUID", "SOPClassesInStudy"],
            {"StudyInstanceUID": target.study_uid},
            limit=1,
            node_name=node_name,
        )
    except SlicerMCPError as exc:
        if exc.code != ErrorCode.DICOM_QUERY_FAILED:
            raise
        return []
    if not found.records:
        return []
    value = found.records[0].get("SOPClassesInStudy") or []
    classes = value if isinstance(value, list) else [value]
    try:
        return sorted({check_uid(str(c), "SOPClassesInStudy") for c in classes})[: MAX_CONTEXTS - 1]
    except SlicerMCPError:
        return []


def _c_get(
    node: DicomNode,
    calling_aet: str,
    node_name: str | None,
    target: Target,
    arrivals: Arrivals,
) -> None:
    model = StudyRootQueryRetrieveInformationModelGet
    sop_classes = (
        arrivals.known_classes()
        or _sop_classes_in_study(node, calling_aet, node_name, target)
        or arrivals.expected.sop_classes
    )
    contexts = [build_context(model)] + [build_context(c, UNCOMPRESSED) for c in sop_classes]
    roles = [build_role(c, scp_role=True) for c in sop_classes]

    def on_store(sop_class: str, sop_uid: str, syntax: str, dataset: bytes) -> int:
        accepted = arrivals.put(sop_uid, framed_instance(sop_class, sop_uid, syntax, dataset))
        return Status.SUCCESS if accepted else Status.CANNOT_UNDERSTAND

    label = node_label(node, node_name)
    with open_association(node, calling_aet, contexts, node_name=node_name, ext_neg=roles) as assoc:
        try:
            final, _ = cget_receive.c_get(assoc, target.identifier(), str(model), on_store, node.timeout_s)
        except cget_receive.LinkLost as exc:  # a closed link: pynetdicom has not seen it, nothing to wait for
            raise lost_association(label, "C-GET", assoc if exc.aborted else None, exc.aborted) from exc
        except TimeoutError as exc:
            raise lost_association(label, "C-GET") from exc
        except cget_receive.ProtocolError as exc:
            raise SlicerMCPError(
                f"{label} broke the C-GET protocol: {exc}; nothing was loaded",
                code=ErrorCode.RETRIEVE_INCOMPLETE,
                details={"method": "c-get"},
            ) from exc
        if final not in (Status.SUCCESS, None):
            log.warning("C-GET from %s ended with status 0x%04X", label, final)
