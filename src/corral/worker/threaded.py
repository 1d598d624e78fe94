"""``threads > 1``: run the app and write its response in a small thread pool.

Theory of operation: for I/O-bound apps (waiting on a database or an upstream service) one
request at a time wastes the process. With a pool, the loop still owns every socket that is
not in an app call: it accepts, reads heads and small bodies, enforces timeouts and keeps
idle connections. When a request is complete the loop unregisters the socket from epoll (so
it never touches a connection a thread owns), calls ``slot.start_request``, and hands the
connection to a thread. The thread calls the app, writes the whole response with blocking
sends bounded by ``send_timeout_s`` (the socket stays non-blocking; waits use ``poll``), puts
the connection on a queue and writes a byte to the loop's wake-up socket. The loop then does
the bookkeeping (slot, access log, keep-alive, pipelined requests) as for inline requests.

The slot, the access log and epoll are only ever touched by the loop thread.
"""

from __future__ import annotations

import logging
import os
import select
import socket
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from queue import SimpleQueue
from typing import Any

from corral.worker.body import send_blocking, wait_fd
from corral.worker.conn import Conn
from corral.worker.respond import (
    account_body,
    body_length,
    close_result,
    head_if_needed,
    internal_error,
    log_app_error,
    prepare_sendfile,
)
from corral.wsgi import FileWrapper
from corral.wsgi.types import WSGIApp

error_log = logging.getLogger("corral.error")


class ClientGone(Exception):
    """Sending to the client failed (closed, reset, or too slow)."""


class AppThreads:
    """A pool that runs requests and reports finished connections back to the loop."""

    def __init__(self, app: WSGIApp, threads: int, send_timeout_s: float, wake: socket.socket):
        self._app = app
        self._send_timeout_s = send_timeout_s
        self._wake = wake
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="corral-app")
        self.done: SimpleQueue[Conn] = SimpleQueue()

    def submit(self, conn: Conn, environ: dict[str, Any]) -> None:
        self._pool.submit(self._run, conn, environ)

    def shutdown(self) -> None:
        """Stop taking work; threads still in an app call finish on their own."""
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _run(self, conn: Conn, environ: dict[str, Any]) -> None:
        try:
            serve_blocking(self._app, conn, environ, self._send_timeout_s)
        except BaseException:
            error_log.exception("unexpected error in an app thread")
            conn.abort = True
        finally:
            self.done.put(conn)
            try:
                self._wake.send(b"\0")
            except OSError:
                pass  # the buffer is full, so a wake-up is pending anyway


def serve_blocking(app: WSGIApp, conn: Conn, environ: dict[str, Any], timeout_s: float) -> None:
    """Call the app and send its whole response; failures set ``conn.abort``/``must_close``."""
    resp = conn.resp
    assert resp is not None
    try:
        result = app(environ, resp)
    except Exception:
        log_app_error(conn, "error in WSGI app")
        _fail(conn, timeout_s)
        return
    conn.result = result
    try:
        _send_result(conn, result, timeout_s)
    except ClientGone:
        conn.abort = True
    except Exception:
        log_app_error(conn, "error in WSGI app's response")
        _fail(conn, timeout_s)
    finally:
        close_result(conn)


def _send_result(conn: Conn, result: Any, timeout_s: float) -> None:
    resp = conn.resp
    assert resp is not None
    proto = conn.proto
    send = _sender(conn, timeout_s)
    if type(result) is list and resp.status is not None and not resp.headers_sent:
        length = body_length(result)
        if resp.content_length is None:
            resp.headers = [*resp.headers, (b"Content-Length", str(length).encode())]
        send(head_if_needed(conn, length) + b"".join(map(proto.send_data, result)))
    elif isinstance(result, FileWrapper) and _sendfile(conn, result, resp, send, timeout_s):
        pass
    else:
        for chunk in result:
            if type(chunk) is not bytes:
                raise TypeError(f"WSGI body items must be bytes, not {type(chunk).__name__}")
            if chunk:
                send(head_if_needed(conn, len(chunk)) + proto.send_data(chunk))
    send(head_if_needed(conn) + proto.send_eom())


def _sender(conn: Conn, timeout_s: float) -> Callable[[bytes], None]:
    def send(data: bytes) -> None:
        if data:
            try:
                conn.bytes_out += send_blocking(conn.sock, data, timeout_s)
            except OSError as exc:
                raise ClientGone from exc

    return send


def _sendfile(
    conn: Conn, wrapper: FileWrapper, resp: Any, send: Callable[[bytes], None], timeout_s: float
) -> bool:
    fd = wrapper.fileno()
    if fd is None or not prepare_sendfile(conn, fd, resp):
        return False
    send(bytes(conn.out))
    conn.out = b""
    assert conn.file is not None
    _, offset, remaining = conn.file
    conn.file = None
    while remaining:
        try:
            sent = os.sendfile(conn.fd, fd, offset, remaining)
        except (BlockingIOError, InterruptedError):
            if not wait_fd(conn.fd, select.POLLOUT, timeout_s):
                raise ClientGone("client did not read the file in time") from None
            continue
        except OSError as exc:
            raise ClientGone from exc
        if sent == 0:
            raise ClientGone("file ended before its announced length")
        account_body(conn.proto, sent)
        conn.bytes_out += sent
        offset += sent
        remaining -= sent
    return True


def _fail(conn: Conn, timeout_s: float) -> None:
    """Answer 500 (or the body's protocol error) if nothing was sent, else abort."""
    close_result(conn)
    resp = conn.resp
    conn.must_close = True
    if resp is not None and resp.headers_sent:
        conn.abort = True
        return
    proto = conn.proto
    try:
        if conn.body_error is not None and not proto.response_started:
            data = proto.error_response(conn.body_error)
            if resp is not None:
                resp.status_code = conn.body_error.status
        else:
            data = internal_error(proto)
            if resp is not None:
                resp.status_code = 500
        conn.bytes_out += send_blocking(conn.sock, data, timeout_s)
    except Exception:
        conn.abort = True
