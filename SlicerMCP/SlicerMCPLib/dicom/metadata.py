"""A series' instance headers without their pixels: WADO-RS metadata (DICOM JSON) when the node has
DICOMweb, else the instances themselves read up to the pixel data.

A SEG or SR needs every source image's header (patient, study, frame of reference, geometry),
not its pixels: for a 300-slice CT the metadata is ~1 MB where the instances are ~150 MB.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable

import pydicom
from pydicom.dataset import Dataset

from ..core.domain_config import DicomNode
from ..core.errors import ErrorCode, SlicerMCPError
from .associations import node_label
from .dicomweb_http import dicomweb_request, request_deadline
from .move import Target


def _no_bulk_data(*_args: str) -> None:
    return None  # pixel data and other bulk data stay on the server


def _dicomweb_headers(node: DicomNode, node_name: str, target: Target) -> list[Dataset]:
    url = f"{node.dicomweb_url}/studies/{target.study_uid}/series/{target.series_uid}/metadata"
    deadline = request_deadline(node, node_name, "the WADO-RS metadata request", "small")
    accept = {"Accept": "application/dicom+json"}
    with dicomweb_request(node, node_name, "GET", url, deadline, headers=accept) as resp:
        status, body = resp.status_code, resp.content  # the body is read here, within the deadline
    if status == 404:
        return []
    if status >= 400:
        raise SlicerMCPError(
            f"WADO-RS metadata from {node_label(node, node_name)} failed: HTTP {status}",
            code=ErrorCode.DOWNLOAD_FAILED,
            details={"status": status},
        )
    out = []
    for item in json.loads(body):
        item.pop("7FE00010", None)
        out.append(Dataset.from_json(item, bulk_data_uri_handler=_no_bulk_data))
    return out


def series_headers(
    node: DicomNode,
    node_name: str,
    target: Target,
    fetch_instances: Callable[[Target], dict],
) -> list[Dataset]:
    """Every instance header of the series; RETRIEVE_INCOMPLETE or empty handling is the fetcher's."""
    if node.dicomweb_url:
        headers = _dicomweb_headers(node, node_name, target)
        if headers:
            return headers
    return [
        pydicom.dcmread(
            io.BytesIO(data) if isinstance(data, (bytes, bytearray)) else data, stop_before_pixels=True
        )
        for data in fetch_instances(target).values()
    ]
