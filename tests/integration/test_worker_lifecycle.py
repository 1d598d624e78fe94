"""Timeouts, slow clients and signals: the worker's life with real sockets and processes."""

from __future__ import annotations

import http.client
import os
import select
import signal
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.worker_defaults import production_worker_settings

from .apps import make_app
from .conftest import StartServer
from .httpraw import read_response

pytestmark = [pytest.mark.slow, pytest.mark.timeout(60)]


@pytest.fixture
def marker() -> Iterator[tuple[int, int]]:
    """A pipe the app writes to when a slow request starts."""
    r, w = os.pipe()
    yield r, w
    os.close(r)
    os.close(w)


def wait_marker(fd: int, timeout: float = 10.0) -> None:
    ready, _, _ = select.select([fd], [], [], timeout)
    assert ready, "the app never started the slow request"
    assert os.read(fd, 1) == b"S"


def hello(port: int) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", "/")
        resp = conn.getresponse()
        assert resp.read() == b"Hello, world!"
        return resp.status
    finally:
        conn.close()


def closed_by_peer(sock: socket.socket, timeout: float = 10.0) -> bytes:
    """Everything the peer sends until it closes; fails the test if it never closes."""
    sock.settimeout(timeout)
    parts = []
    while chunk := sock.recv(65536):
        parts.append(chunk)
    return b"".join(parts)


def test_sigterm_finishes_in_flight_request(
    start_server: StartServer, marker: tuple[int, int]
) -> None:
    server = start_server(make_app(marker_fd=marker[1]))
    idle = server.connect()
    idle.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    idle_file = idle.makefile("rb")
    assert read_response(idle_file).status == 200  # now an idle kept-alive connection
    with server.connect() as busy:
        busy.sendall(
            b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n"
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"  # pipelined, already received
        )
        wait_marker(marker[0])
        os.kill(server.pid, signal.SIGTERM)
        f = busy.makefile("rb")
        slow = read_response(f)
        second = read_response(f)
        assert closed_by_peer(busy) == b""
    assert (slow.status, slow.body) == (200, b"slow done")
    assert (second.status, second.body) == (200, b"Hello, world!")
    assert second.headers["connection"] == "close"
    assert closed_by_peer(idle) == b""  # idle keep-alive connection closed by the drain
    idle.close()
    assert server.wait(10.0) == 0


def test_sigint_stops_at_once(start_server: StartServer) -> None:
    server = start_server(make_app())
    with server.connect() as idle:
        idle.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        read_response(idle.makefile("rb"))
        os.kill(server.pid, signal.SIGINT)
        assert server.wait(10.0) == 0


def test_keepalive_timeout_closes_idle_connection(start_server: StartServer) -> None:
    server = start_server(make_app(), production_worker_settings(keepalive_timeout_s=0.5))
    with server.connect() as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        f = sock.makefile("rb")
        assert read_response(f).status == 200
        assert f.read() == b""  # closed without a word after the idle timeout


def test_slowloris_does_not_starve_normal_clients(start_server: StartServer) -> None:
    server = start_server(make_app(), production_worker_settings(header_timeout_s=2.0))
    slow = [server.connect() for _ in range(50)]
    try:
        for sock in slow:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
        for round_ in range(3):
            for sock in slow:
                sock.sendall(b"X-Drip-%d: a\r\n" % round_)
            assert hello(server.port) == 200  # answered while 50 heads trickle in
        for sock in slow:  # each slow head ends with 408 once its head timeout passes
            data = closed_by_peer(sock)
            assert data.startswith(b"HTTP/1.1 408 "), data[:40]
        assert hello(server.port) == 200
    finally:
        for sock in slow:
            sock.close()


def test_idle_connections_do_not_hold_the_app(start_server: StartServer) -> None:
    server = start_server(make_app())
    idle = [server.connect() for _ in range(20)]  # connected, never send anything
    try:
        for _ in range(5):
            assert hello(server.port) == 200
    finally:
        for sock in idle:
            sock.close()


