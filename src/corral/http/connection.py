"""Sans-IO HTTP/1.1 server connection: bytes in, events out; response bytes back.

Theory of operation
-------------------
One ``Connection`` per TCP connection. The I/O layer calls ``receive_data`` with what it
read (``b""`` for EOF) and pulls events with ``next_event``. Received bytes live in one
``bytearray``; each event consumes from its front, so nothing is ever parsed ahead of the
cycle that owns it.

Request states (``next_event``)::

    HEAD ----head ok----> BODY_LENGTH | BODY_CHUNKED --body done--> DONE (returns PAUSED)
    DONE --start_next_cycle() True--> HEAD, or DISCARD (drops an unread body) --> HEAD
    DONE --start_next_cycle() False--> CLOSED;  HEAD + clean EOF --> CLOSED
    any --ProtocolError--> ERROR (every later next_event raises the same error)

The head is framed here, not by llhttp: we look for the CRLFCRLF that ends it. When the
whole head is in the buffer (the common case) a few C-level scans (``find``/``count``) prove
no limit is exceeded and the head goes to llhttp in one ``feed_data`` call. Otherwise
``_scan_head`` walks the head line by line as bytes arrive, so an endless line or head is
refused once it passes its limit (414/431) instead of being buffered, and a bare LF is
refused at once. Both paths raise the same errors in the same order, so the outcome does not
depend on how the bytes were split.

A head parser (``headfields.HeadParser``, one per connection) then gives llhttp's verdict on
the head and splits its field lines: ``headfields.PythonHead`` (httptools) or the optional C
``native.NativeHead``, chosen by the ``http_parser`` setting, with the same fields and the same
errors for every head. llhttp only ever sees heads: bodies are framed in Python (Content-Length
by slicing, chunked by ``ChunkedDecoder``), so a body can never run into the next pipelined
request. Semantic checks llhttp does not make live in ``checks.py``.

Response side: ``send_response``/``send_data``/``send_eom`` return the bytes to write; the
framing is decided once by ``writer.build_head``.

Documented choices (docs/http.md): any token is a method and reaches the app (RFC 9110
§9.1; llhttp's fixed list is worked around in ``headfields.PythonHead.validate`` and its C
twin); duplicate Content-Length
(even identical) -> 400; a repeated ``SINGLETON_FIELDS`` field -> 400, other repeated fields
are joined; ``Transfer-Encoding`` whose final coding is not chunked (e.g. ``gzip`` alone) ->
400 (RFC 9112 §6.3 MUST), chunked after another coding -> 501; ``Upgrade`` is ignored (RFC
9110 §7.8 lets a server do so) and CONNECT gets 501; non-ASCII bytes or a malformed %-escape
in the target -> 400; an empty Host -> 400 unless the target is in absolute-form (RFC 9110
§4.2.1); an HTTP-version other than ``HTTP/DIGIT.DIGIT`` -> 400, a well-formed one other than
1.0/1.1 -> 505; up to 8 empty lines before a request line are skipped (RFC 9112
§2.2), more -> 400; trailer fields are discarded; ``error_response`` after the response
started returns b"" (all that is left is to close); ``send_response`` refuses 1xx statuses
(interim responses are only ``send_continue``'s business).
"""

from __future__ import annotations

from typing import Final

from corral.http import checks, native, writer
from corral.http.chunked import ChunkedDecoder, take
from corral.http.events import (
    CLOSED,
    NEED_DATA,
    PAUSED,
    Data,
    EndOfMessage,
    LocalProtocolError,
    ProtocolError,
    Request,
    Sentinel,
)
from corral.http.headfields import SINGLETON_FIELDS, Fields
from corral.http.limits import Limits

__all__ = ["SINGLETON_FIELDS", "Connection"]  # SINGLETON_FIELDS lives in headfields.py now

