"""The worker process's I/O loop: accept, read, run the app, write, keep alive, drain, exit.

Theory of operation. One thread, one ``select.epoll``, level-triggered:

* Listening sockets are shared by every worker process and registered with
  ``EPOLLEXCLUSIVE`` so the kernel wakes one waiting worker per connection, not all of them.
  A wake-up accepts a bounded batch without blocking.
* Client bytes are read in the loop and fed to the sans-IO ``corral.http.Connection``. Request
  heads and small bodies are collected there, so a slow or idle client costs a dict entry, never
  the app's time; per-state deadlines (see ``corral.worker.conn``) bound each stage.
* A complete request runs the app at once, in the loop's thread. Large, chunked and
  ``Expect: 100-continue`` bodies are not buffered: the app is called and ``wsgi.input`` reads
  the socket itself with a per-read deadline (sending ``100 Continue`` on the first read).
* The response comes step by step from the connection's sans-IO producer
  (``corral.worker.producer``): bytes (a hello-world response is one ``send``), the app's own
  buffers (``sendmsg``, never joined per connection), or a file range (``os.sendfile``). When
  the socket would block, the unsent tail stays in the connection and the loop resumes on
  ``EPOLLOUT``, asking for the next step only after the previous one left, so a slow reader
  holds one chunk, not the whole body. Held buffers are counted once each (``Pending``); past
  ``max_pending_bytes`` the loop stops accepting and parks new app calls until they drain.
* After a response, already-received pipelined requests are handled in order before the loop
  polls again. While a response is pending the connection is not read (backpressure: the
  kernel's buffers fill and TCP flow control slows the client).
* A protocol error is answered once and the connection is closed "lingering": write side shut,
  the peer's remaining bytes drained for a short time, so the peer reads the answer instead
  of a reset. So is a ``Connection: close`` response over a streamed body the app left unread
  (within ``drain_unread_body`` the rest is discarded instead and the connection kept).
* Signal handlers only set flags (``corral.worker.signals``); the wake-up fd wakes ``epoll``.
  SIGTERM drains (stop accepting, finish in-flight and already-received requests with
  ``Connection: close``, close idle connections, give up after ``graceful_timeout_s``);
  SIGINT/SIGQUIT stop at once; SIGUSR1 reopens log files; SIGUSR2 writes a copy-on-write
  attribution report (``corral.memory.attribution``; a one-shot diagnostic).
* The scoreboard slot gets a heartbeat at least once a second from this loop, idle or not
  (an app call running in the loop's thread holds it: that is what the master's stuck-worker
  detection is for). After the ready events the loop calls ``slot.publish(now)``: the C
  recorder has stored every request already and returns None; the pure-Python slot stores its
  batch once it is a few milliseconds old and says when to look again, and the poll timeout
  shrinks to that, so an idle worker's counts are exact within milliseconds.
* ``threads > 1`` (``corral.worker.threaded``): the app call and its response move to a pool
  thread; everything else stays here. With ``threads == 1`` no thread is ever started.
"""

from __future__ import annotations

import contextlib
import faulthandler
import logging
import os
import select
import signal
import socket
import time
from functools import partial
from typing import Any

from corral import hooks
from corral.http import CLOSED, NEED_DATA, Data, EndOfMessage, ProtocolError, Request
from corral.http.forwarded import ENVIRON_KEYS as FORWARDED_KEYS
from corral.logfiles import reopen_log_files
from corral.memory import attribution, writetrack  # imported in the zygote: shared
from corral.memory.mallocstats import MallocReporter
from corral.stats.protocol import SlotWriter, WorkerState
from corral.worker import health, linger
from corral.worker.accesslog import log_request
from corral.worker.body import StreamSource, send_blocking
from corral.worker.conn import (
    APP,
    BODY,
    HEAD,
    IDLE,
    LINGER,
    PARKED,
    WRITING,
    Conn,
    accepted,
    bow_out,
    give_way,
    server_address,
)
from corral.worker.fairness import Census, FairAccept
from corral.worker.memguard import MemoryGuard
from corral.worker.outbuf import Pending, send_buffers
from corral.worker.producer import DONE, SendFile, Step, describe
from corral.worker.proxied import forwarded_environ
from corral.worker.settings import WorkerSettings
from corral.worker.signals import SignalFlags
from corral.worker.threaded import AppThreads
from corral.wsgi import (
    ChunksSource,
    InputStream,
    StartResponse,
    build_environ,
    empty_source,
)
from corral.wsgi.types import WSGIApp

