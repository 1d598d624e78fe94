"""The stats HTTP server on a real socket, driven by a selector loop thread like the master's."""

from __future__ import annotations

import http.client
import json
import socket
import time
from collections.abc import Iterator

import pytest

from corral.stats import server as server_mod
from corral.stats.demo import DemoFleet, LoopThread
from corral.stats.fleet import FleetSnapshot
from corral.stats.top import main as top_main

pytestmark = [pytest.mark.slow, pytest.mark.timeout(60)]
TIMEOUT_S = 10.0


class Health:
    def __init__(self) -> None:
        self.ok = True

    def __call__(self) -> bool:
        return self.ok


@pytest.fixture
def health() -> Health:
    return Health()


@pytest.fixture
def loop(health: Health) -> Iterator[LoopThread]:
    demo = DemoFleet(2, now=time.monotonic(), seed=3)
    lt = LoopThread(lambda: demo.snapshot(time.monotonic()), healthy=health).start()
    yield lt
    lt.stop()
    demo.scoreboard.close()


def get(lt: LoopThread, path: str, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    host, port = lt.address
    conn = http.client.HTTPConnection(host, port, timeout=TIMEOUT_S)
    try:
        conn.request(method, path)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def test_metrics(loop: LoopThread) -> None:
    status, headers, body = get(loop, "/metrics")
    assert status == 200
    assert headers["content-type"].startswith("text/plain; version=0.0.4")
    text = body.decode()
    assert "# TYPE corral_requests counter" in text
    assert 'corral_requests_in_flight{worker="1"}' in text
    assert text.endswith("\n") and headers["connection"] == "close"


def test_stats_json_has_every_worker(loop: LoopThread) -> None:
    status, headers, body = get(loop, "/stats?x=1")
    assert status == 200 and headers["content-type"] == "application/json"
    doc = json.loads(body)
    assert [w["id"] for w in doc["workers"]] == [0, 1]
    assert all(w["memory"]["rss"] > 0 for w in doc["workers"])


def test_dashboard_and_assets(loop: LoopThread) -> None:
    status, headers, body = get(loop, "/")
    assert status == 200 and headers["content-type"].startswith("text/html")
    assert b"/assets/dashboard.js" in body
    for name, ctype in (("dashboard.js", "text/javascript"), ("dashboard.css", "text/css")):
        status, headers, body = get(loop, f"/assets/{name}")
        assert status == 200 and headers["content-type"].startswith(ctype) and body
    assert get(loop, "/assets/../server.py")[0] == 404
    assert get(loop, "/assets/nope.js")[0] == 404


def test_healthz_follows_health(loop: LoopThread, health: Health) -> None:
    assert get(loop, "/healthz")[::2] == (200, b"ok\n")
    health.ok = False
    assert get(loop, "/healthz")[::2] == (503, b"draining\n")


def test_unknown_paths_and_methods(loop: LoopThread) -> None:
    assert get(loop, "/nope")[0] == 404
    status, headers, _ = get(loop, "/metrics", method="POST")
    assert status == 405 and headers["allow"] == "GET, HEAD"
    status, headers, body = get(loop, "/metrics", method="HEAD")
    assert status == 200 and body == b"" and int(headers["content-length"]) > 0


def raw(lt: LoopThread, data: bytes) -> bytes:
    with socket.create_connection(lt.address, timeout=TIMEOUT_S) as s:
        s.sendall(data)
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_malformed_and_oversized_requests(loop: LoopThread) -> None:
    assert raw(loop, b"NONSENSE\r\n\r\n").startswith(b"HTTP/1.1 400 ")
    big = b"GET / HTTP/1.1\r\nX: " + b"a" * (server_mod.MAX_REQUEST_BYTES + 10)
    assert raw(loop, big).startswith(b"HTTP/1.1 431 ")


def test_a_request_split_across_packets(loop: LoopThread) -> None:
    with socket.create_connection(loop.address, timeout=TIMEOUT_S) as s:
        for part in (b"GET /hea", b"lthz HTTP/1.1\r\n", b"Host: 127.0.0.1\r\n", b"\r\n"):
            s.sendall(part)
        s.shutdown(socket.SHUT_WR)
        data = s.makefile("rb").read()
    assert data.startswith(b"HTTP/1.1 200 ") and data.endswith(b"\r\n\r\nok\n")


def test_connection_count_is_bounded(loop: LoopThread) -> None:
    idle = [
        socket.create_connection(loop.address, timeout=TIMEOUT_S)
        for _ in range(server_mod.MAX_CONNECTIONS + 8)
    ]
    try:
        assert get(loop, "/healthz")[0] == 200  # oldest idle clients were dropped to admit it
        assert len(loop.server._connections) <= server_mod.MAX_CONNECTIONS
        closed = 0
        for s in idle[:8]:
            s.settimeout(TIMEOUT_S)
            if s.recv(1) == b"":
                closed += 1
        assert closed == 8
    finally:
        for s in idle:
            s.close()


def test_top_once_prints_every_worker(
    loop: LoopThread, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    host, port = loop.address
    doc = json.loads(get(loop, "/stats")[2])
    assert top_main([f"{host}:{port}", "--once"]) == 0
    out = capsys.readouterr().out
    for w in doc["workers"]:
        assert str(w["pid"]) in out
    assert "requests" in out and "p99" in out and "ready" in out


def test_top_reports_an_unreachable_address(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, never listening: connection refused
        assert top_main([f"127.0.0.1:{port}", "--once"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("corral top: cannot read http://127.0.0.1:")


def test_a_failing_provider_answers_500_and_the_loop_survives(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken() -> FleetSnapshot:
        raise RuntimeError("boom")

    lt = LoopThread(broken).start()
    try:
        assert get(lt, "/metrics")[0] == 500
        assert get(lt, "/stats")[0] == 500
        assert get(lt, "/healthz")[0] == 200
    finally:
        lt.stop()
    assert "rendering /metrics failed" in caplog.text


def test_top_live_mode_refreshes_and_stops_after_count(
    loop: LoopThread, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    host, port = loop.address
    assert top_main([f"{host}:{port}", "--interval", "0.1", "--count", "3"]) == 0
    out = capsys.readouterr().out
    assert "corral top" in out and "ready" in out


def raw_status(lt: LoopThread, head: bytes) -> int:
    with socket.create_connection(lt.address, timeout=TIMEOUT_S) as sock:
        sock.sendall(head)
        data = b""
        while b"\r\n" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    return int(data.split(b" ", 2)[1])


@pytest.mark.parametrize(
    ("host", "status"),
    [
        (b"127.0.0.1", 200),
        (b"127.0.0.1:9100", 200),  # a forwarded port: the name is what counts
        (b"localhost:1234", 200),
        (b"LOCALHOST", 200),
        (b"evil.example", 421),  # DNS rebinding: the page's own name
        (b"evil.example:9100", 421),
        (b"127.0.0.2", 421),  # not the address the client reached
        (b"", 421),
        (b"metrics.internal", 200),  # listed in allowed_hosts
    ],
)
def test_only_its_own_names_are_answered(host: bytes, status: int) -> None:
    """issue 16: a DNS-rebinding page could read /stats; Host must name the server."""
    demo = DemoFleet(1, now=time.monotonic(), seed=3)
    lt = LoopThread(lambda: demo.snapshot(time.monotonic()), allowed_hosts=["Metrics.Internal"])
    lt.start()
    try:
        head = b"GET /healthz HTTP/1.1\r\nHost: " + host + b"\r\n\r\n"
        assert raw_status(lt, head) == status
    finally:
        lt.stop()
        demo.scoreboard.close()


def test_host_rules_by_version(loop: LoopThread) -> None:
    assert raw_status(loop, b"GET /healthz HTTP/1.1\r\n\r\n") == 400  # RFC 9112 §3.2
    assert raw_status(loop, b"GET /healthz HTTP/1.0\r\n\r\n") == 200
    two = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nhost: evil.example\r\n\r\n"
    assert raw_status(loop, two) == 400


def test_ipv6_loopback_names(health: Health) -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    demo = DemoFleet(1, now=time.monotonic(), seed=3)
    try:
        lt = LoopThread(lambda: demo.snapshot(time.monotonic()), host="::1").start()
    except OSError as exc:
        demo.scoreboard.close()
        pytest.skip(f"no ::1: {exc}")
    try:
        for host, status in [(b"[::1]:80", 200), (b"[0:0::1]", 200), (b"localhost", 200)]:
            head = b"GET /healthz HTTP/1.1\r\nHost: " + host + b"\r\n\r\n"
            assert raw_status(lt, head) == status, host
        assert raw_status(lt, b"GET / HTTP/1.1\r\nHost: [::2]\r\n\r\n") == 421
    finally:
        lt.stop()
        demo.scoreboard.close()
