"""One DICOMweb HTTP request under a total deadline, with its failures coded: WADO-RS, STOW-RS alike.

A per-read timeout lets a server that trickles bytes hold a retrieve for ever; each request here
ends within its deadline (core/deadline.py): `timeout_s` for small answers (metadata), or
`transfer_timeout_s` for a series or study moving in one body. No answer at all is
DICOM_NODE_UNREACHABLE; a passed deadline is SLICER_TIMEOUT naming the setting to raise.
"""

from __future__ import annotations

import http.client
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal

import requests

from ..core.deadline import Deadline, deadline_session
from ..core.domain_config import DicomNode
from ..core.errors import ErrorCode, SlicerMCPError
from .associations import through_breaker
from .multipart import Body, chunks_body


def dicomweb_unreachable(node: DicomNode, exc: Exception) -> SlicerMCPError:
    """The error for a DICOMweb request that got no answer (retrieve, metadata, STOW-RS alike)."""
    return SlicerMCPError(
        f"DICOMweb at {node.dicomweb_url} did not answer ({type(exc).__name__}); check dicomweb_url and the server",
        code=ErrorCode.DICOM_NODE_UNREACHABLE,
        details={"url": node.dicomweb_url},
    )


def request_deadline(
    node: DicomNode, node_name: str | None, what: str, size: Literal["small", "transfer"]
) -> Deadline:
    """The total deadline of one request: `timeout_s` for small answers, `transfer_timeout_s` for bulk."""
    key = "timeout_s" if size == "small" else "transfer_timeout_s"
    return Deadline(getattr(node, key), what, f"nodes.{node_name or '<node>'}.{key}")


@contextmanager
def dicomweb_request(
    node: DicomNode,
    node_name: str | None,
    method: str,
    url: str,
    deadline: Deadline,
    **kwargs: Any,
) -> Iterator[requests.Response]:
    """The response, streamed: read its body inside the block, which the deadline bounds too.

    Sent through the node's circuit breaker: no answer at all counts as a failure, any answer
    (an HTTP error status included) proves the node alive."""
    try:
        with deadline_session() as session, deadline.bounded():
            read_s = node.timeout_s

            def send() -> requests.Response:
                try:
                    return session.request(
                        method,
                        url,
                        stream=True,
                        timeout=deadline.timeouts(min(read_s, 10.0), read_s),
                        **kwargs,
                    )
                except requests.ConnectionError as exc:
                    raise dicomweb_unreachable(node, exc) from exc

            with through_breaker(node, send) as response:
                yield response
    except requests.RequestException as exc:
        if deadline.expired or isinstance(exc, requests.Timeout):
            raise deadline.error(
                f"DICOMweb at {node.dicomweb_url}",
                "The server is overloaded or the network is slow; check it (verify_connection), then try "
                "again, or use another retrieve or store method (c-get, c-move, c-store).",
                {"url": node.dicomweb_url},
            ) from exc
        raise dicomweb_unreachable(node, exc) from exc


def response_body(response: requests.Response) -> Body:
    """A streamed response's body: http.client's own response (a read of a part's size lands in that
    part's memory, under the request's deadline like every read) when it is not content-encoded,
    else urllib3's decoded chunks."""
    raw = getattr(response.raw, "_fp", None)  # urllib3 keeps http.client's response there
    encoding = response.headers.get("Content-Encoding", "identity").strip().lower()
    if isinstance(raw, http.client.HTTPResponse) and encoding == "identity":
        return raw
    return chunks_body(response.iter_content(1 << 20))
