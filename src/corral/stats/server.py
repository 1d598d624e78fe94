"""A tiny HTTP/1.1 server for /metrics, /stats, /healthz and the dashboard, inside the master.

Theory of operation
-------------------
The master runs one single-threaded selector loop; every registration's ``data`` is a callback
``cb(fileobj, mask)``. ``StatsServer.register(selector)`` adds the listening socket; each accepted
connection gets its own callback object that reads a request head, answers it and closes
(``Connection: close``: a scraper or a dashboard poll once a second gains nothing from
keep-alive, and a one-shot exchange keeps the master's state trivially small).

The master must never block or grow on behalf of a client, so: sockets are non-blocking; a
request head is capped at ``MAX_REQUEST_BYTES`` (8 KiB, nginx's ``large_client_header_buffers``
size) and answered 431 beyond it; at most ``MAX_CONNECTIONS`` are open, the oldest idle one is
dropped to admit a new one; a connection that has not finished within ``CLIENT_TIMEOUT_S``
(nginx ``client_header_timeout`` 60 s is for the open internet; a loopback scraper needs far
less) is closed on the next accept or ``expire()`` call. Only GET and HEAD exist (405 otherwise,
with ``Allow``, RFC 9110 section 15.5.6); bodies are never read.

The stats address is loopback-only unless the operator opts in (``check_stats_address``): the
page shows pids, request paths and memory figures. Loopback is not enough against DNS
rebinding (a page on ``evil.example`` whose name then resolves to 127.0.0.1 reads the answers
as same-origin), so a request must name the server in ``Host``: the local address the client
reached (an IP literal, which no rebinding can fake), ``localhost`` names when that address
is loopback, or a name listed in ``allowed_hosts`` (the ``stats_allowed_hosts`` setting).
Any other Host gets 421 Misdirected Request (RFC 9110 §15.5.20), a missing one 400 in HTTP/1.1
(RFC 9112 §3.2; HTTP/1.0 clients may omit it, and browsers always send it).
"""

from __future__ import annotations

import contextlib
import email.utils
import ipaddress
import logging
import re
import selectors
import socket
import time
from collections.abc import Callable, Iterable
from importlib import resources

from corral.stats.exposition import (
    CONTENT_TYPE_JSON,
    CONTENT_TYPE_PROMETHEUS,
    render_json,
    render_prometheus,
)
from corral.stats.fleet import FleetSnapshot

log = logging.getLogger("corral.stats")

MAX_REQUEST_BYTES = 8192
MAX_CONNECTIONS = 32
CLIENT_TIMEOUT_S = 10.0
RECV_BYTES = 4096
ACCEPT_BATCH = 16  # accepts per readiness event, so a flood cannot starve the master's loop
# After an accept error (EMFILE, ENFILE, ENOBUFS) accepting pauses, 0.5 s doubling to 8 s while
# the error lasts (the workers pause for their tick; the master's loop resumes us in expire()).
ACCEPT_PAUSE_MIN_S = 0.5
ACCEPT_PAUSE_MAX_S = 8.0

_LOCALHOST_NAMES = frozenset({"localhost", "localhost.", "localhost.localdomain"})
_ASSET_NAME = re.compile(r"^[A-Za-z0-9_-]+\.(html|js|css|svg|png|ico)$")
_ASSET_TYPES = {
    "html": "text/html; charset=utf-8",
    "js": "text/javascript; charset=utf-8",
    "css": "text/css; charset=utf-8",
    "svg": "image/svg+xml",
    "png": "image/png",
    "ico": "image/x-icon",
}
_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    421: "Misdirected Request",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
}

Provider = Callable[[], FleetSnapshot]
Response = tuple[int, str, bytes]


def check_stats_address(host: str, allow_remote: bool) -> None:
    """Refuse a non-loopback stats address unless ``allow_remote`` (raises ValueError)."""
    if allow_remote or host.strip("[]").lower() == "localhost":
        return
    try:
        loopback = ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ValueError(
            f"stats address {host!r} is not a loopback address; the stats server shows pids, "
            "request paths and memory figures and has no authentication. Bind it to 127.0.0.1 "
            "or ::1, or set stats_allow_remote to expose it deliberately."
        )


def bind_stats_socket(host: str, port: int, *, allow_remote: bool = False) -> socket.socket:
    """A listening, non-blocking socket for ``StatsServer`` (port 0 picks a free port)."""
    check_stats_address(host, allow_remote)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host.strip("[]"), port))
        sock.listen(64)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


class _Assets:
    """Static files shipped in ``corral/stats/assets``, read once and kept."""

    def __init__(self) -> None:
        self._cache: dict[str, bytes] = {}

    def get(self, name: str) -> bytes | None:
        if not _ASSET_NAME.match(name):
            return None
        if name not in self._cache:
            entry = resources.files("corral.stats").joinpath("assets", name)
            if not entry.is_file():
                return None
            self._cache[name] = entry.read_bytes()
        return self._cache[name]