error_log = logging.getLogger("corral.error")

RECV_SIZE = 65536
TICK_S = 1.0  # heartbeat and deadline sweep period
# Accepted on drain before the listener is closed: what is queued would be reset by the last close.
DRAIN_ACCEPT_MAX = 4096
_EPOLLIN = select.EPOLLIN
_EPOLLOUT = select.EPOLLOUT


def serve(
    app: WSGIApp,
    listeners: list[socket.socket],
    settings: WorkerSettings,
    slot: SlotWriter,
    census: Census | None = None,
) -> int:
    """Serve ``app`` on ``listeners`` until told to stop; return the exit code (0 = normal).
    ``census`` (the scoreboard's) balances connections across workers (worker/fairness.py)."""
    return WorkerLoop(app, listeners, settings, slot, census).run()


class WorkerLoop:
    """The loop's state. Methods are small steps; ``run`` is the loop."""

    def __init__(
        self,
        app: WSGIApp,
        listeners: list[socket.socket],
        settings: WorkerSettings,
        slot: SlotWriter,
        census: Census | None = None,
    ) -> None:
        self.app = app
        self.fair = FairAccept(census)
        self.settings = settings
        self.slot = slot
        self.ep = select.epoll()
        self.listeners = {lsock.fileno(): lsock for lsock in listeners}
        self.server_addr = {fd: server_address(lsock) for fd, lsock in self.listeners.items()}
        self.conns: dict[int, Conn] = {}
        self.accepting = False
        self.draining = False
        self.sig = SignalFlags()
        self.drain_deadline = float("inf")
        self.now = time.monotonic()
        self.access = settings.access_log_format or (
            settings.access_log if settings.access_log != "off" else ""
        )
        self.wake_r, self.wake_w = socket.socketpair()
        self.app_threads: AppThreads | None = None  # started in run(), after the fork
        self.writes: writetrack.RequestWrites | None = None  # --track-writes, in run()
        self.malloc = MallocReporter(settings.malloc_stats_s) if settings.malloc_stats_s else None
        self.memguard = MemoryGuard.for_worker(*settings.memory_limits, slot)  # memguard.py
        self.pending = Pending()  # bytes held for unread responses (max_pending_bytes)
        self.paused = False  # over max_pending_bytes: no accepting, new app calls parked
        self.parked: list[Conn] = []
        self.resume_due = False
        self.scratch = bytearray(RECV_SIZE)  # what lingering closes read and discard

    # ----------------------------------------------------------------- lifecycle

    def run(self) -> int:
        with contextlib.suppress(RuntimeError, ValueError, AttributeError, OSError):
            faulthandler.enable()  # SIGABRT from the master dumps every thread's stack
        self.slot.set_state(WorkerState.BOOTING)
        for sock in (self.wake_r, self.wake_w):
            sock.setblocking(False)
        self.sig.install(self.wake_w)
        self.ep.register(self.wake_r.fileno(), _EPOLLIN)
        if self.settings.track_writes:  # None (and one warning) when the kernel can't
            self.writes = writetrack.RequestWrites.start()
        if self.settings.threads > 1:
            self.app_threads = AppThreads(
                self.app, self.settings.threads, self.settings.send_timeout_s, self.wake_w
            )
        for lsock in self.listeners.values():
            lsock.setblocking(False)
        self._start_accepting()
        self.slot.set_state(WorkerState.READY)
        try:
            self._loop()
        finally:
            self._shutdown()
        return self.memguard.exit_code  # 0, or MEMORY_LIMIT when it stopped itself

    def _loop(self) -> None:
        poll = self.ep.poll
        conns = self.conns
        publish = self.slot.publish
        next_tick = self.now
        due: float | None = None  # seconds until the slot wants to publish what it batched
        while True:
            timeout = TICK_S if not self.draining else min(TICK_S, self.drain_deadline - self.now)
            if due is not None and due < timeout:
                timeout = due
            if self.fair.until:
                timeout = min(timeout, self.fair.until - self.now)
            events = poll(max(timeout, 0.0))
            self.now = now = time.monotonic()
            for fd, ev in events:
                conn = conns.get(fd)
                if conn is not None:
                    self._on_conn_event(conn, ev)
                elif fd in self.listeners:
                    self._accept(fd)
                elif fd == self.wake_r.fileno():
                    self._on_wake()
            if self.resume_due:
                self._resume_parked()
            if self.fair.until and not self.accepting and self.fair.may_resume(len(conns), now):
                self._start_accepting()  # held back over its fair share (worker/fairness.py)
            due = publish(now)  # the Python slot's batch, when due (the C one has none)
            if now >= self.memguard.due and self.memguard.check(now) and not self.draining:
                self.sig.term = True  # past 1.25x its memory limit (worker/memguard.py):
                self._begin_drain()  # drain as on SIGTERM, kept-alive connections closed too
            if now >= next_tick:
                next_tick = now + TICK_S
                self._tick(now)
            if self.sig.stop_now or (self.draining and (not conns or now >= self.drain_deadline)):
                return

    def _tick(self, now: float) -> None:
        self.slot.heartbeat(now)
        if self.writes is not None:
            self.writes.maybe_dump(now)
        if self.malloc is not None:  # --malloc-stats-s: pymalloc report (memory/mallocstats.py)
            self.malloc.maybe_dump(now)
        if not self.accepting:  # after an accept error pause, or at the cap (see _accept)
            self._start_accepting()  # (a no-op while draining or paused)
        expired = [conn for conn in self.conns.values() if conn.deadline <= now]
        for conn in expired:
            self._on_deadline(conn)

    def _shutdown(self) -> None:
        for conn in list(self.conns.values()):
            self._close(conn)
        self._stop_accepting()
        if self.app_threads is not None:
            self.app_threads.shutdown()
        self.ep.close()
        signal.set_wakeup_fd(-1)
        self.wake_r.close()
        self.wake_w.close()
        if self.writes is not None:
            self.writes.close()
        if self.malloc is not None:
            self.malloc.close()
        self.slot.flush()
        self.slot.set_connections(0)
        self.slot.set_state(WorkerState.EXITED)

    def _on_wake(self) -> None:
        with contextlib.suppress(BlockingIOError):
            while self.wake_r.recv(512):
                pass
        sig = self.sig
        if sig.stop_now:
            hooks.worker_int()
        if sig.term and not self.draining:
            self._begin_drain()
        if sig.reopen:
            sig.reopen = False
            reopen_log_files()
        if sig.cow_report:
            sig.cow_report = False
            attribution.on_request(lambda: self.slot.heartbeat(time.monotonic()))
        if self.app_threads is not None:
            done = self.app_threads.done
            while not done.empty():
                self._after_thread(done.get())

    def _begin_drain(self) -> None:
        self.draining = True
        self.drain_deadline = self.now + self.settings.graceful_timeout_s
        self.slot.set_state(WorkerState.DRAINING)
        self._stop_accepting()
        for fd in self.listeners:
            self._accept(fd, DRAIN_ACCEPT_MAX)  # served with "Connection: close", not reset
        for lsock in self.listeners.values():
            lsock.close()  # our copy only; the master and other workers keep theirs
        self.listeners.clear()
        for conn in list(self.conns.values()):
            if conn.state == APP:
                continue  # a thread owns it; its request already knows about the drain
            if conn.state == IDLE and conn.proto.buffered_bytes == 0:
                conn.deadline = min(conn.deadline, self.now + self.settings.drain_idle_s)
            elif conn.request is not None and not conn.proto.response_started:
                conn.proto.close_after_cycle()

    # ----------------------------------------------------------------- accepting

    def _start_accepting(self) -> None:
        if not self.accepting and self.listeners and not self.draining and not self.paused:
            for fd in self.listeners:
                self.ep.register(fd, _EPOLLIN | select.EPOLLEXCLUSIVE)
            self.accepting = True

    def _stop_accepting(self) -> None:
        if self.accepting:
            for fd in self.listeners:
                with contextlib.suppress(OSError):
                    self.ep.unregister(fd)
            self.accepting = False

    def _accept(self, lfd: int, batch: int = 0) -> None:
        lsock = self.listeners[lfd]
        limit = self.settings.max_connections
        before = len(self.conns)
        for _ in range(batch or self.settings.accept_batch):
            victim = give_way(self.conns.values(), self.settings, self.now)
            if len(self.conns) >= limit and victim is None:
                self._stop_accepting()  # resumed in _close when a slot frees up, or _tick
                break
            try:
                sock, addr = lsock.accept()
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                break
            except OSError as exc:
                # EMFILE/ENFILE/ENOBUFS: the listener stays readable, so a level-triggered
                # loop would spin; pause accepting until the next tick instead.
                error_log.warning("accept failed, pausing accepts for a second: %s", exc)
                self._stop_accepting()
                break
            if victim is not None:
                self._close(bow_out(victim))  # only now that a client is known to be waiting
            self._add_conn(sock, addr, lfd)
        if len(self.conns) != before:
            self.slot.set_connections(len(self.conns))
            if self.accepting and self.fair.after_accept(self.ep, lfd, len(self.conns), self.now):
                self._stop_accepting()  # over its share: others take the next ones

    def _add_conn(self, sock: socket.socket, addr: Any, lfd: int) -> None:
        conn = accepted(sock, addr, self.server_addr[lfd], self.settings, self.ep.modify)
        conn.write = partial(self._app_write, conn)  # write() for every request on it
        conn.deadline = self.now + self.settings.header_timeout_s
        self.conns[conn.fd] = conn
        self.ep.register(conn.fd, _EPOLLIN)

    # ----------------------------------------------------------------- reading

    def _on_conn_event(self, conn: Conn, ev: int) -> None:
        state = conn.state
        if state == WRITING:
            self._on_writable(conn)
            return
        if state == LINGER:
            if linger.read(conn, self.scratch, self.settings, self.now):
                self._close(conn)
            return
        if state == APP:  # a stale event from this poll batch; a thread owns the socket now
            return
        try:
            data = conn.sock.recv(RECV_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._close(conn)
            return
        conn.proto.receive_data(data)
        if state == IDLE and data:
            conn.state, conn.fresh = HEAD, False
            conn.deadline = self.now + self.settings.header_timeout_s
        self._advance(conn)

    def _advance(self, conn: Conn) -> None:
        """Turn buffered bytes into work until more bytes are needed or the socket is busy."""
        proto = conn.proto
        while True:
            try:
                event = proto.next_event()
            except ProtocolError as exc:
                self._protocol_error(conn, exc)
                return
            kind = type(event)
            if kind is Data:
                conn.chunks.append(event.data)  # type: ignore[union-attr]
            elif kind is EndOfMessage:
                if not self._run_app(conn, ChunksSource(conn.chunks) if conn.chunks else None):
                    return
            elif kind is Request:
                if not self._on_request(conn, event):  # type: ignore[arg-type]
                    return
            elif event is NEED_DATA:
                return
            else:  # CLOSED, or PAUSED which start_next_cycle() rules out
                if event is not CLOSED:
                    error_log.error("unexpected HTTP event %r; closing", event)
                self._close(conn)
                return

    def _on_request(self, conn: Conn, request: Request) -> bool:
        """A head arrived: collect a small body here, or run the app with a streaming body."""
        conn.request = request
        conn.started = self.now
        if self.sig.term:  # set even before the loop has seen the wake-up byte
            conn.proto.close_after_cycle()
        length = request.content_length
        if (
            request.chunked
            or request.expect_continue
            or (length is not None and length > self.settings.buffer_body_max)
        ):
            return self._run_app(conn, StreamSource(conn, self.settings))
        conn.state = BODY
        conn.deadline = self.now + self.settings.body_timeout_s
        return True

    # ----------------------------------------------------------------- the app

    def _run_app(self, conn: Conn, source: Any) -> bool:
        """Call the app and start its response; True when the connection is ready for more."""
        if self.paused:  # too many unsent bytes: run it once they drained
            self._park(conn, source)
            return False
        request = conn.request
        assert request is not None
        app, ha = self.app, self.settings.health_path  # answered here, never by the app:
        if ha and (canned := health.answer(request.path, ha, self.draining or self.sig.lame)):
            app = health.wsgi_app(canned)
        resp = StartResponse(conn.write)
        inp = InputStream(source or empty_source)
        conn.resp, conn.input = resp, inp
        environ = build_environ(request, conn.base, inp, self.settings.root_path)
        if conn.trusted and not environ.keys().isdisjoint(FORWARDED_KEYS):  # behind a proxy
            forwarded_environ(environ, conn, request, self.settings.forwarded_allow)
        if hooks.per_request:
            hooks.pre_request(request, environ)
        if self.writes is not None:
            self.writes.before_request()
        self.slot.start_request(self.now, request.method, request.path)
        if self.app_threads is not None and app is self.app:
            self._hand_to_thread(conn, environ)
            return False
        return self._pump(conn, conn.producer.call(app, environ))

    def _hand_to_thread(self, conn: Conn, environ: dict[str, Any]) -> None:
        """threads > 1: a thread owns the connection until it is back on the done queue."""
        assert self.app_threads is not None
        self.ep.unregister(conn.fd)
        conn.state, conn.deadline = APP, float("inf")
        self.app_threads.submit(conn, environ)

    def _after_thread(self, conn: Conn) -> None:
        """An app thread finished with ``conn``: bookkeeping, then its next request."""
        if self.conns.get(conn.fd) is not conn:
            return  # dropped while the thread ran (worker stopping)
        self.ep.register(conn.fd, _EPOLLIN)
        conn.state = BODY  # a reading state again; _finish decides IDLE or HEAD
        if conn.abort:
            self._close(conn)
        elif self._finish(conn):
            self._advance(conn)

    def _app_write(self, conn: Conn, data: bytes) -> None:
        """PEP 3333 ``write()``: send the head if needed, then ``data``, before returning."""
        out = conn.producer.write(data)
        conn.bytes_out += send_blocking(conn.sock, out, self.settings.send_timeout_s)

    # ----------------------------------------------------------------- writing

    def _pump(self, conn: Conn, step: Step) -> bool:
        """Send the producer's steps until the response is done or the socket blocks.

        True when the response is complete and the connection can take the next request.
        """
        sock = conn.sock
        producer = conn.producer
        while True:
            kind = type(step)
            if kind is bytes:
                if step:
                    try:
                        sent = sock.send(step)  # type: ignore[arg-type]
                    except (BlockingIOError, InterruptedError):
                        sent = 0
                    except OSError:
                        self._close(conn)  # the client went away mid-response
                        return False
                    conn.bytes_out += sent
                    if sent < len(step):  # type: ignore[arg-type]
                        conn.out = memoryview(step)[sent:]  # type: ignore[arg-type]
                        self._wait_writable(conn)
                        return False
            elif step is DONE:
                return self._finish(conn)
            elif kind is list:
                if not self._send_list(conn, step):  # type: ignore[arg-type]
                    return False
            elif kind is SendFile:
                conn.file = step  # type: ignore[assignment]
                if not self._send_file(conn):
                    return False
            else:  # ABORT
                self._close(conn)
                return False
            if producer.ended:  # what next() would say is DONE: skip the call
                return self._finish(conn)
            step = producer.next()

    def _on_writable(self, conn: Conn) -> None:
        """EPOLLOUT: send what a short send left, then carry on with the producer."""
        out = conn.out
        if out:
            conn.out = b""
            if not self._send_list(conn, out if type(out) is list else [out]):  # type: ignore[list-item]
                return
        if conn.held:
            self._release(conn)
        if conn.file is not None and not self._send_file(conn):
            return
        if self._pump(conn, conn.producer.next()):
            self._advance(conn)

    def _send_list(self, conn: Conn, bufs: list[bytes | memoryview]) -> bool:
        """Send buffers as they are; False when waiting for the socket (tail kept) or closed."""
        try:
            sent, rest = send_buffers(conn.sock, bufs)
        except OSError:
            self._close(conn)
            return False
        conn.bytes_out += sent
        if rest:
            conn.out = rest
            self._wait_writable(conn)
            return False
        return True

    def _send_file(self, conn: Conn) -> bool:
        """``os.sendfile`` until the range is out; False when waiting for the socket or closed."""
        file = conn.file
        assert file is not None
        fd, offset, remaining = file
        while remaining:
            try:
                sent = os.sendfile(conn.fd, fd, offset, remaining)
            except (BlockingIOError, InterruptedError):
                conn.file = SendFile(fd, offset, remaining)
                self._wait_writable(conn)
                return False
            except OSError:
                self._close(conn)
                return False
            if sent == 0:  # the file shrank under us: the promised length cannot be met
                error_log.error("file ended early in sendfile (%s)", describe(conn.request))
                self._close(conn)
                return False
            conn.bytes_out += sent
            offset += sent
            remaining -= sent
        conn.file = None
        return True

    def _wait_writable(self, conn: Conn) -> None:
        if conn.out and not conn.held:
            conn.held = self.pending.hold(conn.out)
            limit = self.settings.max_pending_bytes
            if limit and self.pending.total > limit and not self.paused:
                self._pause()
        if conn.state != WRITING:
            conn.state = WRITING
        conn.deadline = self.now + self.settings.send_timeout_s
        if not conn.writing:
            conn.writing = True
            self.ep.modify(conn.fd, _EPOLLOUT)

    def _finish(self, conn: Conn) -> bool:
        """The response is out: record it, then reuse or close the connection."""
        conn.producer.close()
        end = self.now = time.monotonic()
        request, resp = conn.request, conn.resp
        status = resp.status_code if resp is not None else 0
        bytes_in = conn.proto.take_received()
        self.slot.finish_request(end, status, end - conn.started, bytes_in, conn.bytes_out)
        if self.writes is not None and request is not None:
            self.writes.after_request(request.path)  # after the latency figure: not in it
        if self.access and request is not None:
            took = end - conn.started
            log_request(self.access, conn.remote, request, status, conn.bytes_out, took)
        if hooks.per_request and request is not None:
            hooks.post_request(request, resp, conn.bytes_out)
        if conn.writing:
            conn.writing = False
            self.ep.modify(conn.fd, _EPOLLIN)
        proto = conn.proto
        if conn.must_close or not proto.start_next_cycle():
            if conn.body_error is not None:
                self._linger(conn)  # the peer may still be sending the body it broke off
            elif request is not None and linger.body_unread(
                conn, request, self.settings.buffer_body_max
            ):
                self._linger(conn, body=True)  # closing now would reset: the peer may lose it
            else:
                self._close(conn)
            return False
        conn.reset()
        if proto.buffered_bytes:
            conn.state, conn.deadline = HEAD, end + self.settings.header_timeout_s
        else:  # while draining, a short wait for one last request (drain_idle_s)
            idle_s = (
                self.settings.drain_idle_s if self.draining else self.settings.keepalive_timeout_s
            )
            conn.state, conn.deadline = IDLE, end + min(idle_s, self.settings.keepalive_timeout_s)
        return True

    # ----------------------------------------------------------------- unread responses

    def _pause(self) -> None:
        """Over ``max_pending_bytes``: stop accepting and park new app calls until the slow
        readers drained (or their ``send_timeout_s`` closed them)."""
        self.paused = True
        self._stop_accepting()
        error_log.warning(
            "%d MiB held for clients that do not read: pausing new requests",
            self.pending.total >> 20,
        )

    def _park(self, conn: Conn, source: Any) -> None:
        self.ep.unregister(conn.fd)
        conn.state, conn.deadline, conn.source = PARKED, float("inf"), source
        self.parked.append(conn)

    def _release(self, conn: Conn) -> None:
        self.pending.release(conn.held)
        conn.held = []
        if self.paused and self.pending.total <= self.settings.max_pending_bytes:
            self.paused = False
            self.resume_due = True  # from the loop, not from inside another connection's send

    def _resume_parked(self) -> None:
        self.resume_due = False
        parked, self.parked = self.parked, []
        for conn in parked:
            if self.conns.get(conn.fd) is not conn:
                continue  # closed meanwhile
            self.ep.register(conn.fd, _EPOLLIN)
            conn.state, source, conn.source = BODY, conn.source, None
            if self._run_app(conn, source):  # parks it again if the limit is hit once more
                self._advance(conn)
        if len(self.conns) < self.settings.max_connections:
            self._start_accepting()

    # ----------------------------------------------------------------- errors and closing

    def _protocol_error(self, conn: Conn, exc: ProtocolError) -> None:
        """Answer a broken request once, then close lingering."""
        try:
            data = conn.proto.error_response(exc)
            conn.sock.send(data)  # tiny; if it does not fit, the peer is not reading anyway
        except OSError:
            self._close(conn)
            return
        except Exception:
            error_log.exception("could not build the error response")
        if self.access:
            log_request(self.access, conn.remote, conn.request, exc.status, 0)
        self._linger(conn)

    def _linger(self, conn: Conn, body: bool = False) -> None:
        """Close lingering (``corral.worker.linger``): the peer reads the answer, not a reset."""
        conn.producer.close()
        if conn.writing:
            conn.writing = False
            self.ep.modify(conn.fd, _EPOLLIN)
        if not linger.start(conn, self.settings, self.now, body):
            self._close(conn)

    def _on_deadline(self, conn: Conn) -> None:
        state = conn.state
        if state in (HEAD, BODY):
            self._protocol_error(conn, ProtocolError(408, "Request Timeout"))
        elif state == IDLE and not linger.quiet(conn.sock):  # read before close: bytes came
            self._on_conn_event(conn, _EPOLLIN)  # a last request, or the peer's EOF
        elif state == IDLE:
            self._linger(conn)  # FIN, then read: a request sent meanwhile meets no reset
        else:  # a stalled reader, or linger time over
            self._close(conn)

    def _close(self, conn: Conn) -> None:
        if self.conns.pop(conn.fd, None) is None:
            return
        if conn.state == APP:  # stopping with a thread in the app: it still owns the socket
            self.slot.set_connections(len(self.conns))
            return
        conn.producer.close()
        if conn.held:
            self._release(conn)
        with contextlib.suppress(OSError):
            self.ep.unregister(conn.fd)
        conn.sock.close()
        # Break conn -> write partial -> conn, conn -> StartResponse -> partial -> conn and
        # conn -> producer -> conn, so a closed connection is freed by refcount, not left to
        # the cyclic GC.
        conn.reset()
        del conn.write, conn.producer
        self.slot.set_connections(len(self.conns))
        if not self.accepting and not self.draining:
            self._start_accepting()
