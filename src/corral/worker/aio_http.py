"""One HTTP/1.1 connection of the ASGI worker: an ``asyncio.Protocol`` over the sans-IO core.

Theory of operation. The protocol feeds what the transport delivers to the same
``corral.http.Connection`` the WSGI worker drives, so parsing, limits, keep-alive, pipelining
and every strictness verdict are the same. A complete head starts a ``Cycle``: the app's call
runs as one task with the cycle's ``receive`` and ``send``.

* **Reading, with backpressure.** Body bytes stay in the core's buffer until the app awaits
  ``receive()``, which pulls the ``Data`` events there are (one message, however many pieces)
  and sends ``100 Continue`` the first time it must wait. Past ``READ_HIGH_WATER`` buffered
  bytes the transport stops reading, so a client cannot make the worker hold more than that
  per connection; the kernel's buffers fill and TCP slows the client.
* **Writing, with backpressure.** The head waits for the first body message, so a short
  response is one ``write``. ``send`` awaits the transport's drain once its buffer is past the
  high-water mark (``pause_writing``), at most ``send_timeout_s`` (then the connection is
  aborted and ``send`` raises ``ClientDisconnected``, an ``OSError`` as the spec asks).
* **Errors.** An exception before the head was written is a 500 and a log line (connection
  closed after it); after, the connection is closed. A broken request is answered once and the
  connection closed lingering (write side shut, the peer's bytes read away), as is a
  ``Connection: close`` response over a body the app left unread.
* **The next request.** When the response is complete the connection takes the next request
  (already-received pipelined bytes first, in order), even while the app's task still runs
  (background tasks); that task's ``receive`` then says ``http.disconnect``.
* **Deadlines** are swept by the worker once a second (``on_deadline``): the whole head within
  ``header_timeout_s``, each body wait ``body_timeout_s``, each drain wait ``send_timeout_s``,
  idle ``keepalive_timeout_s``, lingering ``linger_timeout_s``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from corral import hooks
from corral.asgi.detect import ASGI3, Message
from corral.asgi.scope import Address, http_scope, wants_websocket
from corral.http import CLOSED, NEED_DATA, Connection, Data, EndOfMessage, ProtocolError, Request
from corral.http.events import LocalProtocolError
from corral.http.forwarded import Peer
from corral.http.writer import phrase
from corral.stats.protocol import SlotWriter
from corral.worker import health
from corral.worker.accesslog import log_request
from corral.worker.aio_proxy import apply_forwarded
from corral.worker.producer import describe, internal_error
from corral.worker.settings import WorkerSettings

error_log = logging.getLogger("corral.error")

IDLE, HEAD, APP, BODY_WAIT, DRAIN_WAIT, LINGER, UPGRADED = range(7)
READ_HIGH_WATER = 256 * 1024  # received bytes held per connection before reading pauses
FILE_CHUNK = 256 * 1024  # http.response.pathsend reads the file this much at a time
_DISCONNECT: Message = {"type": "http.disconnect"}
_INF = float("inf")


class ClientDisconnected(OSError):
    """``send`` after the client went away (the ASGI spec's OSError subclass)."""


class Shared:
    """What every connection of one worker reads: the app, settings, counters, flags."""

    def __init__(
        self,
        app: ASGI3,
        settings: WorkerSettings,
        slot: SlotWriter,
        on_closed: Callable[[HttpProtocol], None],
        after_request: Callable[[float], None],
        upgrade: Callable[[HttpProtocol, Request], Any],
    ) -> None:
        self.app, self.settings, self.slot = app, settings, slot
        self.scheme = "https" if settings.tls is not None else settings.url_scheme
        self.conns: set[HttpProtocol] = set()
        self.on_closed = on_closed  # the worker's: counts, accepting again, end of a drain
        self.upgrade = upgrade  # a WebSocket handshake: the session that takes the connection
        self.after_request = after_request  # the worker's: memory check, stats publishing
        self.state: dict[str, Any] | None = None  # lifespan state, copied into each scope
        self.draining = False
        self.lame = False  # the master is stopping: the health path says 503
        self.websockets = 0
        self.publish_websockets: Callable[[int], None] = _ignore  # the scoreboard's word
        fmt = settings.access_log_format
        self.access = fmt or (settings.access_log if settings.access_log != "off" else "")

    def count_websocket(self, delta: int) -> None:
        self.websockets += delta
        self.publish_websockets(self.websockets)


def _ignore(count: int) -> None:
    pass


class HttpProtocol(asyncio.Protocol):
    """One client connection (see the module docstring)."""

    def __init__(
        self,
        shared: Shared,
        peer: Peer | None = None,
        named: Peer | None = None,
        preread: bytes = b"",
    ) -> None:
        self.shared = shared
        self.peer = peer  # the immediate peer: whose forwarding headers are trusted
        self.named = named  # the client a PROXY header named
        self.preread = preread  # bytes read with the PROXY check that belong to the request
        self.trusted = shared.settings.forwarded_allow.trusts(peer)
        self.settings = shared.settings
        self.proto = Connection(shared.settings.limits, shared.settings.native_head)
        self.transport: asyncio.Transport | None = None
        self.state = IDLE
        self.deadline = _INF
        self.cycle: Cycle | None = None
        self.closed = False
        self.reading_paused = False
        self.write_paused = False
        self.waiter: asyncio.Future[None] | None = None  # a cycle waiting for bytes or drain
        self.linger_left = 0
        self.remote = self.conn_remote = "-"  # for the access log (per request, per connection)
        self.client: Address = None
        self.server: Address = None
        self.upgraded: Any = None  # the WebSocket session after an upgrade (worker/aio_ws.py)
        # The last plain HTTP request and its scope (without state): a keep-alive client
        # sending the same head gets the core's cached Request object, and a copy of the scope.
        self.last_request: Request | None = None
        self.last_scope: dict[str, Any] = {}
        self.loop = asyncio.get_running_loop()

    # ----------------------------------------------------------------- transport callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment] # uvloop's is no subclass
        peer, local = transport.get_extra_info("peername"), transport.get_extra_info("sockname")
        if self.named is not None:
            self.client, self.remote = self.named, self.named[0]
        elif isinstance(peer, tuple):
            self.client, self.remote = (str(peer[0]), int(peer[1])), str(peer[0])
        else:
            self.remote = "unix"
        self.conn_remote = self.remote
        if isinstance(local, tuple):
            self.server = (str(local[0]), int(local[1]))
        else:
            self.server = (local if isinstance(local, str) else "", None)
        self.shared.conns.add(self)
        self.deadline = time.monotonic() + self.settings.keepalive_timeout_s
        if self.preread:
            self.data_received(self.preread)
            self.preread = b""

    def data_received(self, data: bytes) -> None:
        state = self.state
        if state == UPGRADED:
            self.upgraded.data_received(data)
            return
        if state == LINGER:
            self.linger_left -= len(data)
            if self.linger_left <= 0:
                self._close()
            return
        self.proto.receive_data(data)
        if state == IDLE:
            self.state = HEAD
            self.deadline = time.monotonic() + self.settings.header_timeout_s
        if self.cycle is None:
            self._advance()
        else:
            self._wake()
            if self.proto.buffered_bytes > READ_HIGH_WATER and not self.reading_paused:
                self.reading_paused = True
                self._transport.pause_reading()

    def eof_received(self) -> bool:
        if self.state == UPGRADED:
            self.upgraded.eof_received()
            return True
        if self.state == LINGER:
            self._close()
            return True
        self.proto.receive_data(b"")
        if self.cycle is None:
            self._advance()
        else:  # an app waiting for more of the body, or for http.disconnect, is told now;
            self._wake()  # what it still sends goes out: the write side stays open
            self.cycle.ended()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.shared.conns.discard(self)
        if self.upgraded is not None:
            self.upgraded.connection_lost()
        self._wake()
        if self.cycle is not None:
            self.cycle.ended()
        self.shared.on_closed(self)

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        self._wake()

    # ----------------------------------------------------------------- requests

    @property
    def _transport(self) -> asyncio.Transport:
        assert self.transport is not None
        return self.transport

    def _advance(self) -> None:
        """Parse what is buffered into the next request, if there is one."""
        if self.closed:
            return
        try:
            event = self.proto.next_event()
        except ProtocolError as exc:
            self.protocol_error(exc)
            return
        if type(event) is Request:
            self._on_request(event)
        elif event is CLOSED:
            self._close()
        elif event is not NEED_DATA:
            error_log.error("unexpected HTTP event %r between requests; closing", event)
            self._close()

    def _on_request(self, request: Request) -> None:
        shared = self.shared
        if shared.draining:
            self.proto.close_after_cycle()
        self.state, self.deadline = APP, _INF
        now = time.monotonic()
        cycle = self.cycle = Cycle(self, request, now)
        shared.slot.start_request(now, request.method, request.path)
        if request is self.last_request:  # the same head again (the core's head cache)
            scope = self.last_scope.copy()
        else:
            ha = self.settings.health_path
            if ha and (canned := health.answer(request.path, ha, shared.draining or shared.lame)):
                cycle.canned(canned)
                return
            if wants_websocket(request) and not (request.chunked or request.content_length):
                self.upgraded = shared.upgrade(self, request)  # corral.worker.aio_ws.WebSocket
                return
            settings = self.settings
            scope = http_scope(
                request, self.client, self.server, shared.scheme, settings.root_path, None
            )
            self.last_request, self.last_scope = request, scope.copy()
        if self.trusted:  # applied to a copy: the cached scope stays the socket's own view
            self.forwarded(scope, request)
        if shared.state is not None:
            scope["state"] = shared.state.copy()
        if hooks.per_request:
            hooks.pre_request(request, scope)
        self.loop.create_task(cycle.run(shared.app, scope))

    def forwarded(self, scope: dict[str, Any], request: Request) -> None:
        """A trusted proxy's X-Forwarded-*/Forwarded applied to the scope and access log."""
        named = apply_forwarded(scope, request, self.peer, self.settings.forwarded_allow)
        self.remote = named if named is not None else self.conn_remote

    def finished(self, cycle: Cycle) -> None:
        """The response is out: record it, then take the next request or close."""
        end = time.monotonic()
        shared, request = self.shared, cycle.request
        took = end - cycle.started
        received = self.proto.take_received()
        shared.slot.finish_request(end, cycle.status, took, received, cycle.bytes_out)
        if shared.access:
            log_request(shared.access, self.remote, request, cycle.status, cycle.bytes_out, took)
        if hooks.per_request:
            hooks.post_request(request, _HookResponse(cycle), cycle.bytes_out)
        shared.after_request(end)
        self.cycle = None
        if self.closed or self.state == UPGRADED:
            return
        if not self.proto.start_next_cycle():
            if cycle.body_done or not (request.chunked or request.content_length):
                self._close()
            else:
                self._linger(body=True)  # closing now would reset: the peer may lose it
            return
        if self.reading_paused:
            self.reading_paused = False
            self._transport.resume_reading()
        if self.proto.buffered_bytes:
            self.state, self.deadline = HEAD, end + self.settings.header_timeout_s
            self._advance()
        else:
            idle = self.settings.keepalive_timeout_s
            if shared.draining:
                idle = min(idle, self.settings.drain_idle_s)
            self.state, self.deadline = IDLE, end + idle

    # ----------------------------------------------------------------- waiting

    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def wait(self, state: int, timeout_s: float) -> None:
        """Wait for bytes (BODY_WAIT) or a drain (DRAIN_WAIT), the sweep bounding it."""
        self.state, self.deadline = state, time.monotonic() + timeout_s
        self.waiter = asyncio.get_running_loop().create_future()
        try:
            await self.waiter
        finally:
            self.waiter = None
            if self.state == state:
                self.state, self.deadline = APP, _INF

    def resume_reading(self) -> None:
        if self.reading_paused and self.proto.buffered_bytes <= READ_HIGH_WATER:
            self.reading_paused = False
            self._transport.resume_reading()

    # ----------------------------------------------------------------- ending

    def on_deadline(self, now: float) -> None:
        """The sweep found this connection past its deadline."""
        state = self.state
        if state in (HEAD, BODY_WAIT):
            cycle = self.cycle
            if cycle is None or not cycle.head_sent:
                self.protocol_error(ProtocolError(408, "Request Timeout"))
            else:
                self._close()
            self._wake()
        elif state == IDLE:
            self._linger()  # FIN first: a request sent meanwhile meets no reset
        else:  # a stalled reader, or the lingering time is over
            self._abort()

    def begin_drain(self, now: float) -> None:
        """The worker is draining: close idle connections soon, end kept-alive ones."""
        if self.state == IDLE:
            self.deadline = min(self.deadline, now + self.settings.drain_idle_s)
        elif self.state == UPGRADED:
            self.upgraded.going_away()
        elif self.cycle is not None and not self.cycle.head_sent:
            self.proto.close_after_cycle()

    def protocol_error(self, exc: ProtocolError) -> None:
        """Answer a broken request once, then close lingering."""
        if self.closed:
            return
        try:
            self._transport.write(self.proto.error_response(exc))
        except Exception:
            error_log.exception("could not build the error response")
        if self.shared.access:
            log_request(self.shared.access, self.remote, self.proto.request, exc.status, 0)
        if self.cycle is not None:
            self.cycle.failed = True
        self._linger()

    def _linger(self, body: bool = False) -> None:
        transport = self._transport
        if self.closed or not transport.can_write_eof():
            self._close()
            return
        try:
            transport.write_eof()
        except OSError:
            self._close()
            return
        settings = self.settings
        self.state = LINGER
        self.deadline = time.monotonic() + (
            settings.body_timeout_s if body else settings.linger_timeout_s
        )
        self.linger_left = settings.linger_max_bytes + (
            settings.limits.max_body_size if body else 0
        )
        self.resume_reading()

    def _close(self) -> None:
        if not self.closed:
            self.closed = True  # connection_lost follows once the write buffer is out
            self.deadline = time.monotonic() + self.settings.send_timeout_s
            self.state = DRAIN_WAIT  # a peer that never reads is aborted by the sweep
            self._transport.close()

    def _abort(self) -> None:
        self.closed = True
        self._transport.abort()


class Cycle:
    """One request and its response: the app's ``receive`` and ``send``."""

    __slots__ = (
        "body_done",
        "bytes_out",
        "conn",
        "done",
        "failed",
        "has_length",
        "head_sent",
        "headers",
        "request",
        "response_complete",
        "started",
        "status",
        "trailers",
    )

    def __init__(self, conn: HttpProtocol, request: Request, now: float) -> None:
        self.conn = conn
        self.request = request
        self.started = now
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] | None = None  # start received, head not sent
        self.head_sent = False
        self.has_length = False  # the app set a Content-Length
        self.trailers = False
        self.body_done = False
        self.response_complete = False
        self.failed = False  # answered by the worker (error, timeout): nothing more to send
        self.bytes_out = 0
        self.done: asyncio.Future[None] | None = None  # resolved when the cycle is over

    # ----------------------------------------------------------------- the app's call

    async def run(self, app: ASGI3, scope: dict[str, Any]) -> None:
        try:
            await app(scope, self.receive, self.send)
        except ClientDisconnected:
            self._app_failed("")  # the client went (or was answered already): nothing to log
        except Exception:
            self._app_failed("the ASGI app raised")
        else:
            if not self.response_complete and not self.failed:
                if self.headers is None and not self.head_sent:
                    error_log.error("ASGI app returned without a response (%s)", self._what)
                self._app_failed("")

    @property
    def _what(self) -> str:
        return describe(self.request)

    def _app_failed(self, what: str) -> None:
        if self.response_complete or self.failed:
            if what:
                error_log.exception("%s after its response (%s)", what, self._what)
            return
        if what:
            error_log.exception("%s (%s)", what, self._what)
        self.failed = True
        conn = self.conn
        if conn.closed:
            self._complete()
            return
        if self.head_sent:
            conn._abort()  # the response started: all that is left is to close
            self._complete()
            return
        self.status = 500
        conn._transport.write(internal_error(conn.proto))
        self._complete()

    def canned(self, canned: health.Canned) -> None:
        """The health path's answer, sent without the app."""
        headers = [(n.encode("latin-1"), v.encode("latin-1")) for n, v in canned.headers]
        headers.append((b"content-length", b"%d" % len(canned.body)))
        proto = self.conn.proto
        self.status, self.body_done = canned.status, True
        out = proto.send_response(canned.status, headers) + proto.send_data(canned.body)
        self.conn._transport.write(out + proto.send_eom())
        self.bytes_out = len(canned.body)
        self._drop_body()
        self._complete()

    def _drop_body(self) -> None:
        """Pull a body nobody will read, so the next request is not mistaken for it."""
        try:
            while type(self.conn.proto.next_event()) is Data:
                pass
        except ProtocolError:
            pass

    # ----------------------------------------------------------------- receive

    async def receive(self) -> Message:
        conn = self.conn
        while not self.body_done:
            if conn.closed or self.failed:
                return _DISCONNECT
            pieces: list[bytes] = []
            proto = conn.proto
            try:
                while True:
                    event = proto.next_event()
                    if type(event) is Data:
                        pieces.append(event.data)  # type: ignore[union-attr]
                    else:
                        if type(event) is EndOfMessage:
                            self.body_done = True
                        break
            except ProtocolError as exc:
                self.body_done = True
                if not self.head_sent:
                    conn.protocol_error(exc)
                else:
                    conn._abort()
                return _DISCONNECT
            if pieces or self.body_done:
                conn.resume_reading()
                body = pieces[0] if len(pieces) == 1 else b"".join(pieces)
                return {"type": "http.request", "body": body, "more_body": not self.body_done}
            cont = proto.send_continue()
            if cont:
                conn._transport.write(cont)
            conn.resume_reading()
            await conn.wait(BODY_WAIT, conn.settings.body_timeout_s)
        if not self.response_complete and not conn.closed:
            if self.done is None:
                self.done = asyncio.get_running_loop().create_future()
            await self.done  # the spec: block until the client goes or the response is out
        return _DISCONNECT

    def ended(self) -> None:
        done = self.done
        if done is not None and not done.done():
            done.set_result(None)

    # ----------------------------------------------------------------- send

    async def send(self, message: Message) -> None:
        kind = message["type"]
        conn = self.conn
        if kind == "http.response.body" and self.headers is not None and not conn.closed:
            if self.failed:
                raise ClientDisconnected("the response was already given by the server")
            if self.response_complete:
                raise RuntimeError(f"{kind} after the response was complete")
            body = message.get("body", b"")
            await self._body(
                body if type(body) is bytes else bytes(body), message.get("more_body", False)
            )
            return
        if kind == "http.response.start":
            if self.headers is not None or self.head_sent:
                raise RuntimeError("http.response.start sent twice")
            status = message["status"]
            if type(status) is not int or not 200 <= status <= 999:
                raise RuntimeError(f"invalid ASGI response status {status!r}")
            self.status = status
            self.headers, self.has_length = _header_list(message.get("headers", ()))
            self.trailers = bool(message.get("trailers", False))
            return
        if self.failed or conn.closed:
            if self.response_complete and not conn.closed:
                raise RuntimeError(f"{kind} after the response was complete")
            raise ClientDisconnected("the client closed the connection")
        if self.response_complete:
            raise RuntimeError(f"{kind} after the response was complete")
        if kind == "http.response.body":
            body = message.get("body", b"")
            more = bool(message.get("more_body", False))
            await self._body(bytes(body) if type(body) is not bytes else body, more)
        elif kind == "http.response.pathsend":
            await self._pathsend(str(message["path"]))
        elif kind == "http.response.trailers":
            if not self.trailers or not self.head_sent:
                raise RuntimeError("http.response.trailers without trailers=True in the start")
            if not message.get("more_trailers", False):
                self._write(conn.proto.send_eom())  # trailer fields are not sent (docs/asgi.md)
                self._complete()
        else:
            raise RuntimeError(f"unexpected ASGI message {kind!r} in an HTTP connection")

    async def _body(self, body: bytes, more: bool) -> None:
        proto = self.conn.proto
        if self.head_sent:
            out = b""
        elif more or self.trailers or self.has_length:
            out = self._head()
        else:  # the whole body in one message: a Content-Length instead of chunks
            out = self._head(len(body))
        try:
            if body:
                out += proto.send_data(body)
        except LocalProtocolError as exc:  # more than its Content-Length
            self._write(out)
            raise RuntimeError(f"ASGI app sent a bad response: {exc}") from None
        self.bytes_out += len(body)
        end = not more and not self.trailers
        if end:
            out += proto.send_eom()
        self._write(out)
        if end:
            self._complete()
        elif self.conn.write_paused:
            await self._drain()

    def _head(self, length: int = -1) -> bytes:
        headers = self.headers
        if headers is None:
            raise RuntimeError("http.response.body before http.response.start")
        if length >= 0:
            headers = [*headers, (b"content-length", b"%d" % length)]
        try:
            head = self.conn.proto.send_response(self.status, headers)
        except LocalProtocolError as exc:
            raise RuntimeError(f"ASGI app sent a bad response head: {exc}") from None
        self.head_sent = True
        return head

    async def _pathsend(self, path: str) -> None:
        with open(path, "rb") as file:  # a local file: reads do not wait
            out = self._head() if not self.head_sent else b""
            proto = self.conn.proto
            while piece := file.read(FILE_CHUNK):
                self._write(out + proto.send_data(piece))
                out = b""
                self.bytes_out += len(piece)
                if self.conn.write_paused:
                    await self._drain()
                if self.conn.closed:
                    raise ClientDisconnected("the client closed the connection")
            self._write(out + proto.send_eom())
        self._complete()

    def _write(self, data: bytes) -> None:
        if data and not self.conn.closed:
            self.conn._transport.write(data)

    async def _drain(self) -> None:
        conn = self.conn
        while conn.write_paused and not conn.closed:
            await conn.wait(DRAIN_WAIT, conn.settings.send_timeout_s)
        if conn.closed:
            raise ClientDisconnected("the client closed the connection")

    def _complete(self) -> None:
        if not self.response_complete:
            self.response_complete = True
            self.ended()
            self.conn.finished(self)


