"""Total deadlines for HTTP requests and for whole tool calls, on a monotonic clock.

A `requests` timeout bounds each socket read, not the request: a server that sends one byte every
few seconds holds a call for as long as it likes (issue 16: 495 s with `timeout_s: 10`). Here every
socket read of a response (status line, headers and body) first sets the socket's timeout to what
is left of the request's `Deadline`, and a read after the deadline fails at once, so a request ends
within its deadline plus one scheduling slice, however the bytes trickle in.

Use: `session = deadline_session()` (or `mount_deadline(session)`), then
`with deadline.bounded(): session.request(..., timeout=deadline.timeouts(connect_s, read_s))`;
a `requests` exception raised when `deadline.expired` is the deadline's, and `deadline.error()`
is the coded SLICER_TIMEOUT for it. Deadlines nest: `Deadline(s).within(current())` is the earlier
of a request's own and its tool call's (`current()` is the innermost `bounded` one on this thread).
"""

from __future__ import annotations

import http.client
import io
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from .errors import SlicerTimeout

_local = threading.local()


class Deadline:
    """A point on the monotonic clock, what it bounds (for the message) and the setting that sets it."""

    def __init__(self, seconds: float, what: str, setting: str, *, at: float | None = None):
        self.seconds = seconds
        self.what = what
        self.setting = setting
        self.at = time.monotonic() + seconds if at is None else at

    def left(self) -> float:
        return self.at - time.monotonic()

    @property
    def expired(self) -> bool:
        return self.left() <= 0

    def within(self, outer: Deadline | None) -> Deadline:
        """This deadline, or `outer` when it comes first (a request inside a tool call)."""
        return outer if outer is not None and outer.at < self.at else self

    def timeouts(self, connect_s: float, read_s: float) -> tuple[float, float]:
        """`requests`' (connect, read) timeouts, neither beyond what is left."""
        left = max(self.left(), 0.001)
        return min(connect_s, left), min(read_s, left)

    @contextmanager
    def bounded(self) -> Iterator[Deadline]:
        """Responses created on this thread inside the block read within this deadline."""
        stack: list[Deadline] = _local.__dict__.setdefault("stack", [])
        stack.append(self)
        try:
            yield self
        finally:
            stack.pop()

    def error(self, peer: str, next_step: str, details: dict[str, Any] | None = None) -> SlicerTimeout:
        """The coded error: what took too long, the limit, the setting, and what to do next."""
        return SlicerTimeout(
            f"{peer}: {self.what} took longer than {self.seconds:g} s in all and was stopped "
            f"(a total deadline, however slowly the answer came). {next_step} If the peer is just slow, "
            f"raise {self.setting} in the config.",
            details={**(details or {}), "deadline_s": self.seconds, "setting": self.setting},
        )


def current() -> Deadline | None:
    """The innermost deadline `bounded` on this thread, if any."""
    stack = _local.__dict__.get("stack")
    return stack[-1] if stack else None


class _DeadlineReader(io.RawIOBase):
    """The socket reads of one response, each bounded by what is left of its deadline."""

    def __init__(self, raw: io.RawIOBase, sock: socket.socket, deadline: Deadline):
        super().__init__()
        self._raw = raw
        self._sock = sock
        self._deadline = deadline
        self._read_s = sock.gettimeout()  # the per-read timeout urllib3 set for this response

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int | None:
        left = self._deadline.left()
        if left <= 0:
            raise TimeoutError(f"{self._deadline.what}: deadline of {self._deadline.seconds:g} s passed")
        self._sock.settimeout(left if self._read_s is None else min(self._read_s, left))
        return self._raw.readinto(buffer)

    def close(self) -> None:
        self._raw.close()  # the SocketIO: releases its hold on the socket
        super().close()


class _DeadlineResponse(http.client.HTTPResponse):
    """http.client's response reading through `_DeadlineReader` when made under a deadline."""

    def __init__(self, sock: socket.socket, *args: Any, **kwargs: Any):
        super().__init__(sock, *args, **kwargs)
        deadline = current()
        if deadline is not None:
            raw = self.fp.detach()  # the SocketIO makefile() made; it keeps the socket open for the body
            self.fp = io.BufferedReader(_DeadlineReader(raw, sock, deadline))


class _Connection(HTTPConnection):
    response_class = _DeadlineResponse


class _TlsConnection(HTTPSConnection):
    response_class = _DeadlineResponse


class _Pool(HTTPConnectionPool):
    ConnectionCls = _Connection


class _TlsPool(HTTPSConnectionPool):
    ConnectionCls = _TlsConnection


class DeadlineAdapter(HTTPAdapter):
    """requests' adapter whose connections read responses within the current `Deadline`."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _Pool, "https": _TlsPool}


def mount_deadline(session: requests.Session) -> requests.Session:
    """`session` with the deadline adapter on http:// and https:// (other adapters stay)."""
    session.mount("http://", DeadlineAdapter())
    session.mount("https://", DeadlineAdapter())
    return session


def deadline_session() -> requests.Session:
    return mount_deadline(requests.Session())
