"""The parts of a multipart/related body (a WADO-RS answer), each read into a buffer of its own size.

A series arrives as one body of ~525 kB parts. Appending network chunks to a buffer, searching it
for the boundary and slicing each part out copies every byte three times, with the GIL held (most
of the retrieve's own CPU). When a part says its Content-Length (Orthanc's do), its body is read
with `readinto` straight into a buffer of that size and the boundary is only checked where it must
be; only the part headers pass through a small read-ahead buffer. A part without Content-Length,
or whose boundary is not where its Content-Length says, is found by searching for the boundary, so
any server's answer, split into reads of any size, gives the same parts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

ReadInto = Callable[[memoryview], int]  # fills up to len(view) bytes; 0 at the end of the body

_READ_AHEAD = 16 << 10  # reads for part headers; a body's first bytes read with them are copied once
_MAX_HEADERS = 64 << 10


class _Stream:
    """Read-ahead over `readinto`: `pending` holds bytes read but not yet consumed."""

    def __init__(self, readinto: ReadInto):
        self._readinto = readinto
        self.pending = bytearray(b"\r\n")  # so the first delimiter matches like the others
        self._scratch = bytearray(_READ_AHEAD)
        self.ended = False

    def more(self) -> bool:
        """Append one read to `pending`; False at the end of the body."""
        if self.ended:
            return False
        view = memoryview(self._scratch)
        n = self._readinto(view)
        if not n:
            self.ended = True
            return False
        self.pending += view[:n]
        return True

    def fill_to(self, size: int) -> bool:
        while len(self.pending) < size:
            if not self.more():
                return False
        return True

    def read_body(self, length: int) -> bytearray | None:
        """Exactly `length` bytes (read-ahead first, then straight from the network); None if cut short."""
        body = bytearray(length)
        view = memoryview(body)
        got = min(length, len(self.pending))
        view[:got] = memoryview(self.pending)[:got]
        del self.pending[:got]
        while got < length:
            n = self._readinto(view[got:])
            if not n:
                self.ended = True
                return None
            got += n
        return body


def _content_length(headers: bytes) -> int | None:
    for line in headers.split(b"\r\n"):
        name, sep, value = line.partition(b":")
        if sep and name.strip().lower() == b"content-length":
            try:
                length = int(value.strip())
            except ValueError:
                return None
            return length if length >= 0 else None
    return None


def multipart_parts(readinto: ReadInto, boundary: bytes) -> Iterator[bytearray]:
    """Bodies of a multipart/related stream, yielded as each part completes. A part cut short by the
    end of the stream is not yielded (the caller's check of what arrived reports it)."""
    delimiter = b"\r\n--" + boundary
    stream = _Stream(readinto)
    pending = stream.pending
    # the preamble (if any) and the first delimiter
    scan_from = 0
    while (at := pending.find(delimiter, scan_from)) < 0:
        scan_from = max(0, len(pending) - len(delimiter) + 1)
        if not stream.more():
            return
    del pending[: at + len(delimiter)]
    while True:
        # after a delimiter: "--" ends the body, else optional padding, CRLF, headers, CRLF CRLF
        if not stream.fill_to(2) or pending[:2] == b"--":
            return
        while (head_end := pending.find(b"\r\n\r\n")) < 0:
            if len(pending) > _MAX_HEADERS or not stream.more():
                return
        length = _content_length(bytes(pending[:head_end]))
        del pending[: head_end + 4]
        body = stream.read_body(length) if length is not None else None
        if body is not None and stream.fill_to(len(delimiter)) and pending.startswith(delimiter):
            del pending[: len(delimiter)]
            yield body
            continue
        if length is not None and body is None:
            return  # cut short
        # no Content-Length, or the delimiter is not where it said: search for it
        if body is not None:
            pending[:0] = body
        scan_from = 0
        while (at := pending.find(delimiter, scan_from)) < 0:
            scan_from = max(0, len(pending) - len(delimiter) + 1)
            if not stream.more():
                return
        part = pending[:at]
        del pending[: at + len(delimiter)]
        yield part


def chunks_reader(chunks: Iterator[bytes]) -> ReadInto:
    """A `readinto` over an iterator of byte chunks (for bodies that only come as chunks)."""
    left = memoryview(b"")

    def readinto(view: memoryview) -> int:
        nonlocal left
        while not left:
            chunk = next(chunks, None)
            if chunk is None:
                return 0
            left = memoryview(chunk)
        n = min(len(view), len(left))
        view[:n] = left[:n]
        left = left[n:]
        return n

    return readinto
