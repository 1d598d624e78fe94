"""Blocking I/O with deadlines for the few places the app's thread waits on a socket.

The loop never blocks, but an app reading a large or streamed body (``wsgi.input``) or calling
``write()`` does: it is the app's own request and it runs in the loop's thread. Each wait is
bounded by a deadline with ``poll``, so a stalled client costs at most that long.
"""

from __future__ import annotations

import select
import socket

from corral.http import NEED_DATA, Data, EndOfMessage, ProtocolError
from corral.worker.conn import Conn
from corral.worker.settings import WorkerSettings
from corral.wsgi import BodyError

RECV_SIZE = 65536


def wait_fd(fd: int, events: int, timeout_s: float) -> bool:
    """Wait until ``fd`` is ready for ``events``; False on timeout."""
    poller = select.poll()
    poller.register(fd, events)
    return bool(poller.poll(max(timeout_s, 0.0) * 1000.0))


def send_blocking(sock: socket.socket, data: bytes, timeout_s: float) -> int:
    """Send all of ``data`` on a non-blocking socket, waiting at most ``timeout_s`` per stall."""
    view = memoryview(data)
    total = 0
    while total < len(data):
        try:
            total += sock.send(view[total:])
        except (BlockingIOError, InterruptedError):
            if not wait_fd(sock.fileno(), select.POLLOUT, timeout_s):
                raise TimeoutError("client did not read the response in time") from None
    return total


class StreamSource:
    """A ``wsgi.input`` body source that reads the client socket on demand.

    Sends ``100 Continue`` before the first wait for body bytes (RFC 9110 §10.1.1: only when
    the app actually reads). A malformed or truncated body, or ``body_timeout_s`` without a
    byte, raises :class:`BodyError` and records the protocol error on the connection so the
    worker answers it (if the app has not) and closes.
    """

    __slots__ = ("_conn", "_continued", "_timeout_s")

    def __init__(self, conn: Conn, settings: WorkerSettings) -> None:
        self._conn = conn
        self._timeout_s = settings.body_timeout_s
        self._continued = False

    def __call__(self) -> bytes:
        conn = self._conn
        proto = conn.proto
        while True:
            try:
                event = proto.next_event()
            except ProtocolError as exc:
                raise self._fail(exc) from exc
            if type(event) is Data:
                self._continued = True  # the client is sending; no 100 needed any more
                return event.data
            if type(event) is EndOfMessage:
                return b""
            if event is not NEED_DATA:
                raise self._fail(ProtocolError(400, f"unexpected event {event!r} in body"))
            self._continue()
            self._receive()

    def _continue(self) -> None:
        if not self._continued:
            self._continued = True
            interim = self._conn.proto.send_continue()
            if interim:
                try:
                    send_blocking(self._conn.sock, interim, self._timeout_s)
                except OSError as exc:
                    raise self._fail(ProtocolError(400, "client gone")) from exc

    def _receive(self) -> None:
        sock = self._conn.sock
        if not wait_fd(sock.fileno(), select.POLLIN, self._timeout_s):
            raise self._fail(ProtocolError(408, "request body timed out"))
        try:
            data = sock.recv(RECV_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        self._conn.proto.receive_data(data)

    def _fail(self, exc: ProtocolError) -> BodyError:
        self._conn.body_error = exc
        self._conn.must_close = True
        return BodyError(f"request body incomplete: {exc.status} {exc.reason}")
