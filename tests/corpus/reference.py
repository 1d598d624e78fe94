"""A small, strict, slow reference reading of HTTP/1.1 request bytes, for the fuzzer's oracle.

Written from RFC 9112 for the tests only, sharing no code with corral.http (whose readings it
checks): a byte-at-a-time grammar walk, no limits, no policy beyond framing. It answers one
question: which requests (method, target, version, fields, body) do these bytes hold, in
order, before the first byte that breaks the grammar? Where RFC 9112 lets a recipient choose,
it takes the strict choice (no obs-fold, CRLF only, one Content-Length, Transfer-Encoding only
``chunked`` and only in HTTP/1.1, never both framings), so anything corral accepts it must be
able to read the same way.

Fields are reported as corral reports them: names lower-cased, values without surrounding
OWS, in arrival order, names containing ``_`` dropped (corral drops them: they would collide
with ``-`` in a WSGI environ). Trailer fields are checked and discarded.
"""

from __future__ import annotations

from dataclasses import dataclass

TCHAR = frozenset(b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
VCHAR = frozenset(range(0x21, 0x7F))
OBS_TEXT = frozenset(range(0x80, 0x100))
FIELD_VCHAR = VCHAR | OBS_TEXT
HEXDIG = frozenset(b"0123456789abcdefABCDEF")
DIGIT = frozenset(b"0123456789")
WS = frozenset(b" \t")
QDTEXT = frozenset(b"\t \x21") | frozenset(range(0x23, 0x5C)) | frozenset(range(0x5D, 0x7F))
QDTEXT |= OBS_TEXT


class Reject(Exception):
    """The bytes break the grammar here."""


@dataclass(frozen=True, slots=True)
class Message:
    """One request as the reference reads it; ``complete``: its body ended within the bytes."""

    method: bytes
    target: bytes
    version: bytes
    headers: tuple[tuple[bytes, bytes], ...]
    body: bytes
    complete: bool


@dataclass(frozen=True, slots=True)
class Reading:
    messages: tuple[Message, ...]
    rejected: bool  # a grammar error followed the last message
    reason: str = ""


class _Cursor:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def more(self) -> bool:
        return self.pos < len(self.data)

    def need(self, n: int = 1) -> None:
        if self.pos + n > len(self.data):
            raise EOFError

    def peek(self) -> int:
        self.need()
        return self.data[self.pos]

    def take_while(self, allowed: frozenset[int]) -> bytes:
        start = self.pos
        while True:
            self.need()
            if self.data[self.pos] not in allowed:
                return self.data[start : self.pos]
            self.pos += 1

    def expect(self, literal: bytes, what: str) -> None:
        for byte in literal:
            if self.peek() != byte:
                raise Reject(f"expected {what}")
            self.pos += 1

    def crlf(self, what: str) -> None:
        self.expect(b"\r\n", f"CRLF after {what}")


def read(data: bytes) -> Reading:
    """Every request in ``data`` until the bytes run out or break the grammar."""
    cur = _Cursor(data)
    messages: list[Message] = []
    while True:
        try:
            while cur.data[cur.pos : cur.pos + 2] == b"\r\n":  # RFC 9112 §2.2
                cur.pos += 2
            if not cur.more():
                return Reading(tuple(messages), False)
            method, target, version, fields = _head(cur)
        except EOFError:
            return Reading(tuple(messages), False, "head incomplete")
        except Reject as exc:
            return Reading(tuple(messages), True, str(exc))
        try:
            framing = _framing(version, fields)
        except Reject as exc:
            return Reading(tuple(messages), True, str(exc))
        headers = tuple((n, v) for n, v in fields if b"_" not in n)
        body, complete, error = _body(cur, framing)
        messages.append(Message(method, target, version, headers, body, complete))
        if error or not complete:
            return Reading(tuple(messages), bool(error), error)


def _head(cur: _Cursor) -> tuple[bytes, bytes, bytes, list[tuple[bytes, bytes]]]:
    method = cur.take_while(TCHAR)
    if not method:
        raise Reject("method is not a token")
    cur.expect(b" ", "SP after method")
    target = cur.take_while(VCHAR)
    if not target:
        raise Reject("empty request-target")
    cur.expect(b" ", "SP after target")
    cur.expect(b"HTTP/", "HTTP-name")
    major = _digit(cur)
    cur.expect(b".", "dot in HTTP-version")
    version = bytes([major, ord("."), _digit(cur)])
    cur.crlf("request line")
    return method, target, version, _fields(cur)


def _digit(cur: _Cursor) -> int:
    byte = cur.peek()
    if byte not in DIGIT:
        raise Reject("version digit")
    cur.pos += 1
    return byte


def _fields(cur: _Cursor) -> list[tuple[bytes, bytes]]:
    """field-line CRLF ... CRLF; obs-fold (a line starting with SP/HTAB) is refused."""
    fields: list[tuple[bytes, bytes]] = []
    while True:
        if cur.peek() == 13:
            cur.crlf("field section")
            return fields
        name = cur.take_while(TCHAR)
        if not name:
            raise Reject("field name is not a token (or obs-fold)")
        cur.expect(b":", "colon after field name")
        cur.take_while(WS)
        raw = cur.take_while(FIELD_VCHAR | WS)
        cur.crlf("field line")
        fields.append((name.lower(), raw.rstrip(b" \t")))


def _framing(version: bytes, fields: list[tuple[bytes, bytes]]) -> int | None:
    """The Content-Length, or None for chunked; Reject on anything ambiguous."""
    lengths = [v for n, v in fields if n == b"content-length"]
    codings = [c.strip(b" \t").lower() for n, v in fields if n == b"transfer-encoding"
               for c in v.split(b",")]  # fmt: skip
    if codings:
        if lengths:
            raise Reject("both Content-Length and Transfer-Encoding")
        if version != b"1.1":
            raise Reject("Transfer-Encoding outside HTTP/1.1")
        if codings != [b"chunked"]:
            raise Reject("transfer coding other than a single chunked")
        return None
    if len(lengths) > 1:
        raise Reject("more than one Content-Length")
    if not lengths:
        return 0
    if not lengths[0] or any(b not in DIGIT for b in lengths[0]):
        raise Reject("Content-Length is not 1*DIGIT")
    return int(lengths[0])


def _body(cur: _Cursor, framing: int | None) -> tuple[bytes, bool, str]:
    """(body, complete, error reason or "")."""
    if framing is not None:
        fixed = cur.data[cur.pos : cur.pos + framing]
        cur.pos += len(fixed)
        return fixed, len(fixed) == framing, ""
    body = bytearray()
    try:
        _chunked(cur, body)
    except EOFError:
        return bytes(body), False, ""
    except Reject as exc:
        return bytes(body), False, str(exc)
    return bytes(body), True, ""


def _chunked(cur: _Cursor, body: bytearray) -> None:
    while True:
        size_text = cur.take_while(HEXDIG)
        if not size_text:
            raise Reject("chunk-size is not HEXDIG")
        _chunk_ext(cur)
        cur.crlf("chunk-size line")
        size = int(size_text, 16)
        if size == 0:
            _fields(cur)  # the trailer section, discarded
            return
        piece = cur.data[cur.pos : cur.pos + size]
        body += piece  # a partial chunk is still body read so far
        cur.pos += len(piece)
        cur.need(size - len(piece))
        cur.crlf("chunk-data")


def _chunk_ext(cur: _Cursor) -> None:
    """*( BWS ";" BWS ext-name [ BWS "=" BWS ( token / quoted-string ) ] )"""
    while True:
        save = cur.pos
        cur.take_while(WS)
        if cur.peek() != ord(";"):
            cur.pos = save
            return
        cur.pos += 1
        cur.take_while(WS)
        if not cur.take_while(TCHAR):
            raise Reject("chunk-ext name")
        save = cur.pos
        cur.take_while(WS)
        if cur.peek() != ord("="):
            cur.pos = save
            continue
        cur.pos += 1
        cur.take_while(WS)
        if cur.peek() == ord('"'):
            _quoted(cur)
        elif not cur.take_while(TCHAR):
            raise Reject("chunk-ext value")


def _quoted(cur: _Cursor) -> None:
    cur.pos += 1
    while True:
        byte = cur.peek()
        cur.pos += 1
        if byte == ord('"'):
            return
        if byte == ord("\\"):
            escaped = cur.peek()
            if escaped not in WS and escaped not in FIELD_VCHAR:
                raise Reject("quoted-pair")
            cur.pos += 1
        elif byte not in QDTEXT:
            raise Reject("quoted-string character")
