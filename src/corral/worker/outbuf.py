"""Pending output of a connection: partial-send bookkeeping for scatter lists of buffers.

A response step may be a list of the app's own buffers (``corral.worker.producer``); they go
out with ``socket.sendmsg`` as they are, at most ``IOV_MAX`` per call, and what a short send
leaves is kept as the unsent tail (a ``memoryview`` into the first partly sent buffer), never
as a joined copy.
"""

from __future__ import annotations

import os
import select
import socket
from typing import Any

Buffer = bytes | memoryview


def _iov_max() -> int:
    try:
        return max(16, min(os.sysconf("SC_IOV_MAX"), 1024))
    except (ValueError, OSError):
        return 16  # POSIX's minimum


IOV_MAX = _iov_max()


def drop_sent(bufs: list[Buffer], sent: int) -> list[Buffer]:
    """The unsent tail of ``bufs`` after ``sent`` bytes of them left."""
    i, n = 0, len(bufs)
    while i < n and sent >= len(bufs[i]):
        sent -= len(bufs[i])
        i += 1
    rest = bufs[i:]
    if sent:
        rest[0] = memoryview(rest[0])[sent:]
    return rest


def send_buffers(sock: socket.socket, bufs: list[Buffer]) -> tuple[int, list[Buffer]]:
    """Send as much of ``bufs`` as the socket takes without blocking: (bytes sent, unsent tail).

    Raises ``OSError`` (other than would-block) when the peer is gone."""
    total = 0
    while bufs:
        batch = bufs[:IOV_MAX]
        try:
            sent = sock.sendmsg(batch)
        except (BlockingIOError, InterruptedError):
            break
        total += sent
        bufs = drop_sent(bufs, sent)
        if sent < sum(map(len, batch)):
            break  # the socket buffer is full: another call would only say so
    return total, bufs


def send_buffers_blocking(sock: socket.socket, bufs: list[Buffer], timeout_s: float) -> int:
    """Send all of ``bufs``, waiting at most ``timeout_s`` for each stall (TimeoutError)."""
    total = 0
    while True:
        sent, bufs = send_buffers(sock, bufs)
        total += sent
        if not bufs:
            return total
        poller = select.poll()
        poller.register(sock.fileno(), select.POLLOUT)
        if not poller.poll(max(timeout_s, 0.0) * 1000.0):
            raise TimeoutError("client did not read the response in time")


class Pending:
    """Bytes kept alive for responses that clients have not read yet, each distinct buffer
    counted once: 200 slow readers of one shared 10 MiB object hold 10 MiB, not 2 GiB."""

    __slots__ = ("_refs", "total")

    def __init__(self) -> None:
        self.total = 0
        self._refs: dict[int, list[Any]] = {}  # id(base) -> [base, holders]

    def hold(self, out: list[Buffer] | Buffer) -> list[Buffer]:
        """Count the objects behind ``out``; returns them, for :meth:`release`."""
        bases = [_base(b) for b in out] if type(out) is list else [_base(out)]  # type: ignore[arg-type]
        refs = self._refs
        for base in bases:
            entry = refs.get(id(base))
            if entry is None:
                refs[id(base)] = [base, 1]
                self.total += len(base)
            else:
                entry[1] += 1
        return bases

    def release(self, bases: list[Buffer]) -> None:
        refs = self._refs
        for base in bases:
            entry = refs[id(base)]
            entry[1] -= 1
            if not entry[1]:
                del refs[id(base)]
                self.total -= len(base)


def _base(buf: Buffer) -> Buffer:
    """The bytes object a view was taken of (what keeping the view alive keeps alive)."""
    if type(buf) is memoryview:
        obj = buf.obj
        return obj if isinstance(obj, bytes) else buf
    return buf
