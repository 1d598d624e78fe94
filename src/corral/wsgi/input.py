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

from collections.abc import Callable, Iterator

BodySource = Callable[[], bytes]


class BodyError(OSError):
    """The request body could not be read completely (truncated, timed out, malformed)."""


def empty_source() -> bytes:
    """The body source of a request without a body."""
    return b""


class InputStream:
    """A read-only stream over one request body (PEP 3333 ``wsgi.input``)."""

    __slots__ = ("_buf", "_eof", "_error", "_source", "bytes_read")

    def __init__(self, source: BodySource = empty_source) -> None:
        self._source = source
        self._buf = b""
        self._eof = False
        self._error: BodyError | None = None
        self.bytes_read = 0  # body bytes pulled from the source (for the access log)

    def _pull(self) -> bool:
        """Append the next piece to the buffer; False at end of body."""
        if self._error is not None:
            raise self._error
        if self._eof:
            return False
        try:
            piece = self._source()
        except BodyError as exc:
            self._error = exc
            raise
        if not piece:
            self._eof = True
            return False
        self.bytes_read += len(piece)
        self._buf += piece
        return True

    def read(self, size: int | None = -1) -> bytes:
        """Up to ``size`` bytes (all the rest when ``size`` is negative or None)."""
        if size is None or size < 0:
            # Collect pieces and join once: appending to one bytes object would be quadratic.
            parts = [self._buf]
            self._buf = b""
            while self._pull():
                parts.append(self._buf)
                self._buf = b""
            return b"".join(parts)
        while len(self._buf) < size and self._pull():
            pass
        data, self._buf = self._buf[:size], self._buf[size:]
        return data

    def readline(self, size: int | None = -1) -> bytes:
        """One line including its ``\\n``, at most ``size`` bytes when ``size`` >= 0."""
        limit = -1 if size is None else size
        start = 0
        while True:
            idx = self._buf.find(b"\n", start)
            if idx != -1:
                end = idx + 1
                break
            if 0 <= limit <= len(self._buf):
                end = limit
                break
            start = len(self._buf)
            if not self._pull():
                end = len(self._buf)
                break
        if 0 <= limit < end:
            end = limit
        line, self._buf = self._buf[:end], self._buf[end:]
        return line

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
        try:
            while self._pull():
                self._buf = b""
        except BodyError:
            return False
        self._buf = b""
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