class _HookResponse:
    """What gunicorn's ``post_request(worker, req, environ, resp)`` reads of a response."""

    def __init__(self, cycle: Cycle) -> None:
        self.status_code = cycle.status
        self.status = f"{cycle.status} {phrase(cycle.status).decode('latin-1')}"
        self.headers = cycle.headers or []


def _header_list(headers: Any) -> tuple[list[tuple[bytes, bytes]], bool]:
    """The app's headers as a list of (bytes, bytes) tuples -- the app's own list when it is
    one already, so the head cache sees the same list again -- and whether one of them is
    Content-Length. A TypeError names a bad item."""
    length = False
    if type(headers) is list:
        for item in headers:
            if type(item) is not tuple or len(item) != 2 or type(item[0]) is not bytes:
                break
            if type(item[1]) is not bytes:
                break
            if len(item[0]) == 14 and item[0].lower() == b"content-length":
                length = True
        else:
            return headers, length
    out: list[tuple[bytes, bytes]] = []
    for item in headers:
        name, value = item
        if not isinstance(name, bytes) or not isinstance(value, bytes):
            raise TypeError(f"ASGI header names and values must be bytes, got {item!r}")
        out.append((bytes(name), bytes(value)))
        length = length or name.lower() == b"content-length"
    return out, length
