"""WebSockets of the ASGI worker (RFC 6455), framed by ``wsproto``.

Theory of operation. A request the HTTP core parsed and ``corral.asgi.scope.wants_websocket``
recognised leaves HTTP: the connection hands its remaining bytes over
(``Connection.take_buffered``) and the head is given to ``wsproto``, which checks the opening
handshake (version, key, extensions) and frames everything after it. The app sees the ASGI
websocket events: ``websocket.connect`` first; ``websocket.accept`` (with a subprotocol and
headers; ``permessage-deflate`` when the client offers it), ``websocket.send``/``receive``,
``websocket.close``; a close before the accept, or ``websocket.http.response.*``, denies the
handshake with an HTTP response.

Limits: a message over ``ws_max_message_bytes`` closes with 1009; a ping every
``ws_ping_interval_s`` and no pong within ``ws_ping_timeout_s`` closes with 1011 (and the
connection, if the peer does not answer the close). A graceful stop sends 1001 ("going away")
and waits for the peer's close as long as the drain allows. Received frames are kept only for
the message being assembled and the messages the app has not received yet; past
``READ_HIGH_WATER`` of those, reading pauses.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from typing import Any

from wsproto import ConnectionType, WSConnection
from wsproto.connection import ConnectionState
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Event,
    Ping,
    Pong,
    RejectConnection,
    RejectData,
    TextMessage,
)
from wsproto.events import Request as WsRequest
from wsproto.extensions import PerMessageDeflate
from wsproto.utilities import LocalProtocolError as WsLocalError
from wsproto.utilities import RemoteProtocolError

from corral.asgi.detect import Message
from corral.asgi.scope import subprotocols, websocket_scope
from corral.http import ProtocolError, Request
from corral.worker.accesslog import log_request
from corral.worker.aio_http import READ_HIGH_WATER, UPGRADED, ClientDisconnected, HttpProtocol
from corral.worker.producer import describe

error_log = logging.getLogger("corral.error")
_INF = float("inf")


def _head(request: Request) -> bytes:
    """The request head again, for wsproto's handshake parser (the core validated it)."""
    lines = [b"GET %s HTTP/1.1" % request.target]
    lines += [name + b": " + value for name, value in request.headers]
    return b"\r\n".join(lines) + b"\r\n\r\n"


