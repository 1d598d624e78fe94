"""One process's share of a load run: a level-triggered epoll loop over non-blocking sockets.

Theory of operation. Each connection is a small state machine::

    CLOSED --connect--> CONNECTING --writable--> (send) --> READING --response--> next
                                                  \\--partial--> SENDING --writable--/
    READING --EOF/reset/timeout/garbage--> error counted, CLOSED, retried from the ready list

The closed model (ab, wrk) starts the next request on a connection the moment its response
is complete, so latency runs from the actual start. The open model (wrk2, ``rate``) keeps a
pool: arrivals fall due on the schedule in ``schedule.py``, each goes to an idle connection
(most recently used first, so a light load uses few connections), and its latency runs from
the *intended* time -- time spent waiting for a free connection counts (coordinated
omission corrected). Idle connections stay registered for reads so a server closing them
is noticed before the next send, not counted as an error.

Latency starts when a request starts: at the connect when it needs a new connection (so
``--no-keepalive`` latencies include the handshake, like ab's "Total"), at the send on a
kept-alive one. A request counts only when its whole response has arrived.

Speed: requests are pre-encoded ``bytes``; responses land in one reused buffer via
``recv_into`` and go to a per-connection httptools parser as a memoryview slice (no copy);
the clock is read once per response; latencies are counted in a plain dict per second and
folded into HDR buckets once a second. Nothing in the hot path allocates beyond the slice.
Housekeeping (second rollover, timeouts, stop and deadline checks) runs on a 50 ms tick.
"""

from __future__ import annotations

import errno
import select
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httptools

from corral.bench import framing
from corral.bench.config import Plan
from corral.bench.result import ProcSummary, SecondStats, bucket_counts
from corral.bench.schedule import arrival_time, arrivals_due

CLOSED, CONNECTING, SENDING, READING, IDLE = range(5)
IN_FLIGHT = (CONNECTING, SENDING, READING)
TICK_S = 0.05  # housekeeping period: timeouts and stop requests are noticed within this
SPIN_S = 0.001  # epoll's timeout is whole milliseconds; closer than this, poll without waiting
RECV_BUFFER = 256 * 1024
SAMPLE_LIMIT = 64 * 1024
_EPOLLIN = select.EPOLLIN
_EPOLLOUT = select.EPOLLOUT
_CONNECT_DONE = select.EPOLLOUT | select.EPOLLERR | select.EPOLLHUP


@dataclass(frozen=True, slots=True)
class EngineSpec:
    """This process's share of the run. Times are ``time.monotonic()`` (system-wide)."""

    plan: Plan
    connections: int
    requests: int | None  # this process's share of -n
    rate: float | None  # the *global* rate; the schedule interleaves processes
    index: int
    nprocs: int
    t0: float
    end: float | None  # t0 + duration, or None for a run bounded by count alone
    hard_end: float


_monotonic = time.monotonic


def _unconnected(data: object) -> Any:
    raise OSError(errno.ENOTCONN, "not connected")


class Conn:
    """One client connection; also the httptools protocol object for its parser."""

    __slots__ = (
        "connect_start",
        "deadline",
        "done",
        "fd",
        "feed",
        "head_acc",
        "keep",
        "mask",
        "out",
        "parser",
        "recv_into",
        "request",
        "send",
        "sock",
        "start",
        "state",
        "status",
    )

    def __init__(self) -> None:
        self.sock: socket.socket | None = None
        self.fd = -1
        self.parser: httptools.HttpResponseParser | None = None
        # The socket's and parser's bound methods, looked up once per connection, not per call.
        self.recv_into: Callable[[bytearray], int] = _unconnected
        self.send: Callable[[bytes | memoryview], int] = _unconnected
        self.feed: Callable[[memoryview], None] = _unconnected
        self.state = CLOSED
        self.mask = 0
        self.request = b""
        self.out: memoryview | None = None
        self.start = 0.0
        self.connect_start = 0.0
        self.deadline = 0.0
        self.done = 0
        self.status = 0
        self.keep = True
        self.head_acc = b""  # a response's bytes, kept only while it spans reads

    def on_message_complete(self) -> None:
        parser = self.parser
        assert parser is not None
        status = parser.get_status_code()
        if framing.is_interim(status):
            return  # the final response follows on this request
        self.done += 1
        self.status = status
        self.keep = parser.should_keep_alive()  # only valid inside this callback


