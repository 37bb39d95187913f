"""Highest detail each third-party logger may log at: none of them may write message bodies.

With `-v` the root logger is at DEBUG, and at DEBUG these libraries write what passes through
them: sse_starlette each SSE chunk (a whole tool result, patient names included), the MCP SDK
each JSON-RPC message, httpx/httpcore/urllib3 request URLs (a FHIR or DICOMweb search carries
names in its query), hpack decoded headers (the bearer token), pynetdicom its PDU and dataset
dumps. A level set on the library's own logger wins over the root logger's, so `-v` still shows
our debug lines and theirs stop at the cap.
"""

from __future__ import annotations

import logging

THIRD_PARTY_LEVELS: dict[str, int] = {
    "sse_starlette": logging.INFO,
    "mcp": logging.INFO,
    "uvicorn": logging.INFO,
    "httpx": logging.WARNING,
    "httpx2": logging.WARNING,
    "httpcore": logging.WARNING,
    "httpcore2": logging.WARNING,
    "hpack": logging.WARNING,
    "urllib3": logging.WARNING,
    "pynetdicom": logging.WARNING,
    "pydicom": logging.WARNING,
    "highdicom": logging.WARNING,
    "python_multipart": logging.WARNING,
    "multipart": logging.WARNING,
}


def cap_third_party_loggers() -> None:
    """Raise each library logger to its cap (never lower one set higher). Safe to call again."""
    for name, cap in THIRD_PARTY_LEVELS.items():
        logger = logging.getLogger(name)
        if logger.level < cap:  # NOTSET (0) included: it would follow the root logger down to DEBUG
            logger.setLevel(cap)
