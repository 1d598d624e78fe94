"""Strict decoder for the chunked transfer coding (RFC 9112 §7.1).

Theory of operation: llhttp only ever sees request heads (see connection.py), so the body is
framed here, where we control exactly which bytes belong to it and can stop at its end
without parsing the next pipelined request. The decoder works on the connection's
``bytearray`` buffer and consumes what it used: one regex per chunk-size line, one slice
per chunk of data, one regex per trailer line. Never a per-byte loop.

Strictness: chunk-size is hex digits only (at most 16 significant, else 400: overflow
guard); chunk extensions must match the RFC grammar and stay under
``Limits.chunk_extension`` (400); every line ends in CRLF (bare CR/LF -> 400); the CRLF
after chunk data is mandatory; trailer fields are syntax-checked and discarded (RFC 9110
§6.5.1 lets a recipient drop them), bounded by the header limits (431). The running body
size is checked against ``max_body_size`` at each chunk-size line, before its data is read
(413).
"""

from __future__ import annotations

import re
from typing import Final

from corral.http.checks import TOKEN
from corral.http.events import Data, EndOfMessage, ProtocolError
from corral.http.limits import Limits

_QUOTED: Final = rb'"(?:[\t \x21\x23-\x5b\x5d-\x7e\x80-\xff]|\\[\t \x21-\x7e\x80-\xff])*"'
_EXT: Final = (
    rb"(?:[ \t]*;[ \t]*" + TOKEN + rb"(?:[ \t]*=[ \t]*(?:" + TOKEN + rb"|" + _QUOTED + rb"))?)*"
)
_SIZE_LINE: Final = re.compile(rb"([0-9A-Fa-f]+)(" + _EXT + rb")")
_TRAILER_LINE: Final = re.compile(TOKEN + rb":[ \t]*[\t\x20-\x7e\x80-\xff]*")
_MAX_SIZE_DIGITS: Final = 16  # 16 hex digits fill 64 bits; more can only be an attack

_SIZE, _DATA, _DATA_END, _TRAILER, _DONE = range(5)


class ChunkedDecoder:
    """Incremental chunked body decoder; ``step`` returns an event or None (need data)."""

    __slots__ = ("_left", "_limits", "_state", "_total", "_trailer_bytes", "_trailer_fields")

    def __init__(self, limits: Limits) -> None:
        self._limits = limits
        self._state = _SIZE
        self._left = 0  # data bytes left in the current chunk
        self._total = 0  # body bytes announced so far
        self._trailer_bytes = 0
        self._trailer_fields = 0

    @property
    def done(self) -> bool:
        return self._state == _DONE

    def step(self, buf: bytearray) -> Data | EndOfMessage | None:
        """Consume from ``buf``; return the next event, or None when more bytes are needed."""
        while True:
            state = self._state
            if state == _DATA:
                return self._data(buf)
            if state == _SIZE:
                if not self._size_line(buf):
                    return None
            elif state == _DATA_END:
                if not self._data_end(buf):
                    return None
            elif state == _TRAILER:
                if not self._trailer_line(buf):
                    return None
                if self._state == _DONE:
                    return EndOfMessage()
            else:
                return None

    def _line(self, buf: bytearray, limit: int, status: int) -> bytes | None:
        """Pop one CRLF-terminated line (without CRLF) from ``buf``, or None if incomplete."""
        i = buf.find(b"\n")
        if i < 0:
            pending = len(buf) - (buf[-1:] == b"\r")
            if pending > limit:
                raise ProtocolError(status, "chunked line too long")
            return None
        if i == 0 or buf[i - 1] != 13:
            raise ProtocolError(400, "bare LF in chunked body")
        if i - 1 > limit:
            raise ProtocolError(status, "chunked line too long")
        line = bytes(buf[: i - 1])
        del buf[: i + 1]
        if b"\r" in line:
            raise ProtocolError(400, "bare CR in chunked body")
        return line

    def _size_line(self, buf: bytearray) -> bool:
        limits = self._limits
        line = self._line(buf, _MAX_SIZE_DIGITS + 2 + limits.chunk_extension, 400)
        if line is None:
            return False
        m = _SIZE_LINE.fullmatch(line)
        if m is None:
            raise ProtocolError(400, "invalid chunk size line")
        if len(m[2]) > limits.chunk_extension:
            raise ProtocolError(400, "chunk extension too long")
        digits = m[1].lstrip(b"0")
        if len(digits) > _MAX_SIZE_DIGITS:
            raise ProtocolError(400, "chunk size overflow")
        size = int(digits or b"0", 16)
        self._total += size
        if self._total > limits.max_body_size:
            raise ProtocolError(413, "request body too large")
        self._left = size
        self._state = _DATA if size else _TRAILER
        return True

    def _data(self, buf: bytearray) -> Data | None:
        if not buf:
            return None
        left = self._left
        data = take(buf, left)
        self._left = left - len(data)
        if not self._left:
            self._state = _DATA_END
        return Data(data)

    def _data_end(self, buf: bytearray) -> bool:
        if len(buf) < 2:
            if bytes(buf[:1]) not in (b"", b"\r"):
                raise ProtocolError(400, "missing CRLF after chunk data")
            return False
        if buf[:2] != b"\r\n":
            raise ProtocolError(400, "missing CRLF after chunk data")
        del buf[:2]
        self._state = _SIZE
        return True

    def _trailer_line(self, buf: bytearray) -> bool:
        limits = self._limits
        line = self._line(buf, limits.header_field, 431)
        if line is None:
            if self._trailer_bytes + len(buf) > limits.header_section:
                raise ProtocolError(431, "trailer section too large")
            return False
        if not line:
            self._state = _DONE
            return True
        if _TRAILER_LINE.fullmatch(line) is None:
            raise ProtocolError(400, "invalid trailer field")
        self._trailer_fields += 1
        self._trailer_bytes += len(line) + 2
        if self._trailer_fields > limits.header_fields:
            raise ProtocolError(431, "too many trailer fields")
        if self._trailer_bytes > limits.header_section:
            raise ProtocolError(431, "trailer section too large")
        return True


def take(buf: bytearray, n: int) -> bytes:
    """Remove and return up to ``n`` bytes from the front of ``buf``."""
    if len(buf) <= n:
        data = bytes(buf)
        buf.clear()
    else:
        data = bytes(buf[:n])
        del buf[:n]
    return data
