"""Building response bytes for one connection: helpers shared by the non-blocking loop and
the blocking (threaded) path. No I/O here except ``fstat``/``lseek`` on a file to be sent.

The head goes out as late as PEP 3333 allows (first non-empty chunk, or the end of an empty
body), and every check that can turn an app's mistake into a clean 500 runs before it.
"""

from __future__ import annotations

import logging
import os
import stat

from corral.http import Connection, LocalProtocolError, Request, escape_for_log
from corral.worker.conn import Conn
from corral.wsgi import StartResponse

error_log = logging.getLogger("corral.error")

INTERNAL_ERROR_BODY = b"Internal Server Error\n"


def head_if_needed(conn: Conn, first_chunk: int = 0) -> bytes:
    """The response head if it has not gone out yet (else b"").

    ``first_chunk`` is the length of the body chunk about to follow: one longer than the
    app's Content-Length is refused here, while a clean 500 is still possible.
    """
    resp = conn.resp
    assert resp is not None
    if resp.headers_sent:
        return b""
    if resp.status is None:
        raise RuntimeError("the app produced a body without calling start_response()")
    limit = resp.content_length
    if limit is not None and first_chunk > limit and conn.request.method != b"HEAD":  # type: ignore[union-attr]
        raise LocalProtocolError("body longer than the app's Content-Length")
    close_if_body_unsent(conn)
    head = conn.proto.send_response(resp.status_code, resp.headers, resp.reason)
    resp.headers_sent = True
    return head


def close_if_body_unsent(conn: Conn) -> None:
    """Before a response head: if the client asked ``Expect: 100-continue`` and the app did not
    read the whole body, the client may never send it (RFC 9110 §10.1.1), so the bytes that
    follow cannot be told apart from a next request. Say ``Connection: close`` and close."""
    request, inp = conn.request, conn.input
    if request is not None and request.expect_continue and inp is not None and not inp.complete:
        conn.proto.close_after_cycle()


def internal_error(proto: Connection) -> bytes:
    """A complete 500 response that closes the connection (the app's state is suspect)."""
    proto.close_after_cycle()
    headers = [
        (b"Content-Type", b"text/plain; charset=utf-8"),
        (b"Content-Length", str(len(INTERNAL_ERROR_BODY)).encode()),
    ]
    resp_bytes = proto.send_response(500, headers, b"Internal Server Error")
    return resp_bytes + proto.send_data(INTERNAL_ERROR_BODY) + proto.send_eom()


def prepare_sendfile(conn: Conn, fd: int, resp: StartResponse) -> bool:
    """Set up ``os.sendfile`` for a regular file with a known length; else False."""
    if resp.headers_sent or resp.status is None or conn.proto.request is None:
        return False
    if resp.status_code in (204, 304) or (
        conn.request is not None and conn.request.method == b"HEAD"
    ):
        return False  # no body goes out: let the iterator path handle it
    try:
        info = os.fstat(fd)
        offset = os.lseek(fd, 0, os.SEEK_CUR)
    except OSError:
        return False
    if not stat.S_ISREG(info.st_mode):
        return False
    remaining = max(info.st_size - offset, 0)
    headers = resp.headers
    if resp.content_length is None:
        headers = [*headers, (b"Content-Length", str(remaining).encode())]
    else:
        remaining = min(remaining, resp.content_length)
    if remaining == 0:
        return False
    close_if_body_unsent(conn)
    try:
        head = conn.proto.send_response(resp.status_code, headers, resp.reason)
    except LocalProtocolError:
        return False
    resp.headers_sent = True
    conn.out = head
    conn.file = (fd, offset, remaining)
    return True


def body_length(result: list[bytes]) -> int:
    """Total length of a list body; TypeError for a non-bytes item (before anything is sent)."""
    length = 0
    for item in result:
        if type(item) is not bytes:
            raise TypeError(f"WSGI body items must be bytes, not {type(item).__name__}")
        length += len(item)
    return length


_ZEROS = memoryview(bytes(1 << 20))


def account_body(proto: Connection, sent: int) -> None:
    """Tell the HTTP core that ``sent`` body bytes left by ``os.sendfile``.

    The core counts Content-Length bytes in ``send_data``, which with Content-Length framing
    (the only framing sendfile is used with) returns its argument unchanged; a zero-copy view
    of a shared zero buffer carries the count without copying. A dedicated accounting method
    on ``Connection`` would be cleaner (requested from the HTTP core's owner).
    """
    while sent > 0:
        step = min(sent, len(_ZEROS))
        proto.send_data(_ZEROS[:step])  # type: ignore[arg-type,unused-ignore]
        sent -= step


def describe(request: Request | None) -> str:
    """``METHOD target`` of a request, escaped, for error log lines."""
    if request is None:
        return "no request"
    return f"{escape_for_log(request.method)} {escape_for_log(request.target)}"


def log_app_error(conn: Conn, what: str) -> None:
    """Log an exception escaping the app. When the client broke the body the app was reading,
    that is bad input, not a server bug: one line, no traceback (the client gets its 4xx)."""
    if conn.body_error is not None:
        error_log.warning(
            "%s (%s): the client's body was bad: %s %s",
            what,
            describe(conn.request),
            conn.body_error.status,
            conn.body_error.reason,
        )
    else:
        error_log.exception("%s (%s)", what, describe(conn.request))


def close_result(conn: Conn) -> None:
    """PEP 3333: call the result's close() exactly once, whatever happened."""
    result, conn.result = conn.result, None
    close = getattr(result, "close", None)
    if close is not None:
        try:
            close()
        except Exception:
            error_log.exception("error closing the WSGI app's result")
