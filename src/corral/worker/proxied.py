"""What a worker learns from the proxy in front of it: a PROXY protocol header before the
first byte of a connection, and forwarding headers on each request.

Theory of operation. A connection from an address in ``proxy_allow_ips`` (when
``--proxy-protocol`` is on) gets a :class:`Preface`: on the first reads it takes the PROXY
header off the socket with ``MSG_PEEK`` and then reads exactly the header's bytes, so nothing
after it is consumed (the HTTP parser, or OpenSSL for a TLS connection, reads the rest from the
socket itself). While the header is incomplete every byte seen belongs to it and is consumed,
so a stalled proxy never keeps the fd readable. A header names the client: the connection's
``REMOTE_ADDR``/``REMOTE_PORT`` and access-log address become its. Anything else is logged and
the connection closed (``ConnectionAbortedError``, which the loop's read path handles like a
reset), never a worker error. Plain connections use :class:`ProxiedSocket`, whose ``recv``
runs the preface first; TLS ones run it before the handshake (``corral.worker.tls``).

Forwarding headers are applied per request by :func:`forwarded_environ`, which the loop calls
only for a connection from ``forwarded_allow_ips`` whose environ holds one of the headers
(``environ.keys().isdisjoint(ENVIRON_KEYS)``: seven dict lookups otherwise, ~0.15 µs).
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable
from typing import Any

from corral.http import Request
from corral.http.forwarded import TrustedProxies, resolve
from corral.http.proxyproto import V2_MAX, ProxyHeader, ProxyMode, ProxyProtocolError, parse

error_log = logging.getLogger("corral.error")

OnHeader = Callable[[ProxyHeader], None]


class Preface:
    """Reads one PROXY protocol header off a socket without reading past it."""

    __slots__ = ("buf", "mode", "on_header", "peer")

    def __init__(self, mode: ProxyMode, peer: str, on_header: OnHeader | None = None) -> None:
        self.mode = mode
        self.peer = peer  # for the log line
        self.buf = b""  # header bytes consumed so far
        self.on_header = on_header

    def read(self, sock: socket.socket) -> bytes:
        """Consume the header; returns bytes consumed that turned out not to start one (auto
        mode). ``BlockingIOError`` while more is needed, ``ConnectionAbortedError`` for
        garbage or an EOF before the header ended."""
        data = socket.socket.recv(sock, V2_MAX, socket.MSG_PEEK)  # the raw bytes, even on TLS
        if not data:
            raise ConnectionAbortedError("closed before the PROXY header")
        seen = self.buf + data
        try:
            result = parse(seen, self.mode)
        except ProxyProtocolError as exc:
            error_log.warning("PROXY protocol from %s: %s; closing", self.peer, exc)
            raise ConnectionAbortedError(str(exc)) from None
        if result is None:  # all of it is header: take it, wait for the rest
            self.buf += socket.socket.recv(sock, len(data))
            raise BlockingIOError
        header, size = result
        if header is None:  # auto mode, no header: what was taken belongs to the request
            return self.buf
        if size > len(self.buf):
            self.buf += socket.socket.recv(sock, size - len(self.buf))
            if len(self.buf) < size:
                raise BlockingIOError
        if self.on_header is not None:
            self.on_header(header)
        return b""


class ProxiedSocket(socket.socket):
    """A plain client socket that reads a PROXY header before the first request."""

    preface: Preface | None = None

    @classmethod
    def adopt(cls, sock: socket.socket, preface: Preface) -> ProxiedSocket:
        """The same connection (same fd) as a ``ProxiedSocket``."""
        new = cls(sock.family, sock.type, sock.proto, fileno=sock.detach())
        new.setblocking(False)
        new.preface = preface
        return new

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        preface = self.preface
        if preface is None or flags:
            return super().recv(bufsize, flags)
        left = preface.read(self)
        self.preface = None
        if not left:
            return super().recv(bufsize)
        try:
            return left + super().recv(bufsize)
        except (BlockingIOError, InterruptedError):
            return left

    def close(self) -> None:
        self.preface = None  # drops the callback, which holds the connection
        super().close()


def client_from(conn: Any) -> OnHeader:
    """The callback that makes a header's source the connection's client."""

    def on_header(header: ProxyHeader) -> None:
        if header.source is not None:
            host, port = header.source
            conn.base["REMOTE_ADDR"], conn.base["REMOTE_PORT"] = host, str(port)
            conn.remote = host

    return on_header


def forwarded_environ(
    environ: dict[str, Any], conn: Any, request: Request, trusted: TrustedProxies
) -> None:
    """Apply a trusted proxy's forwarding headers to ``environ`` (corral.http.forwarded); the
    client they name is also the access log's for this request (``Conn.reset`` restores it)."""
    port = environ["REMOTE_PORT"]
    client = (environ["REMOTE_ADDR"], int(port)) if port else None
    scheme = environ["wsgi.url_scheme"]
    resolved = resolve(conn.peer, None, scheme, request.headers, trusted, client=client)
    environ["wsgi.url_scheme"] = resolved.scheme
    if resolved.client is not None and resolved.client != client:
        environ["REMOTE_ADDR"], environ["REMOTE_PORT"] = resolved.client[0], str(resolved.client[1])
        conn.remote = resolved.client[0]
    if resolved.host is not None:
        environ["HTTP_HOST"] = resolved.host
    if resolved.server_host is not None:
        environ["SERVER_NAME"] = resolved.server_host
    if resolved.server_port is not None:
        environ["SERVER_PORT"] = str(resolved.server_port)
