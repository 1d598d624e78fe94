"""Lingering close: answer, shut our side, and read away what the peer still sends.

Closing a socket with unread bytes in its receive buffer makes the kernel send a reset, and a
reset can overtake the response on the wire, so the client never reads it. After a protocol
error, and after a ``Connection: close`` response over a body the app left unread, the loop
shuts its write side instead and reads until the peer closes or time is up: after an error at
most ``linger_max_bytes`` within ``linger_timeout_s``; after an unread body, the rest of that
body, waiting at most ``linger_timeout_s`` for each read and ``body_timeout_s`` in all (nginx's
``lingering_timeout``/``lingering_time`` split).
"""

from __future__ import annotations

import socket

from corral.http import Request
from corral.worker.conn import LINGER, Conn
from corral.worker.settings import WorkerSettings


def body_unread(conn: Conn, request: Request, buffer_body_max: int) -> bool:
    """The app left part of a streamed body unread (in the kernel, or still coming)."""
    length = request.content_length
    streamed = request.chunked or request.expect_continue
    if not streamed and (length is None or length <= buffer_body_max):
        return False  # read whole by the loop before the app ran
    return conn.input is not None and not conn.input.complete


def start(conn: Conn, settings: WorkerSettings, now: float, body: bool) -> bool:
    """Shut our side and enter LINGER; False when the socket is already gone (close it)."""
    try:
        conn.sock.shutdown(socket.SHUT_WR)
    except OSError:
        return False
    conn.state = LINGER
    conn.deadline = now + settings.linger_timeout_s
    conn.linger_end = now + settings.body_timeout_s if body else conn.deadline
    conn.linger_left = settings.linger_max_bytes
    if body:
        conn.linger_left += settings.limits.max_body_size
    return True


def quiet(sock: socket.socket) -> bool:
    """Nothing has arrived on an idle connection (no request bytes, no EOF): safe to close."""
    try:
        sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)  # a request's first byte, or EOF
    except (BlockingIOError, InterruptedError):
        return True
    except OSError:
        pass  # a reset: the read path sees it and closes
    return False


def read(conn: Conn, scratch: bytearray, settings: WorkerSettings, now: float) -> bool:
    """Read and discard what arrived; True when the lingering close is over (close it)."""
    try:
        n = conn.sock.recv_into(scratch)
    except (BlockingIOError, InterruptedError):
        return False
    except OSError:
        n = 0
    conn.linger_left -= n
    if not n or conn.linger_left <= 0:
        return True
    conn.deadline = min(now + settings.linger_timeout_s, conn.linger_end)  # never past the end
    return False
