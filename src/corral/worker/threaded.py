"""``threads > 1``: run the app and write its response in a small thread pool.

Theory of operation: for I/O-bound apps (waiting on a database or an upstream service) one
request at a time wastes the process. With a pool, the loop still owns every socket that is
not in an app call: it accepts, reads heads and small bodies, enforces timeouts and keeps
idle connections. When a request is complete the loop unregisters the socket from epoll (so
it never touches a connection a thread owns), calls ``slot.start_request``, and hands the
connection to a thread. The thread drives the connection's response producer
(``corral.worker.producer``, the same one the loop drives) with blocking sends bounded by
``send_timeout_s`` (the socket stays non-blocking; waits use ``poll``), puts the connection on
a queue and writes a byte to the loop's wake-up socket. The loop then does the bookkeeping
(slot, access log, keep-alive, pipelined requests) as for inline requests.

The slot, the access log and epoll are only ever touched by the loop thread.
"""

from __future__ import annotations

import logging
import os
import select
import socket
from concurrent.futures import ThreadPoolExecutor
from queue import SimpleQueue
from typing import Any

from corral.worker.body import send_blocking, wait_fd
from corral.worker.conn import Conn
from corral.worker.outbuf import send_buffers_blocking
from corral.worker.producer import ABORT, DONE, SendFile, describe
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
    producer = conn.producer
    try:
        step = producer.call(app, environ)
        while step is not DONE:
            if step is ABORT:
                conn.abort = True
                return
            if type(step) is SendFile:
                _sendfile(conn, step, timeout_s)  # type: ignore[arg-type]
            elif type(step) is list:
                conn.bytes_out += send_buffers_blocking(conn.sock, step, timeout_s)  # type: ignore[arg-type]
            elif step:
                conn.bytes_out += send_blocking(conn.sock, step, timeout_s)  # type: ignore[arg-type]
            step = producer.next()
    except (OSError, ClientGone):
        conn.abort = True  # the client went away or stopped reading
    finally:
        producer.close()


def _sendfile(conn: Conn, file: SendFile, timeout_s: float) -> None:
    fd, offset, remaining = file
    while remaining:
        try:
            sent = os.sendfile(conn.fd, fd, offset, remaining)
        except (BlockingIOError, InterruptedError):
            if not wait_fd(conn.fd, select.POLLOUT, timeout_s):
                raise ClientGone("client did not read the file in time") from None
            continue
        if sent == 0:  # the file shrank under us: the promised length cannot be met
            error_log.error("file ended early in sendfile (%s)", describe(conn.request))
            raise ClientGone("file ended before its announced length")
        conn.bytes_out += sent
        offset += sent
        remaining -= sent