_HEAD, _BODY_LENGTH, _BODY_CHUNKED, _DONE, _DISCARD, _CLOSED, _ERROR = range(7)
_MAX_EMPTY_LINES: Final = 8
_DEFAULT_LIMITS: Final = Limits()
_TOKEN_START: Final = frozenset(
    bytes([b])
    for b in b"\r!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
)
_CONTINUE: Final = b"HTTP/1.1 100 Continue\r\n\r\n"
_EOM: Final = EndOfMessage()  # no fields: one instance serves every cycle
# Heads that passed every check, by their exact bytes, one table per ``Limits`` (only
# ``max_body_size`` can change a verdict after framing, but a table per Limits is simplest).
# A verdict depends on nothing but the head's bytes and the limits, so a hit returns what a
# miss would: the same ``Request`` object (read-only; its lists are shared too). Clients send
# the same head again and again (load generators, health checks, API clients on keep-alive).
# Bounded: heads up to _HEAD_CACHE_BYTES bytes, _HEAD_CACHE_MAX of them, emptied when full.
_HEADS: dict[Limits, dict[bytes, Request]] = {}
_HEAD_CACHE_MAX: Final = 256
_HEAD_CACHE_BYTES: Final = 2048


class Connection:
    """One HTTP/1.1 server connection (see the module docstring for the state machine)."""

    def __init__(self, limits: Limits = _DEFAULT_LIMITS, native_head: bool | None = None) -> None:
        """``native_head``: the C head parser (True), the Python one (False), or the C one
        when it was built (None, ``http_parser = auto``)."""
        self._limits = limits
        self._head = native.head_parser(native.AVAILABLE if native_head is None else native_head)
        self._buf = bytearray()
        self._received = 0  # bytes passed to receive_data since take_received
        self._eof = False
        self._state = _HEAD
        self._error: ProtocolError | None = None
        self._request: Request | None = None
        self._body_left = 0  # Content-Length bytes not yet returned (or to discard)
        self._chunked: ChunkedDecoder | None = None
        self._close_after = False
        heads = _HEADS.get(limits)
        if heads is None:
            heads = _HEADS[limits] = {}
        self._heads = heads
        self._reset_scan()
        self._reset_response()

    # ------------------------------------------------------------------ receiving side

    def receive_data(self, data: bytes) -> None:
        """Add bytes read from the peer; ``b""`` means the peer sent EOF."""
        if data:
            self._received += len(data)
            if self._state < _CLOSED:  # after an error or close, input is only drained
                self._buf += data
        else:
            self._eof = True

    def take_received(self) -> int:
        """Bytes received (``receive_data``) since the last call: heads, bodies, framing and
        anything pipelined or drained, i.e. what the socket delivered. The I/O layer adds it
        to ``corral_bytes_received_total`` when a request finishes."""
        received, self._received = self._received, 0
        return received

    @property
    def buffered_bytes(self) -> int:
        """Received bytes not yet returned as events (a backpressure hint)."""
        return len(self._buf)

    @property
    def request(self) -> Request | None:
        """The current cycle's request head, once received."""
        return self._request

    def next_event(self) -> Request | Data | EndOfMessage | Sentinel:
        """The next event, or NEED_DATA / PAUSED / CLOSED; raises ProtocolError."""
        if self._error is not None:
            raise self._error
        state = self._state
        if state == _BODY_LENGTH and not self._body_left:  # a bodiless request: its end
            self._state = _DONE
            return _EOM
        if state == _HEAD and not self._buf and not self._eof:  # nothing pipelined
            return NEED_DATA
        try:
            return self._next_event()
        except ProtocolError as exc:
            self._fail(exc)
            raise

    def _fail(self, exc: ProtocolError) -> None:
        self._error, self._state = exc, _ERROR
        self._buf.clear()

    def _next_event(self) -> Request | Data | EndOfMessage | Sentinel:
        state = self._state
        if state == _HEAD:
            return self._next_head()
        if state == _BODY_LENGTH:
            return self._next_length_body()
        if state == _BODY_CHUNKED:
            return self._next_chunked_body()
        if state == _DONE:
            return PAUSED
        if state == _DISCARD:
            return self._discard()
        return CLOSED

    def _next_length_body(self) -> Data | EndOfMessage | Sentinel:
        left = self._body_left
        if not left:
            self._state = _DONE
            return _EOM
        buf = self._buf
        if not buf:
            if self._eof:
                raise ProtocolError(400, "connection closed in request body")
            return NEED_DATA
        data = take(buf, left)
        self._body_left = left - len(data)
        return Data(data)

    def _next_chunked_body(self) -> Data | EndOfMessage | Sentinel:
        assert self._chunked is not None
        event = self._chunked.step(self._buf)
        if event is None:
            if self._eof:
                raise ProtocolError(400, "connection closed in request body")
            return NEED_DATA
        if type(event) is EndOfMessage:
            self._state = _DONE
        return event

    def _discard(self) -> Request | Data | EndOfMessage | Sentinel:
        """Drop the rest of an unread Content-Length body, then read the next head."""
        buf = self._buf
        n = min(self._body_left, len(buf))
        del buf[:n]
        self._body_left -= n
        if self._body_left:
            return CLOSED if self._eof else NEED_DATA
        self._state = _HEAD
        return self._next_head()

    # ------------------------------------------------------------------ request head

    def _reset_scan(self) -> None:
        self._scan = 0  # bytes of the head already examined by _scan_head
        self._line_start = 0
        self._lines = 0
        self._fields = 0
        self._empty_lines = 0

    def _next_head(self) -> Request | Sentinel:
        buf = self._buf
        if not buf:  # the usual call after a response: nothing pipelined
            return CLOSED if self._eof else NEED_DATA
        if self._line_start == 0 and buf[:2] == b"\r\n":
            self._skip_empty_lines(buf)
            if not buf:
                return CLOSED if self._eof else NEED_DATA
        end = -1
        if self._scan == 0:
            end = buf.find(b"\r\n\r\n")
            if end >= 0:
                end = end + 4 if self._quick_ok(buf, end + 4) else -1
        if end < 0:
            end = self._scan_head(buf)
            if end < 0:
                if self._eof:
                    raise ProtocolError(400, "connection closed in request head")
                return NEED_DATA
        if end == len(buf):  # the usual case: exactly one head buffered
            head = bytes(buf)
            buf.clear()
        else:
            head = bytes(buf[:end])
            del buf[:end]
        if self._line_start or self._scan or self._empty_lines:  # the line scanner ran
            self._reset_scan()
        return self._parse_head(head)

    def _skip_empty_lines(self, buf: bytearray) -> None:
        """RFC 9112 §2.2: ignore a few CRLFs before a request line (bounded)."""
        self._scan = 0
        while buf[:2] == b"\r\n":
            del buf[:2]
            self._empty_lines += 1
            if self._empty_lines > _MAX_EMPTY_LINES:
                raise ProtocolError(400, "too many empty lines before request")

    def _quick_ok(self, buf: bytearray, n: int) -> bool:
        """True when the complete head of ``n`` bytes cannot break a limit nor hold a bare
        LF; otherwise ``_scan_head`` decides precisely (and raises)."""
        limits = self._limits
        if n > limits.header_section:
            return False
        first = buf.find(b"\r\n")
        if first > limits.request_line or n - first - 4 > limits.header_field:
            return False
        lines = buf.count(b"\n", 0, n)
        return lines - 2 <= limits.header_fields and buf.count(b"\r\n", 0, n) == lines

    def _scan_head(self, buf: bytearray) -> int:
        """Check complete lines since the last call; return the head length, -1 if
        incomplete. Raises on a bare LF or a limit passed, even mid-line."""
        i = buf.find(b"\n", self._scan)
        while i >= 0:
            start = self._line_start
            cr = i > start and buf[i - 1] == 13
            self._check_line(i - start - cr, bytes(buf[start : i - cr]) if cr else b"")
            self._check_section(i + 1)
            if not cr:
                raise ProtocolError(400, "bare LF in request head")
            if i - start == 1:  # the empty line that ends the head
                return i + 1
            self._line_start = i + 1
            i = buf.find(b"\n", i + 1)
        self._scan = len(buf)
        self._check_partial(len(buf) - self._line_start - (buf[-1:] == b"\r"))
        self._check_section(len(buf))
        return -1

    def _check_line(self, length: int, line: bytes) -> None:
        limits = self._limits
        if self._lines == 0:
            self._check_request_start()
            if length > limits.request_line:
                raise ProtocolError(414, "request line too long")
            if line:
                checks.parse_request_line(line)  # fail early on garbage
        elif length > limits.header_field:
            raise ProtocolError(431, "header field too long")
        elif length:
            self._fields += 1
            if self._fields > limits.header_fields:
                raise ProtocolError(431, "too many header fields")
        self._lines += 1

    def _check_partial(self, length: int) -> None:
        if self._lines == 0:
            self._check_request_start()
            if length > self._limits.request_line:
                raise ProtocolError(414, "request line too long")
        elif length > self._limits.header_field:
            raise ProtocolError(431, "header field too long")

    def _check_request_start(self) -> None:
        # A method starts with a token character: refuse e.g. a TLS ClientHello at its
        # first byte. CR is let through: it may begin a CRLF not yet skipped.
        if bytes(self._buf[:1]) not in _TOKEN_START:
            raise ProtocolError(400, "malformed request line")

    def _check_section(self, size: int) -> None:
        if size > self._limits.header_section:
            raise ProtocolError(431, "request head too large")

    def _parse_head(self, head: bytes) -> Request:
        request = self._heads.get(head)
        if request is None:  # not seen before: every check runs (see _HEADS)
            first = head.find(b"\r\n")
            rl = checks.parse_request_line(head[:first])
            request = self._build_request(rl, self._head.fields(head, rl.method))
            if request.chunked or request.content_length or not request.keep_alive:
                self._head.body_follows()
            if len(head) <= _HEAD_CACHE_BYTES:
                heads = self._heads
                if len(heads) >= _HEAD_CACHE_MAX:
                    heads.clear()
                heads[head] = request
        self._request = request
        if request.chunked:
            self._chunked = ChunkedDecoder(self._limits)
            self._state = _BODY_CHUNKED
        else:
            self._body_left = request.content_length or 0
            self._state = _BODY_LENGTH
        return request

    def _build_request(self, rl: checks.RequestLine, fields: Fields) -> Request:
        http11 = rl.version == "1.1"
        hosts: list[bytes] = []
        length: int | None = None
        te: list[bytes] = []
        conn: list[bytes] = []
        expect: list[bytes] = []
        singles: list[bytes] | None = None
        headers, special, dropped = fields
        for name, value in special:
            if name == b"host":
                hosts.append(value)
            elif name == b"content-length":
                length = checks.parse_content_length(value, self._limits.max_body_size)
            elif name == b"transfer-encoding":
                te.append(value)
            elif name == b"connection":
                conn.extend(checks.split_list(value))
            elif name == b"expect":
                expect.append(value)
            elif singles is None:  # most requests carry none: no list to build
                singles = [name]
            else:
                singles.append(name)
        if singles is not None and len(singles) > 1:
            _check_singletons(singles)
        host = _check_hosts(hosts, http11, rl.host is not None)
        chunked = _check_framing(te, length, http11)
        keep_alive = b"close" not in conn and (http11 or b"keep-alive" in conn)
        expect_continue = http11 and _check_expect(expect)
        # Positional: a slots dataclass's __init__ with 13 keywords costs several times more.
        return Request(
            rl.method,
            rl.target,
            rl.path,
            rl.query,
            rl.version,
            headers,
            rl.host if rl.host is not None else host,  # host
            keep_alive,
            None if chunked else length,  # content_length
            chunked,
            expect_continue,
            rl.scheme,
            dropped,  # dropped_headers
        )

    # ------------------------------------------------------------------ cycle control

    @property
    def keep_alive(self) -> bool:
        """Whether the connection will be reused after the current cycle."""
        if self._error is not None or self._close_after or self._resp_close:
            return False
        return self._request is None or self._request.keep_alive

    def take_buffered(self) -> bytes:
        """Hand over what was received past this request's head (a WebSocket upgrade): the
        connection is done with HTTP afterwards and every later ``next_event`` says CLOSED."""
        data, self._buf, self._state = bytes(self._buf), bytearray(), _CLOSED
        return data

    def close_after_cycle(self) -> None:
        """Server is draining: this cycle's response says ``Connection: close``."""
        self._close_after = True

    def start_next_cycle(self) -> bool:
        """After our response: reset for the next request, or False to close instead."""
        if self._state in (_ERROR, _CLOSED) or not self._resp_done or not self.keep_alive:
            self._state = _CLOSED if self._state != _ERROR else _ERROR
            return False
        if self._state != _DONE and not self._drop_unread_body():
            self._state = _CLOSED
            return False
        if self._state == _DONE:
            self._state = _HEAD
        self._request = None
        self._chunked = None
        self._reset_response()
        return True

    def _drop_unread_body(self) -> bool:
        """Arrange to discard the rest of an unread Content-Length body (bounded by
        ``drain_unread_body``); an unfinished chunked body has no known size: close."""
        if self._state != _BODY_LENGTH or self._body_left > self._limits.drain_unread_body:
            return False
        self._state = _DISCARD
        return True

    def _unread_body_forces_close(self, request: Request) -> bool:
        """Decided when the response head is written, so that it can say ``close``
        (RFC 9110 §10.1.1: a server answering before reading the whole content says
        whether it will close or read and discard it)."""
        state = self._state
        if state == _BODY_CHUNKED:
            return True  # remaining size unknown
        if state != _BODY_LENGTH or not self._body_left:
            return False
        if request.expect_continue and not self._continue_sent:
            return True  # the client may never send a body it was not invited to send
        return self._body_left > self._limits.drain_unread_body

    # ------------------------------------------------------------------ sending side

    def _reset_response(self) -> None:
        self._resp_started = False
        self._resp_done = False
        self._resp_close = False
        self._framing = writer.NO_BODY
        self._resp_length = 0
        self._resp_sent = 0
        self._continue_sent = False

    @property
    def response_started(self) -> bool:
        return self._resp_started

    def send_continue(self) -> bytes:
        """``100 Continue`` once, if the request asked for it and no response started."""
        request = self._request
        if (
            request is None
            or not request.expect_continue
            or self._resp_started
            or self._continue_sent
            or self._error is not None
            or self._state not in (_BODY_LENGTH, _BODY_CHUNKED)  # body already complete
        ):
            return b""
        self._continue_sent = True
        return _CONTINUE

    def send_response(
        self, status: int, headers: list[tuple[bytes, bytes]], reason: bytes | None = None
    ) -> bytes:
        """Serialise the response head; returns the bytes to write."""
        request = self._request
        if request is None or self._resp_started or self._error is not None:
            raise LocalProtocolError("no request to respond to, or response already started")
        head = writer.build_head(
            status,
            headers,
            reason,
            head_request=request.method == b"HEAD",
            http11=request.http_version == "1.1",
            keep_alive=self.keep_alive and not self._unread_body_forces_close(request),
        )
        self._resp_started = True
        self._resp_close = head.close
        self._framing = head.framing
        self._resp_length = head.content_length
        return head.data

    def send_data(self, data: bytes) -> bytes:
        """Frame one piece of body; b"" when the response has no body."""
        if not self._resp_started or self._resp_done:
            raise LocalProtocolError("send_data outside a response body")
        framing = self._framing
        if framing == writer.NO_BODY or not data:
            return b""
        if framing == writer.CHUNKED:
            return b"%x\r\n%s\r\n" % (len(data), data)
        if framing == writer.LENGTH:
            self._resp_sent += len(data)
            if self._resp_sent > self._resp_length:
                self._resp_close = True
                raise LocalProtocolError("body longer than Content-Length")
        return data

    def account_data(self, count: int) -> None:
        """Count ``count`` body bytes the caller sends itself (``os.sendfile``) instead of
        passing them through ``send_data``; only a Content-Length body can be sent that way."""
        if not self._resp_started or self._resp_done or self._framing != writer.LENGTH:
            raise LocalProtocolError("account_data outside a Content-Length response body")
        self._resp_sent += count
        if self._resp_sent > self._resp_length:
            self._resp_close = True
            raise LocalProtocolError("body longer than Content-Length")

    def send_eom(self) -> bytes:
        """End the response body; a short Content-Length body forces a close."""
        if not self._resp_started or self._resp_done:
            raise LocalProtocolError("send_eom outside a response body")
        self._resp_done = True
        if self._framing == writer.CHUNKED:
            return b"0\r\n\r\n"
        if self._framing == writer.LENGTH and self._resp_sent < self._resp_length:
            self._resp_close = True
        return b""

    def error_response(self, exc: ProtocolError) -> bytes:
        """A complete response for ``exc`` with ``Connection: close`` (b"" if a response
        already started: then the only thing left to do is close)."""
        if self._error is None:
            self._fail(exc)
        started = self._resp_started
        self._resp_started = self._resp_done = self._resp_close = True
        if started:
            return b""
        body = b"%d %s: %s\n" % (exc.status, writer.phrase(exc.status), exc.reason.encode())
        request = self._request
        return writer.error_head(
            exc.status, body, head_request=request is not None and request.method == b"HEAD"
        )