def _response(status: int, content_type: str, body: bytes, *, head: bool = False) -> bytes:
    lines = [
        f"HTTP/1.1 {status} {_REASONS.get(status, 'Unknown')}",
        f"Date: {email.utils.formatdate(usegmt=True)}",
        f"Content-Type: {content_type}",
        f"Content-Length: {len(body)}",
        "Cache-Control: no-store",
        "X-Content-Type-Options: nosniff",
        "Connection: close",
    ]
    if status == 405:
        lines.append("Allow: GET, HEAD")
    head_bytes = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return head_bytes if head else head_bytes + body


def _text(status: int, message: str) -> Response:
    return status, "text/plain; charset=utf-8", (message + "\n").encode()


class _Connection:
    """One accepted client: read a request head, queue the answer, send it, close."""

    __slots__ = ("_inbox", "_lingering", "_outbox", "_server", "opened_at", "sock")

    def __init__(self, server: StatsServer, sock: socket.socket, now: float) -> None:
        self._server = server
        self.sock = sock
        self.opened_at = now
        self._inbox = bytearray()
        self._outbox = memoryview(b"")
        self._lingering = False

    def __call__(self, fileobj: object, mask: int) -> None:
        try:
            if mask & selectors.EVENT_READ and self._lingering:
                self._on_linger()
            elif mask & selectors.EVENT_READ and not self._outbox:
                self._on_readable()
            elif mask & selectors.EVENT_WRITE:
                self._on_writable()
        except OSError:
            self._server._close(self)

    def _on_readable(self) -> None:
        try:
            chunk = self.sock.recv(RECV_BYTES)
        except (BlockingIOError, InterruptedError):
            return
        if not chunk:
            self._server._close(self)
            return
        self._inbox += chunk
        end = self._inbox.find(b"\r\n\r\n")
        if end >= 0:
            self._reply(self._server._answer(bytes(self._inbox[:end]), self.sock))
        elif len(self._inbox) > MAX_REQUEST_BYTES:
            self._reply(_response(*_text(431, "request head too large")))

    def _reply(self, data: bytes) -> None:
        self._outbox = memoryview(data)
        self._server._selector_modify(self, selectors.EVENT_WRITE)

    def _on_writable(self) -> None:
        try:
            sent = self.sock.send(self._outbox)
        except (BlockingIOError, InterruptedError):
            return
        self._outbox = self._outbox[sent:]
        if not self._outbox:
            # Lingering close (nginx lingering_close): closing with unread request bytes makes
            # the kernel send RST, which can destroy the response before the client reads it.
            self.sock.shutdown(socket.SHUT_WR)
            self._lingering = True
            self._server._selector_modify(self, selectors.EVENT_READ)

    def _on_linger(self) -> None:
        try:
            if self.sock.recv(RECV_BYTES):
                return
        except (BlockingIOError, InterruptedError):
            return
        self._server._close(self)


