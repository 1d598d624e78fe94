"""The response producer: one WSGI response turned into send steps, without sockets.

Theory of operation. A pump (the non-blocking loop in ``corral.worker.loop``, the blocking
thread path in ``corral.worker.threaded``) asks the producer for one step at a time and does the
I/O itself:

* ``bytes`` or a ``list`` of buffers: send all of it (the list with ``sendmsg``, so the app's
  chunks go out as they are, never joined into a per-connection copy), then ask again;
* :class:`SendFile` ``(fd, offset, size)``: send that file range with ``os.sendfile``
  (already accounted in the HTTP core with ``Connection.account_data``), then ask again;
* :data:`DONE`: the response is complete; the pump records it and reuses or closes the
  connection (``exchange.must_close`` says close);
* :data:`ABORT`: part of the response went out and it cannot be completed: close the
  connection without another byte.

The producer owns the PEP 3333 rules: the head goes out as late as allowed (with the first
non-empty chunk, or at the end of an empty body); every check that can turn an app's mistake
into a clean 500 (non-bytes items, a body longer than the app's Content-Length, headers the
core refuses) runs before the head is produced; an error before the head gives a 500 (or the
client's body error, 4xx) with ``Connection: close``, an error after it gives ``ABORT``; and
the result's ``close()`` is called exactly once, whatever happened (:meth:`Producer.close`).

Steps are produced only after the previous one was sent completely, so a slow reader holds
one chunk of an iterator, not the whole body. The only system calls here are ``fstat``/
``lseek`` on a file the app handed over, to decide whether ``sendfile`` can serve it.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterable, Iterator
from typing import Any, Final, NamedTuple, Protocol

from corral.http import Connection, LocalProtocolError, ProtocolError, Request, escape_for_log
from corral.wsgi import FileWrapper, InputStream, StartResponse
from corral.wsgi.types import WSGIApp

error_log = logging.getLogger("corral.error")

INTERNAL_ERROR_BODY: Final = b"Internal Server Error\n"
# A list body up to this size is joined with its head into one ``send``: one small copy is
# cheaper than a scatter list. Larger bodies go out as the app's own buffers (issue 16.7: a
# joined copy per slow reader multiplied memory).
JOIN_MAX: Final = 16384


class SendFile(NamedTuple):
    """Send ``size`` bytes of ``fd`` from ``offset`` with ``os.sendfile``."""

    fd: int
    offset: int
    size: int


class _Marker:
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


DONE: Final = _Marker("DONE")
ABORT: Final = _Marker("ABORT")
Step = bytes | list[bytes] | SendFile | _Marker


class Exchange(Protocol):
    """What the producer reads and writes of one request/response exchange (a ``Conn``)."""

    proto: Connection
    request: Request | None
    resp: StartResponse | None
    input: InputStream | None
    body_error: ProtocolError | None
    must_close: bool
    sendfile: bool  # False: serve wsgi.file_wrapper by reading (a TLS connection)


class Producer:
    """Produces the response of each request on one connection, step by step."""

    __slots__ = ("ended", "ex", "file", "iterator", "result")

    def __init__(self, ex: Exchange) -> None:
        self.ex = ex
        self.result: Any = None  # the app's iterable, until closed
        self.iterator: Iterator[bytes] | None = None
        self.file: SendFile | None = None  # a file range still to hand out
        # The end of the message was produced: once the last step is sent, next() is DONE
        # (the loop checks this to save a call per request on its hot path).
        self.ended = True

    def call(self, app: WSGIApp, environ: dict[str, Any]) -> Step:
        """Call the app for the exchange's request; return the first step.

        A list body's length is known, so head, body and end come as this one step (inline:
        it is the hot path)."""
        ex = self.ex
        resp = ex.resp
        assert resp is not None
        try:
            result = app(environ, resp)
        except Exception:
            log_app_error(ex, "error in WSGI app")
            return self.failed()
        self.result = result
        if type(result) is not list or resp.status is None or resp.headers_sent:
            return self._start_iter(result, resp)
        proto = ex.proto
        try:
            length = body_length(result)
            headers = resp.headers
            if resp.content_length is None:
                headers = [*headers, (b"Content-Length", str(length).encode())]
            elif length > resp.content_length and ex.request.method != b"HEAD":  # type: ignore[union-attr]
                raise LocalProtocolError("body longer than the app's Content-Length")
            close_if_body_unsent(ex)
            head = proto.send_response(resp.status_code, headers, resp.reason)
            resp.headers_sent = True
            if length > JOIN_MAX:
                return _buffers(head, proto, result)
            parts = [head]
            parts.extend(map(proto.send_data, result))
            parts.append(proto.send_eom())
        except Exception:
            error_log.exception("invalid response from WSGI app (%s)", describe(ex.request))
            return self.failed()
        return b"".join(parts)  # self.ended is already True: every response leaves it so

    def next(self) -> Step:
        """The step after the previous one went out completely."""
        iterator = self.iterator
        if iterator is not None:
            return self._next_chunk(iterator)
        file = self.file
        if file is not None:
            self.file = None
            return file
        if not self.ended:
            return self._end()
        return DONE

    def write(self, data: bytes) -> bytes:
        """PEP 3333 ``write()``: the bytes to send before it returns (head first if needed)."""
        resp = self.ex.resp
        if resp is None or resp.status is None:
            raise AssertionError("write() called before start_response()")
        if type(data) is not bytes:
            raise TypeError(f"write() takes bytes, not {type(data).__name__}")
        return self._head(len(data)) + self.ex.proto.send_data(data)

    def close(self) -> None:
        """PEP 3333: call the result's ``close()`` exactly once (later calls do nothing)."""
        result, self.result = self.result, None
        self.iterator = None
        close = getattr(result, "close", None)
        if close is not None:
            try:
                close()
            except Exception:
                error_log.exception("error closing the WSGI app's result")

    def failed(self) -> Step:
        """The app (or its response) failed: a 500 or the body's 4xx if nothing went out yet
        (the connection then closes), else ``ABORT``."""
        self.close()
        self.file, self.ended = None, True
        ex = self.ex
        resp = ex.resp
        if resp is not None and resp.headers_sent:
            return ABORT
        ex.must_close = True
        proto = ex.proto
        try:
            if ex.body_error is not None and not proto.response_started:
                data = proto.error_response(ex.body_error)
                status = ex.body_error.status
            else:
                data, status = internal_error(proto), 500
        except Exception:
            error_log.exception("could not send the error response")
            return ABORT
        if resp is not None:
            resp.status_code = status  # for the stats and the access log
        return data

    # ----------------------------------------------------------------- the body kinds

    def _start_iter(self, result: Iterable[bytes], resp: StartResponse) -> Step:
        self.ended = False
        if isinstance(result, FileWrapper) and self.ex.sendfile:
            fd = result.fileno()
            if fd is not None:
                head = self._file_head(fd, resp)
                if head is not None:
                    return head
        try:
            self.iterator = iter(result)
        except Exception:
            error_log.exception("WSGI app returned a non-iterable (%s)", describe(self.ex.request))
            return self.failed()
        return self.next()

    def _next_chunk(self, iterator: Iterator[bytes]) -> Step:
        try:
            for chunk in iterator:
                if type(chunk) is not bytes:  # checked before the head can go out: a clean 500
                    raise TypeError(f"WSGI body items must be bytes, not {type(chunk).__name__}")
                if chunk:
                    head = self._head(len(chunk))
                    data = self.ex.proto.send_data(chunk)
                    if not head:
                        return data
                    return head + data if len(data) <= JOIN_MAX else [head, data]
        except Exception:
            log_app_error(self.ex, "error in WSGI app's response")
            return self.failed()
        self.iterator = None
        return self._end()

    def _end(self) -> Step:
        """The end of the message (and the head, for an empty body)."""
        self.ended = True
        try:
            return self._head() + self.ex.proto.send_eom()
        except Exception:
            error_log.exception("invalid response from WSGI app (%s)", describe(self.ex.request))
            return self.failed()

    def _file_head(self, fd: int, resp: StartResponse) -> bytes | None:
        """The head of a ``sendfile`` response for a regular file of known length, with the
        file range queued (accounted in the core); None: serve the wrapper by iterating."""
        ex = self.ex
        proto = ex.proto
        if resp.headers_sent or resp.status is None or proto.request is None:
            return None
        if resp.status_code in (204, 304) or (
            ex.request is not None and ex.request.method == b"HEAD"
        ):
            return None  # no body goes out: the iterator path frames nothing
        span = _file_span(fd)
        if span is None:
            return None
        offset, remaining = span
        headers = resp.headers
        if resp.content_length is None:
            headers = [*headers, (b"Content-Length", str(remaining).encode())]
        else:
            remaining = min(remaining, resp.content_length)
        if remaining == 0:
            return None
        close_if_body_unsent(ex)
        try:
            head = proto.send_response(resp.status_code, headers, resp.reason)
        except LocalProtocolError:
            return None  # the iterator path reports it (a clean 500)
        resp.headers_sent = True
        proto.account_data(remaining)
        self.file = SendFile(fd, offset, remaining)
        return head

    # ----------------------------------------------------------------- the head

    def _head(self, first_chunk: int = 0) -> bytes:
        """The response head if it has not gone out yet (else b"").

        ``first_chunk`` is the length of the body chunk about to follow: one longer than the
        app's Content-Length is refused here, while a clean 500 is still possible.
        """
        resp = self.ex.resp
        assert resp is not None
        if resp.headers_sent:
            return b""
        if resp.status is None:
            raise RuntimeError("the app produced a body without calling start_response()")
        if resp.content_length is not None:
            self._check_length(first_chunk)
        close_if_body_unsent(self.ex)
        head = self.ex.proto.send_response(resp.status_code, resp.headers, resp.reason)
        resp.headers_sent = True
        return head

    def _check_length(self, length: int) -> None:
        """The Content-Length overrun check made before the head (``call`` inlines it; later
        chunks are checked by the HTTP core's ``send_data``). HEAD sends no body: any fits."""
        resp, request = self.ex.resp, self.ex.request
        assert resp is not None and resp.content_length is not None
        if length > resp.content_length and (request is None or request.method != b"HEAD"):
            raise LocalProtocolError("body longer than the app's Content-Length")