class Engine:
    """Runs one ``EngineSpec`` to completion; ``emit`` receives each finished second."""

    def __init__(
        self,
        spec: EngineSpec,
        emit: Callable[[SecondStats], None],
        should_stop: Callable[[], bool] | None = None,
        stop_fd: int | None = None,
    ) -> None:
        self.spec = spec
        self.emit = emit
        self.should_stop = should_stop
        self.stop_fd = stop_fd
        config = spec.plan.config
        self.targets = [t.request for t in spec.plan.targets]
        self.family = spec.plan.targets[0].family
        self.sockaddr = spec.plan.targets[0].sockaddr
        self.keepalive = config.keepalive
        self.timeout_s = config.timeout_s
        self.is_head = spec.plan.is_head
        # Closed loop, keep-alive, one URL: a completed request is followed by the identical
        # one on the same socket, which _resend does without the general path's checks.
        self.reuse_fast = spec.rate is None and config.keepalive and len(self.targets) == 1
        self.url_i = spec.index  # round-robin offset so processes do not move in lockstep
        self.buf = bytearray(RECV_BUFFER)
        self.view = memoryview(self.buf)
        self.ep = select.epoll()
        self.fdmap: dict[int, Conn] = {}
        self.conns = [Conn() for _ in range(spec.connections)]
        self.ready: list[Conn] = []  # to (re)start from the loop, never recursively
        self.idle: list[Conn] = []  # open model: free connections, most recent last
        self.remaining = spec.requests  # requests not yet started (None: unbounded)
        self.inflight = 0
        self.stopping = False
        self.summary = ProcSummary()
        self.next_j = 0  # open model: this process's next arrival
        self.second = 0
        self.sec_requests = 0
        self.sec_bytes = 0
        self.sec_errors: dict[str, int] = {}
        self.sec_latency: dict[int, int] = {}
        self.next_tick = spec.t0

    # ----------------------------------------------------------------- main loop

    def run(self) -> ProcSummary:
        """Wait for the shared start, run until a bound is reached, return the totals."""
        try:
            self._wait_for_start()
            self._begin()
            self._loop()
        finally:
            self._close_all()
            self.ep.close()
        return self.summary

    def _wait_for_start(self) -> None:
        delay = self.spec.t0 - time.monotonic()
        if delay > 0:
            time.sleep(delay)  # the shared t0 lines processes up; not synchronisation
        if self.stop_fd is not None:
            self.ep.register(self.stop_fd, _EPOLLIN)

    def _begin(self) -> None:
        if self.spec.rate is None:
            self.ready.extend(self.conns)
        else:  # nothing starts here: _dispatch() sends what the schedule says is due
            self.idle.extend(self.conns)

    def _loop(self) -> None:
        poll = self.ep.poll
        fdmap = self.fdmap
        on_readable = self._on_readable
        steady = self.spec.rate is None  # the closed model needs no per-iteration bookkeeping
        timeout = 0.0
        while True:
            for fd, ev in poll(timeout):
                conn = fdmap.get(fd)
                if conn is None:
                    self._on_foreign(fd)
                elif conn.state == READING:
                    on_readable(conn)
                else:
                    self._on_other(conn, ev)
            now = _monotonic()
            if steady and now < self.next_tick and self.inflight and not self.ready:
                timeout = self.next_tick - now
                continue
            if self._housekeep(now):
                break
            timeout = self._poll_timeout(now)
        self._finish(_monotonic())

    def _housekeep(self, now: float) -> bool:
        """Everything but I/O; True when the run is over."""
        if now >= self.next_tick:
            self._tick(now)
        if self.stopping:
            return True
        if self.ready:
            self._start_ready()
        if self.spec.rate is not None:
            self._dispatch(now)
        return self._finished()

    def _poll_timeout(self, now: float) -> float:
        if self.ready:
            return 0.0
        wait = self.next_tick - now
        if self.spec.rate is not None and not self._backlogged(now) and not self._all_sent():
            until = self._next_arrival() - now
            wait = min(wait, until - SPIN_S if until > SPIN_S else 0.0)
        return max(wait, 0.0)

    def _finished(self) -> bool:
        if self.inflight or self.ready:
            return False
        if self.spec.rate is not None:
            limit = self.remaining
            return limit is not None and self.next_j >= limit
        return self.remaining == 0

    def _on_foreign(self, fd: int) -> None:
        if fd == self.stop_fd:
            self.stopping = True  # the parent asked us to stop (or died: EOF)

    def _on_other(self, conn: Conn, ev: int) -> None:
        state = conn.state
        if state == CONNECTING:
            if ev & _CONNECT_DONE:
                self._on_connected(conn)
        elif state == SENDING:
            self._send(conn)
        elif state == IDLE:
            self._on_idle_readable(conn)

    # ---------------------------------------------------------------- the hot path

    def _on_readable(self, conn: Conn) -> None:
        try:
            n = conn.recv_into(self.buf)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._fail(conn, "reset")
            return
        if n == 0:
            self._on_eof(conn)
            return
        self.sec_bytes += n
        if self.is_head:
            self._on_head_bytes(conn, bytes(self.view[:n]))
            return
        try:
            conn.feed(self.view[:n])
        except httptools.HttpParserError:
            self._fail(conn, "protocol")
            return
        if conn.done:
            self._complete(conn, n)
        elif len(conn.head_acc) < SAMPLE_LIMIT:
            # Rare: the response spans reads. Keep its start (the head) for _on_eof.
            conn.head_acc += bytes(self.view[: min(n, SAMPLE_LIMIT - len(conn.head_acc))])

    def _complete(self, conn: Conn, n: int) -> None:
        if conn.done > 1:  # bytes beyond the response: the stream can no longer be trusted
            self._fail(conn, "protocol")
            return
        now = _monotonic()
        us = int((now - conn.start) * 1e6)
        latency = self.sec_latency
        latency[us] = latency.get(us, 0) + 1
        self.sec_requests += 1
        self.inflight -= 1
        status = conn.status
        statuses = self.summary.statuses
        statuses[status] = statuses.get(status, 0) + 1
        if not 200 <= status < 300:
            self._count_error("non_2xx")
        if self.summary.sample is None:
            self.summary.sample = conn.head_acc + bytes(self.view[: min(n, SAMPLE_LIMIT)])
        if conn.keep and self.reuse_fast and self.remaining is None:
            self._resend(conn, now)  # the closed loop's steady state: same request, same socket
            return
        if not (conn.keep and self.keepalive):
            self._close(conn)
        self._next(conn, now)

    def _resend(self, conn: Conn, now: float) -> None:
        """``_next`` + ``_start`` + ``_send`` for a kept-alive connection and one URL."""
        conn.start = now
        conn.deadline = now + self.timeout_s
        conn.done = 0
        conn.head_acc = b""
        self.inflight += 1
        request = conn.request
        try:
            sent = conn.send(request)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            self._fail(conn, "reset")
            return
        if sent < len(request):  # a full socket buffer: finish from the loop
            conn.out = memoryview(request)[sent:]
            conn.state = SENDING
            self._want(conn, _EPOLLOUT)

    def _next(self, conn: Conn, now: float) -> None:
        if self.spec.rate is not None:
            self._make_idle(conn)
            return
        remaining = self.remaining
        if remaining is not None:
            if remaining <= 0:
                self._close(conn)
                return
            self.remaining = remaining - 1
        self._start(conn, now, now)

    def _start(self, conn: Conn, now: float, intended: float) -> None:
        conn.start = intended
        conn.deadline = now + self.timeout_s
        conn.done = 0
        conn.head_acc = b""
        targets = self.targets
        if len(targets) == 1:
            conn.request = targets[0]
        else:
            conn.request = targets[self.url_i % len(targets)]
            self.url_i += 1
        self.inflight += 1
        if conn.sock is None:
            self._connect(conn, now)
        else:
            self._send(conn)

    def _send(self, conn: Conn) -> None:
        data = conn.out if conn.out is not None else conn.request
        try:
            sent = conn.send(data)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            self._fail(conn, "reset")
            return
        if sent < len(data):
            conn.out = memoryview(data)[sent:]
            conn.state = SENDING
            self._want(conn, _EPOLLOUT)
            return
        conn.out = None
        conn.state = READING
        if conn.mask != _EPOLLIN:
            self._want(conn, _EPOLLIN)

    # ------------------------------------------------------------ connections

    def _connect(self, conn: Conn, now: float) -> None:
        conn.connect_start = _monotonic()  # ``now`` may be a whole batch of connects old
        try:
            sock = socket.socket(self.family, socket.SOCK_STREAM)
        except OSError:  # EMFILE and friends: the attempt failed before it began
            self._fail(conn, "connect")
            return
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn.sock, conn.fd, conn.mask = sock, sock.fileno(), 0
        conn.recv_into, conn.send = sock.recv_into, sock.send
        if not self.is_head:
            conn.parser = parser = httptools.HttpResponseParser(conn)
            conn.feed = parser.feed_data
        self.fdmap[conn.fd] = conn
        self.summary.connections_opened += 1
        err = sock.connect_ex(self.sockaddr)
        if err == 0:
            self._connected(conn)
        elif err in (errno.EINPROGRESS, errno.EAGAIN):
            conn.state = CONNECTING
            self._want(conn, _EPOLLOUT)
        else:
            self._fail(conn, "connect")

    def _on_connected(self, conn: Conn) -> None:
        sock = conn.sock
        assert sock is not None
        if sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
            self._fail(conn, "connect")
            return
        self._connected(conn)

    def _connected(self, conn: Conn) -> None:
        us = int((time.monotonic() - conn.connect_start) * 1e6)
        connect = self.summary.connect_us
        connect[us] = connect.get(us, 0) + 1
        self._send(conn)

    def _want(self, conn: Conn, mask: int) -> None:
        if conn.mask:
            self.ep.modify(conn.fd, mask)
        else:
            self.ep.register(conn.fd, mask)
        conn.mask = mask

    def _close(self, conn: Conn) -> None:
        if conn.sock is not None:
            self.fdmap.pop(conn.fd, None)
            conn.sock.close()  # closing the fd also drops it from the epoll set
        conn.sock, conn.parser, conn.out = None, None, None
        conn.fd, conn.mask, conn.state = -1, 0, CLOSED

    def _close_all(self) -> None:
        for conn in self.conns:
            self._close(conn)

    # ------------------------------------------------------------ the rare paths

    def _fail(self, conn: Conn, kind: str) -> None:
        """The request on ``conn`` failed: count it, drop the connection, retry from the loop."""
        self._count_error(kind)
        self.inflight -= 1
        self._close(conn)
        if self.spec.rate is not None:
            self._make_idle(conn)
        else:
            self.ready.append(conn)

    def _count_error(self, kind: str) -> None:
        errors = self.sec_errors
        errors[kind] = errors.get(kind, 0) + 1

    def _start_ready(self) -> None:
        ready, self.ready = self.ready, []
        for conn in ready:  # each gets its own start time: the previous ones took some
            self._next(conn, _monotonic())

    def _on_eof(self, conn: Conn) -> None:
        """EOF while reading: completes a close-delimited body, otherwise truncates."""
        head = None if self.is_head else self._final_head(conn.head_acc)
        if head is not None and framing.ends_at_eof(head):
            conn.done, conn.keep, conn.status = 1, False, head.status
            self._complete(conn, 0)
            return
        self._fail(conn, "reset")

    @staticmethod
    def _final_head(data: bytes) -> framing.Head | None:
        """The head of the final (non-1xx) response in ``data``, if it arrived whole."""
        try:
            head = framing.parse_head(data)
            while head is not None and framing.is_interim(head.status):
                data = data[head.length :]
                head = framing.parse_head(data)
        except framing.FramingError:
            return None
        return head

    def _on_head_bytes(self, conn: Conn, data: bytes) -> None:
        """HEAD responses end with their head, whatever Content-Length says."""
        acc = conn.head_acc + data
        try:
            head = framing.parse_head(acc)
            while head is not None and framing.is_interim(head.status):
                acc = acc[head.length :]
                head = framing.parse_head(acc)
        except framing.FramingError:
            self._fail(conn, "protocol")
            return
        if head is None:
            conn.head_acc = acc
            return
        conn.head_acc = b""
        conn.done = 1 if head.length == len(acc) else 2
        conn.status, conn.keep = head.status, framing.keeps_alive(head)
        self._complete(conn, 0)

    def _on_idle_readable(self, conn: Conn) -> None:
        """An idle keep-alive connection became readable: the server closed it (or sent junk,
        e.g. a 408). Either way it is unusable; drop it quietly -- no request was on it."""
        self._close(conn)
        if conn in self.idle:
            self.idle.remove(conn)
        self.idle.insert(0, conn)  # unconnected: used only when no live one is free

    # ------------------------------------------------------------ open model

    def _make_idle(self, conn: Conn) -> None:
        if conn.sock is not None:
            conn.state = IDLE
            if conn.mask != _EPOLLIN:
                self._want(conn, _EPOLLIN)
            self.idle.append(conn)
        else:
            self.idle.insert(0, conn)

    def _arrival_limit(self, now: float) -> int:
        spec = self.spec
        assert spec.rate is not None
        due = arrivals_due(now, spec.rate, spec.t0, spec.index, spec.nprocs)
        return due if self.remaining is None else min(due, self.remaining)

    def _next_arrival(self) -> float:
        spec = self.spec
        assert spec.rate is not None
        return arrival_time(self.next_j, spec.rate, spec.t0, spec.index, spec.nprocs)

    def _all_sent(self) -> bool:
        return self.remaining is not None and self.next_j >= self.remaining

    def _backlogged(self, now: float) -> bool:
        return self.next_j < self._arrival_limit(now)

    def _dispatch(self, now: float) -> None:
        """Hand every arrival that is due to a free connection, oldest arrival first."""
        limit = self._arrival_limit(now)
        summary = self.summary
        while self.next_j < limit and self.idle:
            conn = self.idle.pop()
            intended = self._next_arrival()
            summary.max_lag_s = max(summary.max_lag_s, now - intended)
            self.next_j += 1
            summary.dispatched += 1
            self._start(conn, now, intended)

    # ------------------------------------------------------------ housekeeping

    def _tick(self, now: float) -> None:
        spec = self.spec
        while now >= spec.t0 + self.second + 1:
            self._emit_second()
        self._expire(now)
        stop_requested = self.should_stop is not None and self.should_stop()
        time_up = (spec.end is not None and now >= spec.end) or now >= spec.hard_end
        if stop_requested or time_up:
            self.stopping = True
        self.next_tick = min(now + TICK_S, spec.t0 + self.second + 1)

    def _expire(self, now: float) -> None:
        for conn in self.conns:
            if conn.state in IN_FLIGHT and now >= conn.deadline:
                self._fail(conn, "connect" if conn.state == CONNECTING else "timeout")

    def _emit_second(self) -> None:
        stats = SecondStats(
            second=self.second,
            requests=self.sec_requests,
            bytes_read=self.sec_bytes,
            errors=self.sec_errors,
            latency_us=bucket_counts(self.sec_latency),
        )
        summary = self.summary
        summary.requests += stats.requests
        summary.bytes_read += stats.bytes_read
        for name, count in stats.errors.items():
            summary.errors[name] = summary.errors.get(name, 0) + count
        self.second += 1
        self.sec_requests = self.sec_bytes = 0
        self.sec_errors, self.sec_latency = {}, {}
        self.emit(stats)

    def _finish(self, now: float) -> None:
        """Stop: what is still in flight is abandoned (counted apart, as wrk does)."""
        summary = self.summary
        summary.abandoned = self.inflight
        if self.spec.rate is not None:
            summary.scheduled = self._arrival_limit(min(now, self.spec.end or now))
        summary.connect_us = bucket_counts(summary.connect_us)
        summary.ended = now
        self._emit_second()  # the last, partial second
        self._close_all()


def run_engine(
    spec: EngineSpec,
    emit: Callable[[SecondStats], None],
    should_stop: Callable[[], bool] | None = None,
    stop_fd: int | None = None,
) -> ProcSummary:
    """Run one process's share; see ``Engine``."""
    return Engine(spec, emit, should_stop, stop_fd).run()
