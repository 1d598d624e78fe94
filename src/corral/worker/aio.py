"""The ASGI worker process: one asyncio event loop (uvloop when installed) per worker.

Theory of operation. The worker is forked from the zygote like a WSGI worker and keeps every
rule of one; only the loop differs:

* **Accepting.** The shared listening sockets are registered, with ``EPOLLEXCLUSIVE``, in a
  small epoll of the worker's own, and that epoll's fd is what the event loop watches: the
  kernel wakes one idle worker per connection (no thundering herd) and the fair-share rules of
  ``corral.worker.fairness`` apply unchanged. A wake-up accepts a bounded batch; an accepted
  socket becomes a transport with ``loop.connect_accepted_socket`` and a ``HttpProtocol``
  (``corral.worker.aio_http``) that drives the sans-IO HTTP/1.1 core. With ``--certfile`` the
  transport is the loop's TLS one (handshake bounded by the header timeout); a connection that
  owes a PROXY header reads it first (``corral.worker.aio_proxy``).
* **Lifespan** startup runs here, after fork, before the worker says READY (a failure is a
  boot failure: exit code 3); shutdown runs after the drain, within what is left of
  ``graceful_timeout_s``.
* **Signals** go through ``loop.add_signal_handler``: the handler runs in the loop, never
  inside the signal. SIGTERM drains as the WSGI worker does (accept what is queued, close our
  listener copies so later connections are refused rather than reset, ``Connection: close`` on
  in-flight responses, idle connections closed after ``drain_idle_s``, WebSockets closed with
  1001, everything gone by ``graceful_timeout_s``); SIGINT/SIGQUIT stop at once; SIGUSR1
  reopens logs; SIGUSR2 writes a copy-on-write report; SIGWINCH starts the lame duck.
* **A tick** every second: the scoreboard heartbeat (a coroutine that blocks the loop stops it,
  and the master's ``--timeout-s`` dumps its stack and replaces the worker), the deadline sweep
  of every connection, WebSocket pings, the memory check, the malloc report.
"""

from __future__ import annotations

import asyncio
import contextlib
import faulthandler
import logging
import os
import select
import signal
import socket
import ssl
import time
from collections.abc import Callable
from typing import Any

from corral import hooks
from corral.asgi.detect import AsgiApp
from corral.asgi.lifespan import Lifespan, LifespanFailed
from corral.choices import EventLoop
from corral.http.forwarded import Peer
from corral.http.proxyproto import ProxyMode
from corral.logfiles import reopen_log_files
from corral.master import exitcodes
from corral.memory import attribution
from corral.memory.mallocstats import MallocReporter
from corral.stats.protocol import SlotWriter, WorkerState
from corral.worker.aio_http import UPGRADED, HttpProtocol, Shared
from corral.worker.aio_proxy import read_preface
from corral.worker.aio_ws import WebSocket
from corral.worker.fairness import HOLD_S, Census, FairAccept
from corral.worker.memguard import MemoryGuard
from corral.worker.proxied import Preface
from corral.worker.settings import WorkerSettings

error_log = logging.getLogger("corral.error")
TICK_S = 1.0
DRAIN_ACCEPT_MAX = 4096  # as the WSGI loop: accepted on drain, so the last close resets none
_EXCLUSIVE = select.EPOLLIN | select.EPOLLEXCLUSIVE


def loop_factory(choice: EventLoop) -> Callable[[], asyncio.AbstractEventLoop]:
    """The event loop ``--loop`` asks for; ``auto`` takes uvloop when it is installed."""
    if choice is not EventLoop.ASYNCIO:
        try:
            import uvloop

            return uvloop.new_event_loop  # type: ignore[no-any-return]
        except ImportError:
            if choice is EventLoop.UVLOOP:
                raise
    return asyncio.new_event_loop


def serve(
    app: AsgiApp,
    listeners: list[socket.socket],
    settings: WorkerSettings,
    slot: SlotWriter,
    census: Census | None = None,
    websockets: Callable[[int], None] | None = None,
) -> int:
    """Serve the ASGI ``app`` until told to stop; return the exit code (0 = normal).
    ``websockets`` publishes the count of open WebSockets (the scoreboard's word)."""
    worker = AsgiWorker(app, listeners, settings, slot, census)
    if websockets is not None:
        worker.shared.publish_websockets = websockets
    with asyncio.Runner(loop_factory=loop_factory(settings.loop)) as runner:
        return runner.run(worker.run())


