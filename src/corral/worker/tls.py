"""TLS on a worker's client connections, with the stdlib ``ssl`` module, off the app's path.

Theory of operation. The generation's ``SSLContext`` (``corral.tlsconfig``, built before the
workers were forked) wraps each accepted socket as a :class:`TLSSocket` without handshaking.
The loop treats it as any client socket: the handshake runs inside the first ``recv`` calls,
non-blocking (``do_handshake`` raising ``SSLWantReadError``/``SSLWantWriteError`` becomes
``BlockingIOError``: wait for the next readiness event; on want-write the fd also waits for
``EPOLLOUT``). It is bounded by the header timeout from accept: past it the next attempt fails
and the loop closes the connection. A failed handshake (a plain-HTTP client on the TLS port,
a scanner, a client without the required certificate) closes that connection only.

After the handshake ``recv``/``send``/``sendmsg`` keep the plain-socket contract the loop and
``corral.worker.body`` rely on: would-block is ``BlockingIOError``, a TLS close is ``b""``.
OpenSSL wants a write that would block retried with the same bytes: every write goes out in
pieces of at most ``WRITE_CHUNK`` cut the same way from the unsent tail the loop keeps, so the
retry is always the same piece. ``sendmsg`` joins the leading buffers (TLS copies anyway).
``sendfile`` cannot encrypt, so the producer serves files by read + send on these connections.
Peeking reads (``MSG_PEEK``), ``recv_into`` (the lingering close discards what arrives) and
``shutdown`` act on the raw socket.
"""

from __future__ import annotations

import contextlib
import logging
import select
import socket
import ssl
import time
from collections.abc import Callable, Iterable
from typing import Any

from corral.worker.proxied import Preface

error_log = logging.getLogger("corral.error")

WRITE_CHUNK = 65536  # bytes per SSL_write: four full records
JOIN_MAX = 262144  # sendmsg joins buffers up to this many bytes per call

Watch = Callable[[int, int], None]  # epoll.modify(fd, events)
_PLAIN_BODY = b"This port speaks HTTPS: use https:// in the URL.\n"
PLAIN_HTTP_ANSWER = (
    b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nConnection: close\r\n"
    b"Content-Length: %d\r\n\r\n%s" % (len(_PLAIN_BODY), _PLAIN_BODY)
)


class TLSSocket(ssl.SSLSocket):
    """A server-side TLS connection that handshakes lazily and never blocks."""

    corral_ready = False  # handshake done
    corral_deadline = 0.0  # monotonic time the handshake must be done by
    corral_preface: Preface | None = None  # a PROXY header comes first, in the clear
    corral_watch: Watch | None = None
    corral_events = select.EPOLLIN

    def recv(self, buflen: int = 1024, flags: int = 0) -> bytes:
        if flags:  # MSG_PEEK checks: is anything there at all
            return socket.socket.recv(self, buflen, flags)
        if not self.corral_ready:
            self._corral_start()
        try:
            data = super().recv(buflen)
            pending = self.pending()
            return data + super().recv(pending) if pending else data
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            raise BlockingIOError from None
        except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
            return b""

    def recv_into(self, buffer: Any, nbytes: int | None = None, flags: int = 0) -> int:
        return socket.socket.recv_into(self, buffer, nbytes or 0, flags)  # discarded: see the top

    def send(self, data: Any, flags: int = 0) -> int:
        if not self.corral_ready:
            raise ConnectionAbortedError("TLS handshake not done")
        view = memoryview(data)
        total, size = 0, len(view)
        while total < size:
            try:
                total += super().send(view[total : total + WRITE_CHUNK])
            except (ssl.SSLWantWriteError, ssl.SSLWantReadError):
                if total:
                    return total
                raise BlockingIOError from None
        return total

    def sendmsg(  # type: ignore[override]
        self, buffers: Iterable[Any], ancdata: Any = (), flags: int = 0, address: Any = None
    ) -> int:
        parts: list[Any] = []
        size = 0
        for buf in buffers:
            if size >= JOIN_MAX:
                break
            parts.append(buf)
            size += len(buf)
        return self.send(parts[0] if len(parts) == 1 else b"".join(parts))

    def shutdown(self, how: int) -> None:
        socket.socket.shutdown(self, how)  # not SSLSocket's, which drops the TLS state

    def close(self) -> None:
        self.corral_preface = self.corral_watch = None
        sslobj = getattr(self, "_sslobj", None)
        if self.corral_ready and sslobj is not None:
            with contextlib.suppress(OSError, ValueError):
                sslobj.shutdown()  # close_notify, best effort: never waits for the peer's
        super().close()

    def _corral_start(self) -> None:
        """The PROXY header if one is due, then one step of the handshake."""
        if self.corral_preface is not None:
            if self.corral_preface.read(self):
                raise ConnectionAbortedError("neither a PROXY header nor TLS")
            self.corral_preface = None
        if time.monotonic() > self.corral_deadline:
            raise TimeoutError("TLS handshake timed out")
        try:
            self.do_handshake()
        except ssl.SSLWantReadError:
            self._corral_wait(select.EPOLLIN)
            raise BlockingIOError from None
        except ssl.SSLWantWriteError:
            self._corral_wait(select.EPOLLIN | select.EPOLLOUT)
            raise BlockingIOError from None
        except ssl.SSLError as exc:
            error_log.debug("TLS handshake failed: %s", exc.reason or exc)
            if exc.reason == "HTTP_REQUEST":
                self._corral_plain_http()
            raise ConnectionAbortedError(f"TLS handshake failed: {exc.reason}") from None
        self._corral_wait(select.EPOLLIN)
        self.corral_ready, self.corral_watch = True, None

    def _corral_plain_http(self) -> None:
        """A plain-HTTP request on the TLS port: say so in plain HTTP (nginx does too), after
        reading what the client sent so the close is a FIN, not a reset it may never read."""
        with contextlib.suppress(OSError):
            for _ in range(4):
                if not socket.socket.recv(self, 65536):
                    break
        with contextlib.suppress(OSError):
            socket.socket.send(self, PLAIN_HTTP_ANSWER)

    def _corral_wait(self, events: int) -> None:
        if events != self.corral_events and self.corral_watch is not None:
            self.corral_watch(self.fileno(), events)
            self.corral_events = events


def wrap(
    sock: socket.socket,
    ctx: ssl.SSLContext,
    deadline: float,
    watch: Watch | None,
    preface: Preface | None,
) -> TLSSocket:
    """``sock`` (non-blocking, accepted) as a :class:`TLSSocket`, same fd, no I/O yet."""
    if ctx.sslsocket_class is not TLSSocket:
        ctx.sslsocket_class = TLSSocket  # this worker's copy of the generation's context
    tsock = ctx.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
    assert isinstance(tsock, TLSSocket)
    tsock.corral_deadline = deadline
    tsock.corral_watch = watch
    tsock.corral_preface = preface
    return tsock