def _check_hosts(hosts: list[bytes], http11: bool, absolute_form: bool) -> bytes:
    """RFC 9112 §3.2: HTTP/1.1 needs exactly one valid Host; HTTP/1.0 at most one.

    An empty Host makes the target an ``http`` URI with an empty host, which a recipient
    MUST reject (RFC 9110 §4.2.1); only absolute-form, whose authority replaces Host
    (RFC 9112 §3.2.2), leaves an empty one without effect.
    """
    if len(hosts) > 1 or (http11 and not hosts):
        raise ProtocolError(400, "missing or duplicate Host header")
    if not hosts:
        return b""
    if not hosts[0] and not absolute_form:
        raise ProtocolError(400, "empty Host header")
    return checks.check_host(hosts[0])


def _check_singletons(names: list[bytes]) -> None:
    """Refuse a repeated ``SINGLETON_FIELDS`` field (see there why)."""
    if len(set(names)) != len(names):
        dup = next(name for name in names if names.count(name) > 1)
        raise ProtocolError(400, f"duplicate {dup.decode('ascii')} header")


def _check_framing(te: list[bytes], length: int | None, http11: bool) -> bool:
    """RFC 9112 §6.1-6.3; returns whether the body is chunked."""
    if not te:
        return False
    if not http11:
        raise ProtocolError(400, "Transfer-Encoding in an HTTP/1.0 request")
    if length is not None:
        raise ProtocolError(400, "both Transfer-Encoding and Content-Length")
    checks.check_transfer_encoding(b", ".join(te))
    return True


def _check_expect(values: list[bytes]) -> bool:
    """RFC 9110 §10.1.1: only 100-continue is known; anything else -> 417."""
    if not values:
        return False
    if len(values) == 1 and values[0].lower() == b"100-continue":
        return True
    raise ProtocolError(417, "unsupported expectation")