class StatsServer:
    """Serves /metrics, /stats, /healthz, / and /assets/* from the master's selector loop."""

    def __init__(
        self,
        sock: socket.socket,
        provider: Provider,
        *,
        healthy: Callable[[], bool],
        clock: Callable[[], float] = time.monotonic,
        allowed_hosts: Iterable[str] = (),
    ) -> None:
        self.sock = sock
        self._allowed_hosts = frozenset(h.lower().strip("[]") for h in allowed_hosts)
        self._provider = provider
        self._healthy = healthy
        self._clock = clock
        self._assets = _Assets()
        self._selector: selectors.BaseSelector | None = None
        self._connections: dict[socket.socket, _Connection] = {}
        self._paused = False  # accepting paused after an accept error (EMFILE...)
        self._resume_at = 0.0
        self._accept_pause_s = ACCEPT_PAUSE_MIN_S

    @property
    def address(self) -> tuple[str, int]:
        """(host, port) actually bound."""
        host, port = self.sock.getsockname()[:2]
        return str(host), int(port)

    def register(self, selector: selectors.BaseSelector) -> None:
        """Start accepting; callbacks follow the loop rule ``key.data(fileobj, mask)``."""
        self.sock.setblocking(False)
        self._selector = selector
        selector.register(self.sock, selectors.EVENT_READ, self._on_accept)

    def close(self) -> None:
        """Unregister and close the listener and every client connection."""
        for conn in list(self._connections.values()):
            self._close(conn)
        if self._selector is not None:
            if not self._paused:
                self._selector.unregister(self.sock)
            self._selector = None
        self.sock.close()

    def expire(self, now: float | None = None) -> None:
        """Close clients older than CLIENT_TIMEOUT_S (also done on every accept); resume
        accepting after a pause that is over. The owner's loop calls it about once a second."""
        now = self._clock() if now is None else now
        for conn in [c for c in self._connections.values() if now - c.opened_at > CLIENT_TIMEOUT_S]:
            self._close(conn)
        self._resume_accepting(now)

    def _on_accept(self, fileobj: object, mask: int) -> None:
        now = self._clock()
        self.expire(now)
        for _ in range(ACCEPT_BATCH):
            try:
                client, _addr = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionAbortedError:  # the client gave up in the queue: next one
                continue
            except OSError as exc:  # EMFILE and friends: pause, keep the master alive
                self._pause_accepting(now, exc)
                return
            self._accept_pause_s = ACCEPT_PAUSE_MIN_S  # accepting works: forget the backoff
            self._admit(client, now)

    def _pause_accepting(self, now: float, exc: OSError) -> None:
        """The listener stays readable while accept() fails, so a level-triggered loop
        would spin (8,462 warnings in 2 s were seen): unregister it until ``expire`` finds
        the pause over, doubling the pause while the error persists. One log line a pause."""
        pause = self._accept_pause_s
        self._accept_pause_s = min(pause * 2, ACCEPT_PAUSE_MAX_S)
        self._resume_at = now + pause
        if self._selector is not None and not self._paused:
            self._selector.unregister(self.sock)
        self._paused = True
        log.warning("stats server: accept failed (%s); pausing accepts for %.1f s", exc, pause)

    def _resume_accepting(self, now: float) -> None:
        if self._paused and now >= self._resume_at and self._selector is not None:
            self._paused = False
            self._selector.register(self.sock, selectors.EVENT_READ, self._on_accept)

    def _admit(self, client: socket.socket, now: float) -> None:
        if len(self._connections) >= MAX_CONNECTIONS:
            self._close(min(self._connections.values(), key=lambda c: c.opened_at))
        client.setblocking(False)
        conn = _Connection(self, client, now)
        self._connections[client] = conn
        assert self._selector is not None
        self._selector.register(client, selectors.EVENT_READ, conn)

    def _selector_modify(self, conn: _Connection, events: int) -> None:
        assert self._selector is not None
        self._selector.modify(conn.sock, events, conn)

    def _close(self, conn: _Connection) -> None:
        if self._connections.pop(conn.sock, None) is None:
            return
        if self._selector is not None:
            self._selector.unregister(conn.sock)
        conn.sock.close()

    def _answer(self, head: bytes, client: socket.socket | None = None) -> bytes:
        """The complete response bytes for one request head from ``client``."""
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            return _response(*_text(400, "bad request line"))
        method, target, version = parts
        refused = self._check_host(lines[1:], version == "HTTP/1.1", client)
        if refused is not None:
            return _response(*refused)
        if method not in ("GET", "HEAD"):
            return _response(*_text(405, "only GET and HEAD are allowed"))
        status, ctype, body = self._route(target.split("?", 1)[0])
        return _response(status, ctype, body, head=method == "HEAD")

    def _check_host(
        self, fields: list[str], http11: bool, client: socket.socket | None
    ) -> Response | None:
        """None when ``Host`` names this server (see the module docstring), else the answer."""
        hosts = [v.strip(" \t") for n, _, v in (f.partition(":") for f in fields)
                 if n.lower() == "host"]  # fmt: skip
        if len(hosts) > 1 or (http11 and not hosts):
            return _text(400, "missing or duplicate Host header")
        if not hosts:
            return None
        name = _host_name(hosts[0])
        with contextlib.suppress(ValueError):
            name = str(ipaddress.ip_address(name))  # one spelling per address
        if name in self._allowed_hosts or name in self._local_names(client):
            return None
        return _text(421, f"this server does not answer for Host {hosts[0]!r}")

    def _local_names(self, client: socket.socket | None) -> set[str]:
        try:
            local = (client or self.sock).getsockname()[0]
            ip = ipaddress.ip_address(str(local).split("%")[0])
        except (OSError, ValueError):
            return set()
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped  # a dual-stack listener reached over IPv4
        names = {str(ip)}
        if ip.is_loopback:
            names |= _LOCALHOST_NAMES | {"127.0.0.1", "::1"}
        return names

    def _route(self, path: str) -> Response:
        if path == "/healthz":
            return _text(200, "ok") if self._healthy() else _text(503, "draining")
        if path in ("/metrics", "/stats"):
            return self._dynamic(path)
        if path in ("/", "/index.html"):
            path = "/assets/dashboard.html"
        if path.startswith("/assets/"):
            name = path[len("/assets/") :]
            data = self._assets.get(name)
            if data is not None:
                return 200, _ASSET_TYPES[name.rsplit(".", 1)[1]], data
        return _text(404, "not found")

    def _dynamic(self, path: str) -> Response:
        try:
            snap = self._provider()
            if path == "/metrics":
                return 200, CONTENT_TYPE_PROMETHEUS, render_prometheus(snap).encode()
            return 200, CONTENT_TYPE_JSON, render_json(snap).encode()
        except Exception:  # a stats bug must not take the master down
            log.exception("stats server: rendering %s failed", path)
            return _text(500, "stats unavailable")


def _host_name(value: str) -> str:
    """The host part of a Host value, lower-cased, without port or IPv6 brackets."""
    value = value.lower()
    if value.startswith("["):
        return value[1:].partition("]")[0]
    name, sep, port = value.rpartition(":")
    return name if sep and (port.isdigit() or not port) else value