class WebSocket:
    """One upgraded connection and the app's call on it."""

    def __init__(self, conn: HttpProtocol, request: Request) -> None:
        self.conn = conn
        self.request = request
        self.settings = conn.settings
        conn.state, conn.deadline = UPGRADED, _INF
        self.ws = WSConnection(ConnectionType.SERVER)
        self.inbox: deque[Message] = deque()
        self.inbox_bytes = 0
        self.waiter: asyncio.Future[None] | None = None
        self.parts: list[Any] = []  # the message being assembled
        self.part_bytes = 0
        self.accepted = False
        self.denied = False  # an HTTP response instead of the upgrade
        self.ended = False  # closed (sent or received) or the transport is gone
        self.disconnect: Message | None = None
        self.ping_due = _INF
        self.pong_due = _INF
        self.close_due = _INF
        self.status = 101
        self.started = time.monotonic()
        self.counted = False  # in the worker's count of open WebSockets
        self.app_done = False
        leftover = conn.proto.take_buffered()
        try:
            self.ws.receive_data(_head(request) + leftover)
            first = next(self.ws.events(), None)
            if not isinstance(first, WsRequest):
                raise RemoteProtocolError("no handshake request", event_hint=None)
        except RemoteProtocolError as exc:
            self.ended, self.status = True, 400
            conn.protocol_error(ProtocolError(400, f"bad WebSocket handshake: {exc}"))
            self._record()
            return
        conn.shared.count_websocket(1)
        self.counted = True
        scope = websocket_scope(
            request,
            conn.client,
            conn.server,
            conn.shared.scheme,
            self.settings.root_path,
            conn.shared.state,
            subprotocols(request),
        )
        if conn.trusted:
            conn.forwarded(scope, request)
        self.inbox.append({"type": "websocket.connect"})
        asyncio.get_running_loop().create_task(self.run(scope))

    # ----------------------------------------------------------------- the app's call

    async def run(self, scope: dict[str, Any]) -> None:
        try:
            await self.conn.shared.app(scope, self.receive, self.send)
        except Exception:
            error_log.exception("the ASGI app raised in a WebSocket (%s)", describe(self.request))
            if not self.accepted and not self.denied:
                self._deny(500)
            else:
                self._close(1011, "")
        else:
            if not self.accepted and not self.denied:
                self._deny(403)  # returned without accepting: the spec's "close" before accept
            elif not self.ended:
                self._close(1000, "")
        finally:
            self._finished()

    def _finished(self) -> None:
        """The app's call returned: count it, then close (after the peer's close answer)."""
        self.app_done = True
        if self.counted:
            self.counted = False
            self.conn.shared.count_websocket(-1)
        self._record()
        if self.ws.state is not ConnectionState.LOCAL_CLOSING:
            self._end_transport()  # else the answer (or close_due, in tick) ends it

    def _record(self) -> None:
        """The upgrade request in the stats and access log, once, with its length."""
        conn = self.conn
        cycle, conn.cycle = conn.cycle, None
        if cycle is None:
            return
        end = time.monotonic()
        received = conn.proto.take_received()
        conn.shared.slot.finish_request(end, self.status, end - cycle.started, received, 0)
        if conn.shared.access:
            took = end - cycle.started
            log_request(conn.shared.access, conn.remote, self.request, self.status, 0, took)
        conn.shared.after_request(end)

    # ----------------------------------------------------------------- receive

    async def receive(self) -> Message:
        while not self.inbox:
            if self.disconnect is not None:
                return self.disconnect
            self.waiter = asyncio.get_running_loop().create_future()
            try:
                await self.waiter
            finally:
                self.waiter = None
        message = self.inbox.popleft()
        self.inbox_bytes -= _size(message)
        conn = self.conn
        if conn.reading_paused and self.inbox_bytes <= READ_HIGH_WATER and not conn.closed:
            conn.reading_paused = False
            assert conn.transport is not None
            conn.transport.resume_reading()
        return message

    def _wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    def _gone(self, code: int, reason: str = "") -> None:
        if self.disconnect is None:
            self.disconnect = {"type": "websocket.disconnect", "code": code, "reason": reason}
        self.ended = True
        self._wake()

    # ----------------------------------------------------------------- transport side

    def data_received(self, data: bytes) -> None:
        try:
            self.ws.receive_data(data)
            for event in self.ws.events():
                self._on_event(event)
        except RemoteProtocolError:
            self._close(1002, "protocol error")
            self._gone(1002)
        if self.inbox_bytes > READ_HIGH_WATER and not self.conn.reading_paused:
            self.conn.reading_paused = True
            assert self.conn.transport is not None
            self.conn.transport.pause_reading()

    def _on_event(self, event: Event) -> None:
        if isinstance(event, TextMessage | BytesMessage):
            self.parts.append(event.data)
            self.part_bytes += len(event.data)
            if self.part_bytes > self.settings.ws_max_message_bytes:
                self.parts, self.part_bytes = [], 0
                self._close(1009, "message too big")
                self._gone(1009)
                return
            if event.message_finished:
                self._deliver(isinstance(event, TextMessage))
        elif isinstance(event, Ping):
            self._write(self.ws.send(event.response()))
        elif isinstance(event, Pong):
            self.pong_due = _INF
        elif isinstance(event, CloseConnection):
            if self.ws.state is ConnectionState.REMOTE_CLOSING:
                self._write(self.ws.send(event.response()))
            self._gone(event.code, event.reason or "")
            self._end_transport()

    def _deliver(self, text: bool) -> None:
        parts, self.parts, self.part_bytes = self.parts, [], 0
        if text:
            message: Message = {"type": "websocket.receive", "text": "".join(parts)}
        else:
            message = {"type": "websocket.receive", "bytes": b"".join(parts)}
        self.inbox.append(message)
        self.inbox_bytes += _size(message)
        self._wake()

    def eof_received(self) -> None:
        self._gone(1006)
        self._end_transport()

    def connection_lost(self) -> None:
        self._gone(1006)

    def _end_transport(self) -> None:
        conn = self.conn
        if not conn.closed:
            conn.closed = True
            assert conn.transport is not None
            conn.transport.close()

    def _write(self, data: bytes) -> None:
        if data and not self.conn.closed:
            assert self.conn.transport is not None
            self.conn.transport.write(data)

    # ----------------------------------------------------------------- send

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if self.conn.closed or (self.ended and kind != "websocket.close"):
            raise ClientDisconnected("the WebSocket is closed")
        if kind == "websocket.accept":
            self._accept(message)
        elif kind == "websocket.send":
            if not self.accepted:
                raise RuntimeError("websocket.send before websocket.accept")
            text, data = message.get("text"), message.get("bytes")
            out = TextMessage(text) if text is not None else BytesMessage(data or b"")
            self._write(self.ws.send(out))
            if self.conn.write_paused:
                await self._drain()
        elif kind == "websocket.close":
            if not self.accepted and not self.denied:
                self._deny(403)
            elif not self.ended:
                self._close(int(message.get("code") or 1000), message.get("reason") or "")
        elif kind == "websocket.http.response.start":
            if self.accepted or self.denied:
                raise RuntimeError("websocket.http.response.start after the handshake")
            self.denied = True
            self.status = int(message["status"])
            headers = [(bytes(n), bytes(v)) for n, v in message.get("headers", ())]
            self._write(
                self.ws.send(
                    RejectConnection(status_code=self.status, headers=headers, has_body=True)
                )
            )
        elif kind == "websocket.http.response.body":
            if not self.denied:
                raise RuntimeError("websocket.http.response.body without its start")
            more = bool(message.get("more_body", False))
            self._write(
                self.ws.send(RejectData(data=message.get("body", b""), body_finished=not more))
            )
            if not more:
                self.ended = True
        else:
            raise RuntimeError(f"unexpected ASGI message {kind!r} in a WebSocket")

    def _accept(self, message: Message) -> None:
        if self.accepted or self.denied:
            raise RuntimeError("websocket.accept sent twice, or after a denial")
        headers = [(bytes(n), bytes(v)) for n, v in message.get("headers", ())]
        try:
            out = self.ws.send(
                AcceptConnection(
                    subprotocol=message.get("subprotocol"),
                    extensions=[PerMessageDeflate()],
                    extra_headers=headers,
                )
            )
        except WsLocalError as exc:
            raise RuntimeError(f"cannot accept this WebSocket: {exc}") from None
        self.accepted = True
        self._write(out)
        interval = self.settings.ws_ping_interval_s
        if interval:
            self.ping_due = time.monotonic() + interval
        if self.conn.shared.draining:
            self.going_away()

    def _deny(self, status: int) -> None:
        self.denied, self.ended, self.status = True, True, status
        try:
            self._write(self.ws.send(RejectConnection(status_code=status)))
        except WsLocalError:
            pass

    def _close(self, code: int, reason: str) -> None:
        """Send a close frame once; the peer's answer (or the deadline) ends the connection."""
        if self.ws.state is ConnectionState.OPEN:
            try:
                self._write(self.ws.send(CloseConnection(code=code, reason=reason)))
            except WsLocalError:
                pass
        self.ended = True
        self.close_due = min(self.close_due, time.monotonic() + self.settings.linger_timeout_s)
        self._wake()

    async def _drain(self) -> None:
        conn = self.conn
        while conn.write_paused and not conn.closed:
            conn.waiter = asyncio.get_running_loop().create_future()
            self.close_due = time.monotonic() + self.settings.send_timeout_s
            try:
                await conn.waiter
            finally:
                conn.waiter = None
                if not self.ended:
                    self.close_due = _INF
        if conn.closed:
            raise ClientDisconnected("the WebSocket is closed")

    # ----------------------------------------------------------------- the worker's sweep

    def tick(self, now: float) -> None:
        """Pings, pong and close deadlines (the worker's once-a-second sweep)."""
        if now >= self.close_due:
            self._gone(1006)
            assert self.conn.transport is not None
            self.conn.closed = True
            self.conn.transport.abort()
        elif now >= self.pong_due:
            self._close(1011, "ping timeout")
            self._gone(1011, "ping timeout")
        elif now >= self.ping_due and self.ws.state is ConnectionState.OPEN:
            self._write(self.ws.send(Ping(b"corral")))
            self.ping_due = now + self.settings.ws_ping_interval_s
            if self.settings.ws_ping_timeout_s and self.pong_due == _INF:
                self.pong_due = now + self.settings.ws_ping_timeout_s

    def going_away(self) -> None:
        """The worker is draining: 1001 to an open WebSocket (the app's receive says so too)."""
        if self.accepted and not self.ended:
            self._close(1001, "server shutting down")
            self._gone(1001, "server shutting down")
            self.close_due = time.monotonic() + self.settings.linger_timeout_s


def _size(message: Message) -> int:
    data = message.get("bytes") or message.get("text") or b""
    return len(data)
