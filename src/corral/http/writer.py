"""Response head serialisation and framing decisions (RFC 9110 §6, RFC 9112 §4, §6).

Theory of operation: ``build_head`` turns the app's status and headers into the bytes of the
response head and a ``Framing`` decision the connection applies to the body:

* The app's Content-Length (digits only) wins; otherwise chunked for HTTP/1.1 requests;
  otherwise (HTTP/1.0) the body is delimited by closing the connection.
* No body for HEAD, 204 and 304 (RFC 9110 §6.4.1). Content-Length is kept for HEAD and 304
  (it describes the would-be body) and dropped for 204 (RFC 9110 §8.6 forbids it).
* Hop-by-hop headers are the server's business (PEP 3333 forbids apps to set them): the app's
  Connection, Keep-Alive, TE, Trailer, Transfer-Encoding, Upgrade and Proxy-Connection are
  dropped, except that an app's ``Connection: close`` is honoured by closing after the
  response. Dropping the app's Transfer-Encoding is safe because the app hands us unframed
  bytes; we frame them ourselves.
* ``Date`` (RFC 9110 §6.6.1, formatted once per second) and ``Server: corral`` are added
  unless the app set them.

Validation is done on whole joined strings (two regex scans for all headers), not per byte,
and only once per distinct (status, reason, headers): the validated, serialised block is
cached (bounded), and only Date, framing and Connection are added per response.
"""

from __future__ import annotations

import re
import time
from email.utils import formatdate
from http import HTTPStatus
from typing import Final

from corral.http.checks import TOKEN, split_list
from corral.http.events import LocalProtocolError

NO_BODY, LENGTH, CHUNKED, UNTIL_CLOSE = range(4)

_HOP_BY_HOP: Final = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"proxy-connection",
    }
)
_NAMES: Final = re.compile(TOKEN + rb"(?:\n" + TOKEN + rb")*")
_BAD_VALUE: Final = re.compile(rb"[\r\n\x00]")
_DIGITS: Final = re.compile(rb"[0-9]+")
# RFC 9110 §15 names; older Pythons still carry the RFC 7231 ones for these.
_RFC9110_PHRASES: Final = {
    413: "Content Too Large",
    414: "URI Too Long",
    422: "Unprocessable Content",
}
_PHRASES: Final = {
    s.value: _RFC9110_PHRASES.get(s.value, s.phrase).encode("ascii") for s in HTTPStatus
}
_STATUS_LINES: Final = {
    code: b"HTTP/1.1 %d %s\r\n" % (code, phrase) for code, phrase in _PHRASES.items()
}
SERVER: Final = b"corral"

_date_second = -1
_date_line = b""


def date_line() -> bytes:
    """``Date: ...\\r\\n`` for the current second, formatted at most once per second."""
    global _date_second, _date_line
    now = int(time.time())
    if now != _date_second:
        _date_line = b"Date: " + formatdate(now, usegmt=True).encode("ascii") + b"\r\n"
        _date_second = now
    return _date_line


def phrase(status: int) -> bytes:
    return _PHRASES.get(status, b"Unknown")


class Head:
    """A serialised response head and the framing its body must follow."""

    __slots__ = ("close", "content_length", "data", "framing")

    def __init__(self, data: bytes, framing: int, content_length: int, close: bool) -> None:
        self.data = data
        self.framing = framing
        self.content_length = content_length
        self.close = close


def validate_headers(headers: list[tuple[bytes, bytes]]) -> None:
    """Names must be RFC 9110 tokens; values must not contain CR, LF or NUL."""
    if not headers:
        return
    try:
        names = b"\n".join([name for name, _ in headers])
        values = b"".join([value for _, value in headers])
    except TypeError as exc:
        raise LocalProtocolError("header names and values must be bytes") from exc
    # One regex over all names; the count catches a name that itself contains "\n".
    if _NAMES.fullmatch(names) is None or names.count(b"\n") != len(headers) - 1:
        raise LocalProtocolError(f"invalid header name in {names!r}")
    if _BAD_VALUE.search(values) is not None:
        raise LocalProtocolError("header value contains CR, LF or NUL")


def _status_line(status: int, reason: bytes | None) -> bytes:
    if not 200 <= status <= 999:
        raise LocalProtocolError(f"status {status} cannot be sent as a final response")
    if reason is None:
        line = _STATUS_LINES.get(status)
        return line if line is not None else b"HTTP/1.1 %d \r\n" % status
    if _BAD_VALUE.search(reason) is not None:
        raise LocalProtocolError("reason phrase contains CR, LF or NUL")
    return b"HTTP/1.1 %d %s\r\n" % (status, reason)


def _content_length(value: bytes, previous: int | None) -> int:
    if _DIGITS.fullmatch(value) is None:
        raise LocalProtocolError(f"invalid Content-Length {value!r}")
    length = int(value)
    if previous is not None and previous != length:
        raise LocalProtocolError("conflicting Content-Length headers")
    return length