class AsgiWorker:
    """The worker's state; ``run`` is its life."""

    def __init__(
        self,
        app: AsgiApp,
        listeners: list[socket.socket],
        settings: WorkerSettings,
        slot: SlotWriter,
        census: Census | None,
    ) -> None:
        self.settings = settings
        self.slot = slot
        self.fair = FairAccept(census)
        self.listeners = {lsock.fileno(): lsock for lsock in listeners}
        self.ep = select.epoll()
        self.accepting = False
        self.shared = Shared(
            app.app, settings, slot, self._on_closed, self._after_request, WebSocket
        )
        self.lifespan = Lifespan(app.app, settings.lifespan)
        self.memguard = MemoryGuard.for_worker(*settings.memory_limits, slot)
        self.malloc = MallocReporter(settings.malloc_stats_s) if settings.malloc_stats_s else None
        self.draining = False
        self.drain_deadline = float("inf")
        self.publish_due = False
        self.stopped: asyncio.Future[None] | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.pending_accepts = 0  # connect_accepted_socket calls not finished yet

    # ----------------------------------------------------------------- lifecycle

    async def run(self) -> int:
        with contextlib.suppress(RuntimeError, ValueError, AttributeError, OSError):
            faulthandler.enable()  # SIGABRT from the master dumps every thread's stack
        self.slot.set_state(WorkerState.BOOTING)
        loop = self.loop = asyncio.get_running_loop()
        self.stopped = loop.create_future()
        for lsock in self.listeners.values():
            lsock.setblocking(False)  # before the signals: a drain accepts what is queued
        self._install_signals(loop)
        try:
            await self.lifespan.startup(self.settings.boot_timeout_s)
        except LifespanFailed as exc:
            error_log.error("worker %d: %s", os.getpid(), exc)
            return exitcodes.WORKER_BOOT_ERROR
        if self.lifespan.supported:
            self.shared.state = self.lifespan.state
        loop.add_reader(self.ep.fileno(), self._on_listen)
        self._start_accepting()
        self.slot.set_state(WorkerState.READY)
        loop.call_later(TICK_S, self._tick)
        try:
            await self.stopped
        finally:
            await self._shutdown()
        return self.memguard.exit_code

    async def _shutdown(self) -> None:
        assert self.loop is not None
        self._stop_accepting()
        with contextlib.suppress(Exception):
            self.loop.remove_reader(self.ep.fileno())
        self.ep.close()
        for conn in list(self.shared.conns):
            if conn.transport is not None:
                conn.transport.abort()
        left = max(self.drain_deadline - time.monotonic(), 0.0) if self.draining else 0.0
        await self.lifespan.shutdown(left if self.draining else self.settings.graceful_timeout_s)
        if self.malloc is not None:
            self.malloc.close()
        self.slot.flush()
        self.slot.set_connections(0)
        self.slot.set_state(WorkerState.EXITED)

    def _stop(self) -> None:
        if self.stopped is not None and not self.stopped.done():
            self.stopped.set_result(None)

    def _install_signals(self, loop: asyncio.AbstractEventLoop) -> None:
        for signum in (signal.SIGINT, signal.SIGQUIT):
            loop.add_signal_handler(signum, self._stop_now)
        loop.add_signal_handler(signal.SIGTERM, self.begin_drain)
        loop.add_signal_handler(signal.SIGUSR1, reopen_log_files)
        loop.add_signal_handler(signal.SIGUSR2, self._cow_report)
        loop.add_signal_handler(signal.SIGWINCH, self._lame)

    def _stop_now(self) -> None:
        hooks.worker_int()
        self._stop()

    def _lame(self) -> None:
        self.shared.lame = True

    def _cow_report(self) -> None:
        attribution.on_request(lambda: self.slot.heartbeat(time.monotonic()))

    def begin_drain(self) -> None:
        if self.draining:
            return
        self.draining = self.shared.draining = True
        now = time.monotonic()
        self.drain_deadline = now + self.settings.graceful_timeout_s
        self.slot.set_state(WorkerState.DRAINING)
        self._stop_accepting()
        for fd in list(self.listeners):
            self._accept(fd, DRAIN_ACCEPT_MAX)  # served with "Connection: close", not reset
        for lsock in self.listeners.values():
            lsock.close()  # our copy only; the master and other workers keep theirs
        self.listeners.clear()
        for conn in list(self.shared.conns):
            conn.begin_drain(now)
        self._maybe_done()

    def _maybe_done(self) -> None:
        if self.draining and not self.shared.conns and not self.pending_accepts:
            self._stop()

    # ----------------------------------------------------------------- accepting

    def _start_accepting(self) -> None:
        if self.accepting or self.draining or not self.listeners:
            return
        if len(self.shared.conns) >= self.settings.max_connections:
            return
        for fd in self.listeners:
            self.ep.register(fd, _EXCLUSIVE)
        self.accepting = True

    def _stop_accepting(self) -> None:
        if self.accepting:
            for fd in self.listeners:
                with contextlib.suppress(OSError):
                    self.ep.unregister(fd)
            self.accepting = False

    def _on_listen(self) -> None:
        for fd, _ in self.ep.poll(0):
            if fd in self.listeners:
                self._accept(fd, self.settings.accept_batch)

    def _accept(self, lfd: int, batch: int) -> None:
        lsock = self.listeners[lfd]
        conns = self.shared.conns
        limit = self.settings.max_connections
        accepted = 0
        for _ in range(batch):
            if len(conns) + self.pending_accepts >= limit:
                self._stop_accepting()  # resumed when a connection closes
                break
            try:
                sock, _addr = lsock.accept()
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                break
            except OSError as exc:  # EMFILE/ENFILE/ENOBUFS: pause until the next tick
                error_log.warning("accept failed, pausing accepts for a second: %s", exc)
                self._stop_accepting()
                break
            accepted += 1
            self._connect(sock, _addr)
        if accepted:
            mine = len(conns) + self.pending_accepts
            if self.accepting and self.fair.after_accept(self.ep, lfd, mine, time.monotonic()):
                self._stop_accepting()  # over its share: others take the next ones
                assert self.loop is not None
                self.loop.call_later(HOLD_S, self._resume_fair)

    def _connect(self, sock: socket.socket, addr: Any) -> None:
        sock.setblocking(False)
        peer: Peer | None = None
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            peer = (str(addr[0]), int(addr[1]))
        assert self.loop is not None
        self.pending_accepts += 1
        settings = self.settings
        if settings.proxy_protocol is not ProxyMode.OFF and settings.proxy_allow.trusts(peer):
            preface = Preface(settings.proxy_protocol, peer[0] if peer else "unix")

            def opened(client: Peer | None, left: bytes) -> None:
                self._open(sock, peer, client, left)

            read_preface(
                self.loop, sock, preface, settings.header_timeout_s, opened, self._preface_failed
            )
            return
        self._open(sock, peer, None, b"")

    def _open(
        self, sock: socket.socket, peer: Peer | None, client: Peer | None, left: bytes
    ) -> None:
        """The socket becomes a transport (TLS when configured) with an ``HttpProtocol``."""
        assert self.loop is not None
        tls = self.settings.tls
        if tls is not None and left:  # bytes a TLS handshake needed were taken: cannot go on
            sock.close()
            self._preface_failed()
            return
        shared = self.shared

        def protocol() -> HttpProtocol:
            return HttpProtocol(shared, peer, client, left)

        task = self.loop.create_task(
            self.loop.connect_accepted_socket(
                protocol,
                sock,
                ssl=tls,
                ssl_handshake_timeout=self.settings.header_timeout_s if tls else None,
            )
        )
        task.add_done_callback(self._connected)

    def _preface_failed(self) -> None:
        self.pending_accepts -= 1
        self._maybe_done()

    def _connected(self, task: asyncio.Task[Any]) -> None:
        self.pending_accepts -= 1
        exc = None if task.cancelled() else task.exception()
        if isinstance(exc, (ssl.SSLError, TimeoutError, ConnectionError)):
            error_log.info("TLS handshake failed: %s", exc)  # a scanner, a plain-HTTP client
        elif exc is not None:
            error_log.warning("could not set up a connection: %s", exc)
        self.slot.set_connections(len(self.shared.conns))
        self._maybe_done()

    def _resume_fair(self) -> None:
        if self.fair.may_resume(len(self.shared.conns), time.monotonic()):
            self._start_accepting()
        elif self.loop is not None:
            self.loop.call_later(HOLD_S, self._resume_fair)

    def _on_closed(self, conn: HttpProtocol) -> None:
        self.slot.set_connections(len(self.shared.conns))
        if not self.accepting and not self.draining and not self.fair.until:
            self._start_accepting()
        self._maybe_done()

    # ----------------------------------------------------------------- periodic work

    def _after_request(self, now: float) -> None:
        if now >= self.memguard.due and self.memguard.check(now) and not self.draining:
            self.begin_drain()  # past 1.25x its memory limit (worker/memguard.py)
        if not self.publish_due:
            due = self.slot.publish(now)  # the Python slot's batch (the C one has none)
            if due is not None and self.loop is not None:
                self.publish_due = True
                self.loop.call_later(due, self._publish)

    def _publish(self) -> None:
        self.publish_due = False
        due = self.slot.publish(time.monotonic())
        if due is not None and self.loop is not None:
            self.publish_due = True
            self.loop.call_later(due, self._publish)

    def _tick(self) -> None:
        assert self.loop is not None
        if self.stopped is None or self.stopped.done():
            return
        self.loop.call_later(TICK_S, self._tick)
        now = time.monotonic()
        self.slot.heartbeat(now)
        if self.malloc is not None:
            self.malloc.maybe_dump(now)
        if now >= self.memguard.due and self.memguard.check(now) and not self.draining:
            self.begin_drain()
        if not self.accepting and not self.fair.until:
            self._start_accepting()  # after an accept error pause (a no-op while draining)
        for conn in list(self.shared.conns):
            if conn.state == UPGRADED:
                conn.upgraded.tick(now)
            elif conn.deadline <= now:
                conn.on_deadline(now)
        if self.draining and now >= self.drain_deadline:
            self._stop()
        self._maybe_done()