def test_worker_reports_to_its_slot(start_server: StartServer, tmp_path: Path) -> None:
    record = tmp_path / "slot.txt"
    server = start_server(make_app(), slot_record=record)
    sent = (
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nbody"
        b"GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    with server.connect() as sock:
        sock.sendall(sent)
        closed_by_peer(sock)
    server.stop()
    assert server.exit_code == 0
    lines = record.read_text().splitlines()
    states = [ln for ln in lines if ln.startswith("state")]
    assert states == ["state BOOTING", "state READY", "state DRAINING", "state EXITED"]
    assert "start POST /echo" in lines and "start GET /nope" in lines
    finishes = [ln.split() for ln in lines if ln.startswith("finish")]
    assert [(f[1], f[3]) for f in finishes] == [("200", "True"), ("404", "True")]
    # bytes received are every byte read off the socket (heads too), each counted once,
    # on the request whose turn it was when they arrived
    assert sum(int(f[2]) for f in finishes) == len(sent)
    assert "heartbeat" in lines
    assert "connections 1" in lines and lines[-2:] == ["connections 0", "state EXITED"]


def test_max_connections_pauses_accepting(start_server: StartServer) -> None:
    server = start_server(make_app(), production_worker_settings(max_connections=2))
    held = [server.connect() for _ in range(2)]
    try:
        for sock in held:  # both accepted and kept alive
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert read_response(sock.makefile("rb")).status == 200
        with server.connect() as third:  # queued by the kernel, not accepted
            third.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            third.settimeout(0.5)
            with pytest.raises(TimeoutError):
                third.recv(1)
            held.pop().close()  # a slot frees up: accepting resumes
            third.settimeout(10.0)
            assert read_response(third.makefile("rb")).status == 200
    finally:
        for sock in held:
            sock.close()


def test_sigusr1_reopens_log_files(start_server: StartServer) -> None:
    server = start_server(make_app(), production_worker_settings(access_log="common"))
    assert hello(server.port) == 200
    rotated = server.log_path.with_suffix(".1")
    server.log_path.rename(rotated)  # what logrotate does before signalling
    os.kill(server.pid, signal.SIGUSR1)
    for _ in range(100):  # bounded: the reopen happens on the loop's next wake-up
        assert hello(server.port) == 200
        if server.log_path.exists() and "corral.access" in server.log_path.read_text():
            break  # (exists() alone races with the handler's first write)
    assert "corral.access" in server.log_path.read_text()
    assert "corral.access" in rotated.read_text()
    assert server.wait(0.0) is None  # SIGUSR1 did not stop the worker


def test_threads_serve_others_while_app_is_slow(
    start_server: StartServer, marker: tuple[int, int]
) -> None:
    server = start_server(make_app(marker_fd=marker[1]), production_worker_settings(threads=4))
    with server.connect() as busy:
        busy.sendall(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
        wait_marker(marker[0])
        busy.settimeout(0)  # the slow response must not have arrived yet
        with pytest.raises(BlockingIOError):
            busy.recv(1)
        assert hello(server.port) == 200  # served by another thread meanwhile
        busy.settimeout(10.0)
        assert read_response(busy.makefile("rb")).body == b"slow done"


def test_threads_sigterm_finishes_in_flight(
    start_server: StartServer, marker: tuple[int, int]
) -> None:
    server = start_server(make_app(marker_fd=marker[1]), production_worker_settings(threads=4))
    with server.connect() as busy:
        busy.sendall(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n")
        wait_marker(marker[0])
        os.kill(server.pid, signal.SIGTERM)
        f = busy.makefile("rb")
        assert read_response(f).body == b"slow done"
        second = read_response(f)
        assert second.headers["connection"] == "close"
        assert closed_by_peer(busy) == b""
    assert server.wait(10.0) == 0
