"""Unread request bodies, unread responses and the connection cap (issue 16, points 5, 7, 8),
with a real forked worker on real sockets and the settings production runs."""

from __future__ import annotations

import dataclasses
import socket
import time
from pathlib import Path
from typing import Any

import pytest

from corral.config import load
from corral.master.worker_settings import worker_settings
from corral.worker import WorkerSettings

from .conftest import StartServer
from .httpraw import read_response

pytestmark = [pytest.mark.slow, pytest.mark.timeout(60)]

RESPONSE = b"r" * 100_000  # larger than one segment: the client must read several


def production(**env: str) -> WorkerSettings:
    """The WorkerSettings ``corral serve`` would build, with CORRAL_* overrides."""
    return worker_settings(load(environ={f"CORRAL_{k.upper()}": v for k, v in env.items()}))


def ignore_body(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [RESPONSE]


def fresh_big(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    """A new 4 MiB object per request (so each unread response holds its own)."""
    start_response("200 OK", [])
    return [b"z" * (4 << 20)] if environ["PATH_INFO"] == "/big" else [b"small"]


def post_head(length: int) -> bytes:
    return b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % length


def test_unread_body_over_the_drain_limit_lingers_instead_of_resetting(
    start_server: StartServer,
) -> None:
    settings = production()
    size = 8 * settings.limits.drain_unread_body  # far past what is drained to keep it alive
    server = start_server(ignore_body, settings)
    with server.connect() as sock:
        # The whole body goes out before the client reads (as a simple blocking client does):
        # a close with unread data would reset the connection and lose the response.
        sock.sendall(post_head(size) + b"b" * size)
        f = sock.makefile("rb")
        resp = read_response(f)
        assert resp.status == 200 and resp.complete and resp.body == RESPONSE
        assert resp.headers["connection"] == "close"
        assert f.read() == b""  # a clean end (FIN), not ECONNRESET


def test_unread_body_within_the_drain_limit_keeps_the_connection(
    start_server: StartServer,
) -> None:
    settings = production()
    size = settings.limits.drain_unread_body // 2
    assert size > settings.buffer_body_max  # streamed to the app, which leaves it unread
    server = start_server(ignore_body, settings)
    with server.connect() as sock:
        f = sock.makefile("rb")
        sock.sendall(post_head(size) + b"b" * size)
        first = read_response(f)
        assert first.status == 200 and "connection" not in first.headers
        sock.sendall(b"GET /again HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_response(f).status == 200  # same connection, body discarded


def _slow_reader(server: Any, path: bytes = b"/big") -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)  # keep the window small
    sock.settimeout(10)
    sock.connect(server.address)
    sock.sendall(b"GET " + path + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    assert sock.recv(1) == b"H"  # the response started; the rest waits for us
    return sock


def _read_all(sock: socket.socket, until: int) -> int:
    got = 0
    while got < until:
        data = sock.recv(1 << 20)
        assert data
        got += len(data)
    return got


def test_pending_response_bytes_bound_pauses_new_requests(start_server: StartServer) -> None:
    settings = dataclasses.replace(production(), max_pending_bytes=6 << 20)
    server = start_server(fresh_big, settings)
    readers = [_slow_reader(server), _slow_reader(server)]  # 8 MiB held > 6 MiB
    try:
        with server.connect() as late:
            late.sendall(b"GET /small HTTP/1.1\r\nHost: x\r\n\r\n")
            late.settimeout(0.5)
            with pytest.raises(TimeoutError):  # waits (in the backlog), is not reset
                late.recv(1)
            _read_all(readers[0], 4 << 20)  # one slow reader catches up: 4 MiB held
            late.settimeout(10)
            assert read_response(late.makefile("rb")).status == 200
    finally:
        for sock in readers:
            sock.close()
    assert "pausing new requests" in server.log()


def test_shared_list_body_is_not_copied_per_slow_reader(start_server: StartServer) -> None:
    # The worker must not count (or hold) one copy per connection of a shared body.
    body = b"s" * (4 << 20)

    def shared(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [])
        return [body]

    settings = dataclasses.replace(production(), max_pending_bytes=6 << 20)
    server = start_server(shared, settings)
    readers = [_slow_reader(server) for _ in range(4)]  # 16 MiB if copied, 4 MiB shared
    try:
        with server.connect() as other:
            other.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            other.settimeout(10)
            assert other.recv(1) == b"H"  # not paused
    finally:
        for sock in readers:
            sock.close()
    assert "pausing" not in server.log()


def test_worker_connections_cap_queues_in_the_backlog_and_serves_a_normal_client(
    start_server: StartServer, tmp_path: Path
) -> None:
    settings = production(worker_connections="20", header_timeout_s="1")
    assert settings.max_connections == 20
    record = tmp_path / "slot.txt"
    server = start_server(ignore_body, settings, slot_record=record)
    slowloris = []
    try:
        for _ in range(30):  # 20 fill the cap, 10 wait in the kernel's backlog
            sock = server.connect()
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")  # never finished
            slowloris.append(sock)
        started = time.monotonic()
        with server.connect() as normal:
            normal.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            resp = read_response(normal.makefile("rb"))
        waited = time.monotonic() - started
        assert resp.status == 200
        # Bound: the slowloris heads time out (header_timeout_s, checked once a second),
        # each gets its 408 and a lingering close (linger_timeout_s), then slots free up.
        assert waited < settings.header_timeout_s + 1.0 + settings.linger_timeout_s + 3.0
        for sock in slowloris:  # every one got its answer; none was reset
            sock.settimeout(10)
            assert read_response(sock.makefile("rb")).status == 408
    finally:
        for sock in slowloris:
            sock.close()
    counts = [int(ln.split()[1]) for ln in record.read_text().splitlines() if "connections" in ln]
    assert max(counts) == 20


@pytest.mark.parametrize("threads", ["1", "4"])
def test_large_list_body_arrives_whole_from_both_pumps(
    start_server: StartServer, threads: str
) -> None:
    server = start_server(fresh_big, production(threads=threads))
    with server.connect() as sock:
        f = sock.makefile("rb")
        for _ in range(2):  # kept alive after a scatter-list response
            sock.sendall(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
            resp = read_response(f)
            assert resp.status == 200 and resp.body == b"z" * (4 << 20)


def test_silent_connections_holding_the_cap_give_way_to_a_normal_client(
    start_server: StartServer,
) -> None:
    settings = production(worker_connections="20")  # default timeouts
    server = start_server(ignore_body, settings)
    silent = [server.connect() for _ in range(30)]  # connected, never a byte
    try:
        wait_accepted = time.monotonic() + 10
        while time.monotonic() < wait_accepted:  # the 30th evicted the 10th by now
            silent[0].settimeout(0.05)
            try:
                if silent[0].recv(1) == b"":
                    break
            except TimeoutError:
                pass
        started = time.monotonic()
        with server.connect() as normal:
            normal.settimeout(settings.header_timeout_s)
            normal.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert read_response(normal.makefile("rb")).status == 200
        # A silent connection is closed to make room (nginx reuses such connections the
        # same way), instead of the new client waiting for header_timeout_s.
        assert time.monotonic() - started < settings.header_timeout_s / 2
        for sock in silent[:11]:  # the oldest went first, closed cleanly, not reset
            sock.settimeout(5)
            assert sock.recv(1) == b""
    finally:
        for sock in silent:
            sock.close()


def test_unread_chunked_body_lingers_instead_of_resetting(start_server: StartServer) -> None:
    server = start_server(ignore_body, production())
    chunk = b"%x\r\n%s\r\n" % (65536, b"c" * 65536)
    with server.connect() as sock:  # size unknown: the worker says close, then lingers
        sock.sendall(
            b"POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            + chunk * 64
            + b"0\r\n\r\n"
        )
        f = sock.makefile("rb")
        resp = read_response(f)
        assert resp.status == 200 and resp.body == RESPONSE
        assert f.read() == b""


def test_slowloris_heads_holding_the_cap_give_way_to_a_normal_client(
    start_server: StartServer,
) -> None:
    """Issue 16.8: connections that sent part of a head and then stalled held every slot
    until header_timeout_s (10 s), so a normal client waited that long in the backlog. At
    the cap, with a client waiting, a head older than SLOW_HEAD_S gives way: it gets its 408
    and a clean close, and the waiting client is served at once."""
    settings = production(worker_connections="20")  # default header_timeout_s: 10 s
    server = start_server(ignore_body, settings)
    slowloris = []
    try:
        for _ in range(30):  # 20 fill the cap, 10 wait in the kernel's backlog
            sock = server.connect()
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")  # never finished
            slowloris.append(sock)
        started = time.monotonic()
        with server.connect() as normal:
            normal.settimeout(settings.header_timeout_s / 2)
            normal.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert read_response(normal.makefile("rb")).status == 200
        # a slow head is one older than 1 s; the loop retries accepting once a second
        assert time.monotonic() - started < settings.header_timeout_s / 2
        for sock in slowloris[:10]:  # the oldest went first, answered, closed cleanly
            sock.settimeout(5)
            f = sock.makefile("rb")
            assert read_response(f).status == 408
            assert f.read() == b""
    finally:
        for sock in slowloris:
            sock.close()
