"""The parts of a multipart/related body (a WADO-RS answer), each read as one bytes object of its size.

A series arrives as one body of ~525 kB parts. Appending network chunks to a buffer, searching it
for the boundary and slicing each part out copied every byte three times with the GIL held (most
of the retrieve's own CPU). When a part says its Content-Length (Orthanc's do), its body is one
`read(length)` of the response stream: the bytes go from the socket into the part's own (not
zeroed) memory with the GIL released, and only the header lines and the boundary after the part
are parsed. A part without Content-Length, or whose boundary is not where its Content-Length says,
is found by searching for the boundary, so any server's answer, split into reads of any size,
gives the same parts.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Protocol

_MAX_LINE = 64 << 10


class Body(Protocol):
    """A buffered response body (http.client's response, an `io.BufferedReader`)."""

    def read(self, size: int = -1, /) -> bytes: ...

    def readline(self, size: int = -1, /) -> bytes: ...


class _Pushback:
    """`body` with bytes put back in front (only when a part's Content-Length was wrong)."""

    def __init__(self, body: Body):
        self._body = body
        self._back = b""

    def unread(self, data: bytes) -> None:
        self._back = data + self._back

    def readline(self) -> bytes:
        if self._back:
            end = self._back.find(b"\n") + 1
            if end:
                line, self._back = self._back[:end], self._back[end:]
                return line
            line, self._back = self._back, b""
            return line + self._body.readline(_MAX_LINE)
        return self._body.readline(_MAX_LINE)

    def read_exact(self, size: int) -> bytes | None:
        """`size` bytes, or None when the body ends first."""
        if self._back:
            data, self._back = self._back[:size], self._back[size:]
            if len(data) < size:
                data += self._body.read(size - len(data))
        else:
            data = self._body.read(size)  # no copy but the socket's into the part's memory
        while len(data) < size:  # a raw stream may return less; a buffered one only at the end
            more = self._body.read(size - len(data))
            if not more:
                return None
            data += more
        return data


def _content_length(line: bytes) -> int | None:
    name, sep, value = line.partition(b":")
    if not sep or name.strip().lower() != b"content-length":
        return None
    try:
        length = int(value.strip())
    except ValueError:
        return None
    return length if length >= 0 else None


def _delimiter(line: bytes, dash: bytes) -> bytes | None:
    """What follows the boundary on a delimiter line (b"" or b"--"), None when it is not one."""
    if not line.startswith(dash):
        return None
    rest = line[len(dash) :].rstrip(b" \t\r\n")  # transport padding
    return rest if rest in (b"", b"--") else None


def multipart_parts(body: Body, boundary: bytes) -> Iterator[bytes]:
    """Bodies of a multipart/related stream, yielded as each part completes. A part cut short by the
    end of the stream is not yielded (the caller's check of what arrived reports it)."""
    dash = b"--" + boundary
    stream = _Pushback(body)
    while True:  # the preamble, up to the first delimiter line
        line = stream.readline()
        if not line:
            return
        if _delimiter(line, dash) is not None:
            break
    while _delimiter(line, dash) == b"":
        length = None
        while True:  # the part's header lines, up to an empty one
            header = stream.readline()
            if not header:
                return
            if header in (b"\r\n", b"\n"):
                break
            length = _content_length(header) if length is None else length
        if length is not None:
            data = stream.read_exact(length)
            if data is None:
                return
            crlf = stream.readline()
            line = stream.readline() if crlf == b"\r\n" else b""
            if crlf == b"\r\n" and _delimiter(line, dash) is not None:
                yield data
                continue
            stream.unread(data + crlf + line)  # the boundary is not where the length said: search
        part, line = _search(stream, dash)
        if part is None:
            return
        yield part


def _search(stream: _Pushback, dash: bytes) -> tuple[bytes | None, bytes]:
    """The part's body up to the next line that is a delimiter right after CRLF, and that line."""
    buf = bytearray()
    while True:
        line = stream.readline()
        if not line:
            return None, b""
        if buf.endswith(b"\r\n") and _delimiter(line, dash) is not None:
            return bytes(buf[:-2]), line
        buf += line


class _Chunks(io.RawIOBase):
    def __init__(self, chunks: Iterator[bytes]):
        self._chunks = chunks
        self._left = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, view: memoryview) -> int:  # type: ignore[override]
        while not self._left:
            chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            self._left = memoryview(chunk)
        n = min(len(view), len(self._left))
        view[:n] = self._left[:n]
        self._left = self._left[n:]
        return n


def chunks_body(chunks: Iterator[bytes], buffer_size: int = io.DEFAULT_BUFFER_SIZE) -> Body:
    """A `Body` over an iterator of byte chunks (a content-encoded answer comes only as chunks)."""
    return io.BufferedReader(_Chunks(chunks), buffer_size)
