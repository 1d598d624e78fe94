"""The bare ceiling for a Python server: forked epoll loops answering every request head with a
canned keep-alive response (no parsing, no WSGI, no bookkeeping).

``python bare_loop.py PORT WORKERS`` binds 127.0.0.1:PORT, forks WORKERS loops on the one
shared listener (``EPOLLEXCLUSIVE``) and waits for them. TERM to the session ends every process
through ``SystemExit`` (not the default action), so a run under callgrind still writes each
process's counts on the way out. benchmarks/hello.py starts it as the ``bare`` server.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import sys
from types import FrameType

CANNED = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 14\r\n\r\nHello, world!\n"


def _exit(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def serve_one(listener: socket.socket) -> None:
    """One process's loop; runs until SIGTERM."""
    ep = select.epoll()
    ep.register(listener.fileno(), select.EPOLLIN | select.EPOLLEXCLUSIVE)
    conns: dict[int, socket.socket] = {}
    pending: dict[int, bytes] = {}
    lfd = listener.fileno()
    while True:
        for fd, _ in ep.poll():
            if fd == lfd:
                _accept(listener, ep, conns)
            else:
                _read(fd, ep, conns, pending)


def _accept(listener: socket.socket, ep: select.epoll, conns: dict[int, socket.socket]) -> None:
    try:
        conn, _ = listener.accept()
    except BlockingIOError:
        return
    conn.setblocking(False)
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    conns[conn.fileno()] = conn
    ep.register(conn.fileno(), select.EPOLLIN)


def _read(
    fd: int, ep: select.epoll, conns: dict[int, socket.socket], pending: dict[int, bytes]
) -> None:
    conn = conns[fd]
    try:
        data = conn.recv(65536)
    except BlockingIOError:
        return
    except ConnectionError:
        data = b""  # a reset ends the connection like an EOF
    if not data:
        ep.unregister(fd)
        conns.pop(fd).close()
        pending.pop(fd, None)
        return
    buf = pending.pop(fd, b"") + data
    heads = buf.count(b"\r\n\r\n")
    rest = buf.rsplit(b"\r\n\r\n", 1)[-1] if heads else buf
    if rest:
        pending[fd] = rest
    if heads:
        with contextlib.suppress(OSError):  # a short send would be a bug here; hello fits
            conn.send(CANNED * heads)


def serve(port: int, workers: int) -> None:
    """Bind, fork ``workers`` loops, wait for them; TERM to the session ends them all."""
    signal.signal(signal.SIGTERM, _exit)
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(2048)
    listener.setblocking(False)
    for _ in range(workers):
        if os.fork() == 0:
            serve_one(listener)
    with contextlib.suppress(ChildProcessError):
        while True:
            os.wait()


if __name__ == "__main__":
    serve(int(sys.argv[1]), int(sys.argv[2]))
