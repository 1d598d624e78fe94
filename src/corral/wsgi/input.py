"""``wsgi.input``: the request body as a file-like stream.

Theory of operation: the stream knows nothing about sockets. It pulls body bytes from a
*body source*, a callable the worker provides that returns the next piece of the body, ``b""``
at the end of the body, and raises :class:`BodyError` when the body cannot be completed
(peer closed early, timeout, malformed chunk). The stream keeps one buffer of pulled but
unread bytes, so ``read``, ``readline`` and iteration can be mixed freely. It never reads past
the body because the source stops at the end of the message, and a truncated body is never
presented as complete: the error propagates to the app on the read that hits it, and every
later read raises it again.
"""

from __future__ import annotations

import io
import sys
from collections.abc import Callable, Iterator

BodySource = Callable[[], bytes]


class BodyError(OSError):
    """The request body could not be read completely (truncated, timed out, malformed)."""


def empty_source() -> bytes:
    """The body source of a request without a body."""
    return b""


class InputStream:
    """A read-only stream over one request body (PEP 3333 ``wsgi.input``).

    Unread bytes live in one ``bytearray``: appending a piece and removing a prefix are both
    amortised O(len) there (CPython advances the start of a bytearray in place), so reading a
    body in one ``read(n)`` or line by line costs time linear in its size, however the source
    splits it. An immutable ``bytes`` buffer grown with ``+=`` copied everything read so far
    on every piece: a 50 MiB ``read(n)`` (Django's ``request.body``) took 20 s.
    """

    __slots__ = ("_buf", "_eof", "_error", "_source", "bytes_read")

    def __init__(self, source: BodySource = empty_source) -> None:
        self._source = source
        self._buf = bytearray()
        self._eof = False
        self._error: BodyError | None = None
        self.bytes_read = 0  # body bytes pulled from the source (for the access log)

    def _next_piece(self) -> bytes:
        """The next piece from the source, not buffered; b"" at the end of the body."""
        if self._error is not None:
            raise self._error
        if self._eof:
            return b""
        try:
            piece = self._source()
        except BodyError as exc:
            self._error = exc
            raise
        if not piece:
            self._eof = True
            return b""
        self.bytes_read += len(piece)
        return piece

    def _pull(self) -> bool:
        """Append the next piece to the buffer; False at end of body."""
        piece = self._next_piece()
        if not piece:
            return False
        self._buf += piece
        return True

    def _take(self, size: int) -> bytes:
        """Remove and return up to ``size`` bytes from the front of the buffer."""
        buf = self._buf
        if len(buf) <= size:
            data = bytes(buf)
            buf.clear()
            return data
        with memoryview(buf) as view:
            data = view[:size].tobytes()  # one copy (a bytearray slice would make two)
        del buf[:size]
        return data

    def read(self, size: int | None = -1) -> bytes:
        """Up to ``size`` bytes (all the rest when ``size`` is negative or None); fewer only
        at the end of the body."""
        if size is None or size < 0:
            size = sys.maxsize
        buf = self._buf
        if len(buf) >= size:
            return self._take(size)
        if not buf:  # the streaming read: hand a piece that covers it over as it is
            piece = self._next_piece()
            if len(piece) >= size:
                if len(piece) == size:
                    return piece
                buf += memoryview(piece)[size:]
                return piece[:size]
            buf += piece
        # A long read: gather into a BytesIO, whose getvalue() hands its buffer over without
        # a copy (a list join or bytes(bytearray) copies everything once more, and faults in
        # as much fresh memory again).
        out = io.BytesIO()
        out.write(buf)
        need = size - len(buf)
        buf.clear()
        while need > 0:
            piece = self._next_piece()
            if not piece:
                break
            if len(piece) > need:  # keep the excess for the next read
                buf += memoryview(piece)[need:]
                piece = piece[:need]
            out.write(piece)
            need -= len(piece)
        return out.getvalue()

    def readline(self, size: int | None = -1) -> bytes:
        """One line including its ``\\n``, at most ``size`` bytes when ``size`` >= 0."""
        limit = -1 if size is None else size
        buf = self._buf
        start = 0
        while True:
            idx = buf.find(b"\n", start)
            if idx != -1:
                end = idx + 1
                break
            if 0 <= limit <= len(buf):
                end = limit
                break
            start = len(buf)  # only the new piece is searched next time
            if not self._pull():
                end = len(buf)
                break
        if 0 <= limit < end:
            end = limit
        return self._take(end)

    def readlines(self, hint: int | None = -1) -> list[bytes]:
        """Lines until the end of body, or until about ``hint`` bytes were read."""
        lines: list[bytes] = []
        total = 0
        while True:
            line = self.readline()
            if not line:
                return lines
            lines.append(line)
            total += len(line)
            if hint is not None and 0 < hint <= total:
                return lines

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        line = self.readline()
        if not line:
            raise StopIteration
        return line

    def drain(self) -> bool:
        """Discard what is left of the body; True when the body ended cleanly."""
        self._buf.clear()
        try:
            while self._next_piece():
                pass
        except BodyError:
            return False
        return True

    @property
    def complete(self) -> bool:
        """The whole body was pulled from the source without error."""
        return self._eof and self._error is None


class ChunksSource:
    """A body source over chunks already received (the worker's small-body path)."""

    __slots__ = ("_chunks",)

    def __init__(self, chunks: list[bytes]) -> None:
        self._chunks = chunks

    def __call__(self) -> bytes:
        if self._chunks:
            return self._chunks.pop(0)
        return b""