class _Block:
    """What ``build_head`` learns from one (status, reason, headers): the status line and
    the app's headers, validated, filtered and serialised, and the facts framing needs."""

    __slots__ = ("app_close", "data", "length", "seen_date", "seen_server")

    def __init__(
        self, data: bytes, length: int | None, app_close: bool, seen_date: bool, seen_server: bool
    ) -> None:
        self.data = data
        self.length = length
        self.app_close = app_close
        self.seen_date = seen_date
        self.seen_server = seen_server


# Apps answer most requests with a handful of distinct header lists, so the work above is done
# once per distinct (status, reason, headers) and reused. Only successes are cached, and the
# result depends on nothing but the key, so a hit gives exactly what a miss would. Bounded
# because apps can put per-request values (ETag, Set-Cookie) in headers; when full it is
# emptied (one atomic step, safe with app threads) and the steady header lists come back.
_BLOCKS: dict[object, _Block] = {}
_BLOCKS_MAX: Final = 256


def _refuse(self: object, *args: object, **kwargs: object) -> None:
    raise TypeError("FrozenHeaders cannot be changed")


class FrozenHeaders(list[tuple[bytes, bytes]]):
    """A header list that cannot be changed in place, so that what ``build_head`` derives
    from it can be kept on it (``memo``): a hit costs an identity check instead of hashing
    the list. ``corral.wsgi.response`` hands out one per distinct header list of the app.
    Copies (``list(h)``, ``[*h, x]``) are plain lists."""

    __slots__ = ("memo",)

    def __init__(self, items: list[tuple[bytes, bytes]]) -> None:
        super().__init__(items)
        self.memo: tuple[int, bytes | None, _Block] | None = None

    append = extend = insert = pop = remove = clear = sort = reverse = _refuse  # type: ignore[assignment]
    __setitem__ = __delitem__ = __iadd__ = __imul__ = _refuse  # type: ignore[assignment]


def _block(status: int, reason: bytes | None, headers: list[tuple[bytes, bytes]]) -> _Block:
    """The cached ``_Block`` for these arguments, computed on a miss."""
    if type(headers) is FrozenHeaders:
        memo = headers.memo
        if memo is not None and memo[0] == status and memo[1] == reason:
            return memo[2]
        fresh = _serialise(status, reason, headers)
        headers.memo = (status, reason, fresh)
        return fresh
    try:
        key: object = (status, reason, tuple(headers))
        block = _BLOCKS.get(key)
    except TypeError:  # an unhashable item: not cacheable; _serialise reports it
        return _serialise(status, reason, headers)
    if block is None:
        block = _serialise(status, reason, headers)
        if len(_BLOCKS) >= _BLOCKS_MAX:
            _BLOCKS.clear()
        _BLOCKS[key] = block
    return block


def _serialise(status: int, reason: bytes | None, headers: list[tuple[bytes, bytes]]) -> _Block:
    """Validate and serialise what a response head takes from the app (no caching)."""
    validate_headers(headers)
    out = [_status_line(status, reason)]
    length: int | None = None
    app_close = seen_date = seen_server = False
    for name, value in headers:
        lname = name.lower()
        if lname in _HOP_BY_HOP:
            if lname == b"connection" and b"close" in split_list(value):
                app_close = True
            continue
        if lname == b"content-length":
            dup = length is not None
            length = _content_length(value, length)
            if dup or status == 204:
                continue
        elif lname == b"date":
            seen_date = True
        elif lname == b"server":
            seen_server = True
        out.append(name + b": " + value + b"\r\n")
    return _Block(b"".join(out), length, app_close, seen_date, seen_server)


def build_head(
    status: int,
    headers: list[tuple[bytes, bytes]],
    reason: bytes | None,
    *,
    head_request: bool,
    http11: bool,
    keep_alive: bool,
) -> Head:
    """Serialise a response head; ``keep_alive`` is what the cycle allows so far."""
    block = _block(status, reason, headers)
    length = block.length
    out = [block.data]
    framing = _framing(status, length, head_request=head_request, http11=http11)
    if framing == CHUNKED:
        out.append(b"Transfer-Encoding: chunked\r\n")
    elif framing == UNTIL_CLOSE:
        keep_alive = False
    if block.app_close:
        keep_alive = False
    if not block.seen_date:
        out.append(date_line())
    if not block.seen_server:
        out.append(b"Server: corral\r\n")
    if not keep_alive:
        out.append(b"Connection: close\r\n\r\n")
    elif not http11:
        out.append(b"Connection: keep-alive\r\n\r\n")
    else:
        out.append(b"\r\n")
    return Head(b"".join(out), framing, length or 0, not keep_alive)


def _framing(status: int, length: int | None, *, head_request: bool, http11: bool) -> int:
    if head_request or status in (204, 304):
        return NO_BODY
    if length is not None:
        return LENGTH
    return CHUNKED if http11 else UNTIL_CLOSE


def error_head(status: int, body: bytes, *, head_request: bool) -> bytes:
    """A complete small text/plain error response that closes the connection."""
    head = b"".join(
        (
            _STATUS_LINES.get(status, b"HTTP/1.1 %d \r\n" % status),
            b"Content-Type: text/plain; charset=utf-8\r\n",
            b"Content-Length: %d\r\n" % len(body),
            date_line(),
            b"Server: corral\r\nConnection: close\r\n\r\n",
        )
    )
    return head if head_request else head + body
