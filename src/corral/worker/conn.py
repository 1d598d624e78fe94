"""One client connection as the worker loop sees it: a socket, its sans-IO HTTP state, and
where it is in its life.

Lifecycle (``state``), all driven by the loop in ``corral.worker.loop``::

    IDLE --first byte--> HEAD --Request--> BODY --EndOfMessage--> (app runs)
      ^                                       |                       |
      |                                 large/chunked/100-continue:    v
      |                                 app runs, wsgi.input streams   response sent at once
      +---------- response complete, start_next_cycle() ------------- or WRITING (EPOLLOUT)
    any reading state --ProtocolError/timeout--> LINGER (error sent, SHUT_WR, drain) --> closed
    response with Connection: close over an unread body -------> LINGER (as above)
    request complete while the worker holds too many unsent bytes --> PARKED --> (app runs)
    with threads > 1, "app runs" is the APP state: the socket is out of epoll, a thread owns it

Each state has one deadline (``deadline``, a ``time.monotonic()`` value) that the loop's
once-a-second sweep enforces: IDLE keep-alive timeout, HEAD whole-head timeout (a slowloris
client cannot extend it by trickling bytes), BODY whole-body timeout, WRITING send progress,
LINGER drain time.
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Callable, Collection
from typing import Any

from corral.http import Connection, ProtocolError, Request
from corral.http.proxyproto import ProxyMode
from corral.worker.producer import Producer, SendFile
from corral.worker.proxied import Preface, ProxiedSocket, client_from
from corral.worker.settings import WorkerSettings
from corral.worker.tls import wrap
from corral.wsgi import FileWrapper, InputStream, StartResponse, connection_environ

IDLE = 0  # between requests, nothing buffered
HEAD = 1  # part of a request head received
BODY = 2  # head received, reading a small body in the loop
WRITING = 3  # response in progress, waiting for the socket to drain (EPOLLOUT)
LINGER = 4  # error answered; write side shut; discarding what the peer still sends
APP = 5  # owned by an app thread (threads > 1); the loop does not touch it until handed back
PARKED = 6  # request complete, app call deferred: the worker holds too many unsent bytes


def _unset_write(data: bytes) -> None:
    raise RuntimeError("connection has no write() yet")


class Conn:
    """Per-connection state; plain attributes, reused across requests on the connection."""

    __slots__ = (
        "abort",
        "base",
        "body_error",
        "bytes_out",
        "chunks",
        "deadline",
        "fd",
        "file",
        "fresh",
        "held",
        "input",
        "linger_end",
        "linger_left",
        "must_close",
        "out",
        "peer",
        "producer",
        "proto",
        "remote",
        "request",
        "resp",
        "sendfile",
        "sock",
        "source",
        "started",
        "state",
        "trusted",
        "write",
        "writing",
    )

    def __init__(
        self, sock: socket.socket, proto: Connection, base: dict[str, Any], remote: str
    ) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.proto = proto
        self.base = base  # per-connection environ part (corral.wsgi.connection_environ)
        self.remote = remote  # for the access log
        self.peer: tuple[str, int] | None = None  # the socket's peer (None: a unix socket)
        self.trusted = False  # the peer is in forwarded_allow_ips (corral.worker.proxied)
        self.sendfile = True  # False on TLS: sendfile(2) would send the file unencrypted
        self.state = IDLE
        self.deadline = 0.0
        self.writing = False  # registered for EPOLLOUT instead of EPOLLIN
        self.linger_left = 0
        self.fresh = True  # no byte received yet: first to go when the cap is reached
        self.linger_end = 0.0  # the whole lingering close ends by then
        self.write: Callable[[bytes], None] = _unset_write
        self.producer = Producer(self)  # the response of each request (sans-IO)
        # Not reset per request: emptied when the buffers leave, cleared when the app runs.
        self.held: list[bytes | memoryview] = []  # buffers counted in the worker's pending bytes
        self.source: Any = None  # PARKED: the body source the app will get
        self.reset()

    def reset(self) -> None:
        """Forget the finished request; keep the connection."""
        self.remote = self.base["REMOTE_ADDR"]  # a proxy's X-Forwarded-For named another
        self.request: Request | None = None
        self.chunks: list[bytes] = []
        self.resp: StartResponse | None = None
        self.input: InputStream | None = None
        self.file: SendFile | None = None  # the rest of a sendfile step
        self.out: bytes | memoryview | list[bytes | memoryview] = b""  # unsent output
        self.bytes_out = 0
        self.started = 0.0
        self.must_close = False
        self.abort = False  # an app thread gave up mid-response: close without a word
        self.body_error: ProtocolError | None = None


def accepted(
    sock: socket.socket,
    addr: Any,
    server: tuple[str, str],
    settings: WorkerSettings,
    watch: Callable[[int, int], None] | None = None,
) -> Conn:
    """A just-accepted client socket as a ``Conn``: non-blocking, no Nagle on TCP, and the
    per-connection part of every request's environ (``server``: ``server_address()``).
    A PROXY header to read first, and TLS, wrap the socket (``watch``: epoll's ``modify``,
    for a handshake that must wait until it can write)."""
    sock.setblocking(False)
    peer: tuple[str, int] | None = None
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        remote_addr, remote_port = str(addr[0]), str(addr[1])
        peer = (remote_addr, int(addr[1]))
    else:
        remote_addr, remote_port = "unix", ""  # AF_UNIX peers are unnamed
    preface = None
    if settings.proxy_protocol is not ProxyMode.OFF and settings.proxy_allow.trusts(peer):
        preface = Preface(settings.proxy_protocol, remote_addr)
    tls = settings.tls
    if tls is not None:
        deadline = time.monotonic() + settings.header_timeout_s
        sock = wrap(sock, tls, deadline, watch, preface)
    elif preface is not None:
        sock = ProxiedSocket.adopt(sock, preface)
    base = connection_environ(
        server_name=server[0],
        server_port=server[1],
        remote_addr=remote_addr,
        remote_port=remote_port,
        url_scheme="https" if tls is not None else settings.url_scheme,
        multithread=settings.threads > 1,
        file_wrapper=FileWrapper,
    )
    conn = Conn(sock, Connection(settings.limits, settings.native_head), base, remote_addr)
    conn.peer, conn.trusted, conn.sendfile = peer, settings.forwarded_allow.trusts(peer), not tls
    if preface is not None:
        preface.on_header = client_from(conn)
    return conn


def server_address(lsock: socket.socket) -> tuple[str, str]:
    """(SERVER_NAME, SERVER_PORT) of a listener, used when a request has no Host."""
    if lsock.family in (socket.AF_INET, socket.AF_INET6):
        addr = lsock.getsockname()
        return str(addr[0]), str(addr[1])
    return "localhost", "80"  # a unix socket has no port; keep URLs buildable


SLOW_HEAD_S = 1.0  # a head still arriving after this long gives way at the connection cap


def give_way(conns: Collection[Conn], settings: WorkerSettings, now: float) -> Conn | None:
    """At the worker's connection cap (none below it), for a client waiting in the backlog:
    the connection to close for it. First the oldest that never sent a byte, as nginx reuses such
    connections when ``worker_connections`` run out; else the oldest whose head has been
    arriving for over ``SLOW_HEAD_S`` (slowloris: real heads come in one segment, and a
    stalled one would hold its slot for ``header_timeout_s``). One with bytes waiting unread
    is skipped: it is not stalled, and closing it would reset them."""
    if len(conns) < settings.max_connections:
        return None
    silent = sorted((c for c in conns if c.fresh and c.state == IDLE), key=_deadline)
    slow_from = (
        now + settings.header_timeout_s - SLOW_HEAD_S
    )  # a HEAD deadline is first byte + timeout
    slow = sorted((c for c in conns if c.state == HEAD and c.deadline <= slow_from), key=_deadline)
    for conn in (*silent, *slow):
        with contextlib.suppress(OSError):  # would block: stalled indeed
            if conn.sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT):
                continue
        return conn
    return None


def bow_out(conn: Conn) -> Conn:
    """Before ``give_way``'s choice is closed: a slow head is told 408, as at its timeout
    (best effort; nothing is queued on a connection still reading its head)."""
    if conn.state == HEAD:
        with contextlib.suppress(OSError):
            timeout = ProtocolError(408, "Request Timeout")
            conn.sock.send(conn.proto.error_response(timeout), socket.MSG_DONTWAIT)
    return conn


def _deadline(conn: Conn) -> float:
    return conn.deadline