def _buffers(head: bytes, proto: Connection, result: list[bytes]) -> list[bytes]:
    """Head, framed items and end as a scatter list of the app's own buffers."""
    out = [head]
    send_data = proto.send_data
    for item in result:
        framed = send_data(item)
        if framed:
            out.append(framed)
    eom = proto.send_eom()
    if eom:
        out.append(eom)
    return out


def _file_span(fd: int) -> tuple[int, int] | None:
    """(offset, bytes left) of a regular file, else None."""
    try:
        info = os.fstat(fd)
        offset = os.lseek(fd, 0, os.SEEK_CUR)
    except OSError:
        return None
    if not stat.S_ISREG(info.st_mode):
        return None
    return offset, max(info.st_size - offset, 0)


def close_if_body_unsent(ex: Exchange) -> None:
    """Before a response head: if the client asked ``Expect: 100-continue`` and the app did not
    read the whole body, the client may never send it (RFC 9110 §10.1.1), so the bytes that
    follow cannot be told apart from a next request. Say ``Connection: close`` and close."""
    request, inp = ex.request, ex.input
    if request is not None and request.expect_continue and inp is not None and not inp.complete:
        ex.proto.close_after_cycle()


def internal_error(proto: Connection) -> bytes:
    """A complete 500 response that closes the connection (the app's state is suspect)."""
    proto.close_after_cycle()
    headers = [
        (b"Content-Type", b"text/plain; charset=utf-8"),
        (b"Content-Length", str(len(INTERNAL_ERROR_BODY)).encode()),
    ]
    resp_bytes = proto.send_response(500, headers, b"Internal Server Error")
    return resp_bytes + proto.send_data(INTERNAL_ERROR_BODY) + proto.send_eom()


def body_length(result: list[bytes]) -> int:
    """Total length of a list body; TypeError for a non-bytes item (before anything is sent)."""
    length = 0
    for item in result:
        if type(item) is not bytes:
            raise TypeError(f"WSGI body items must be bytes, not {type(item).__name__}")
        length += len(item)
    return length


def describe(request: Request | None) -> str:
    """``METHOD target`` of a request, escaped, for error log lines."""
    if request is None:
        return "no request"
    return f"{escape_for_log(request.method)} {escape_for_log(request.target)}"


def log_app_error(ex: Exchange, what: str) -> None:
    """Log an exception escaping the app. When the client broke the body the app was reading,
    that is bad input, not a server bug: one line, no traceback (the client gets its 4xx)."""
    if ex.body_error is not None:
        error_log.warning(
            "%s (%s): the client's body was bad: %s %s",
            what,
            describe(ex.request),
            ex.body_error.status,
            ex.body_error.reason,
        )
    else:
        error_log.exception("%s (%s)", what, describe(ex.request))
