"""corral bench against a plain stdlib server in a child process on 127.0.0.1 port 0.

The server (``http.server.ThreadingHTTPServer``, HTTP/1.1 keep-alive with Content-Length)
counts what it answers and reports the counts at ``/__stats``; readiness is the port number
it prints, read with a deadline. Paths choose behaviour: ``/status/NNN`` answers NNN,
``/slow?S`` waits S seconds (default 3), ``/truncate`` promises 100 bytes and sends 5,
``/eof`` is an HTTP/1.0 close-delimited body, ``/chunked`` uses chunked transfer coding,
``/big`` is a 1 MB body.
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from corral.bench import LoadConfig, Progress, run_load
from corral.bench.cli import main

pytestmark = pytest.mark.slow
READY_TIMEOUT_S = 15.0

SERVER = r"""
import http.server, json, sys, threading, time

lock = threading.Lock()
stats = {"count": 0, "paths": {}, "methods": {}, "body_bytes": 0}

class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # head and body go out in separate writes

    def log_message(self, *args):
        pass

    def _reply(self, status, body, extra=()):
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        for name, value in extra:
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _handle(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if self.path == "/__stats":
            with lock:
                return self._reply(200, json.dumps(stats).encode())
        with lock:
            stats["count"] += 1
            stats["paths"][self.path] = stats["paths"].get(self.path, 0) + 1
            stats["methods"][self.command] = stats["methods"].get(self.command, 0) + 1
            stats["body_bytes"] += len(body)
        if self.path.startswith("/status/"):
            return self._reply(int(self.path[8:]), b"status\n")
        if self.path == "/big":
            return self._reply(200, b"x" * 1_000_000)
        if self.path.startswith("/slow"):
            time.sleep(float(self.path.partition("?")[2] or 3))
            return self._reply(200, b"late\n")
        if self.path == "/truncate":
            self.send_response(200)
            self.send_header("Content-Length", "100")
            self.end_headers()
            self.wfile.write(b"short")
            self.close_connection = True
            return
        if self.path == "/eof":
            self.wfile.write(b"HTTP/1.0 200 OK\r\nServer: eof\r\n\r\nuntil close")
            self.close_connection = True
            return
        if self.path == "/chunked":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self.wfile.write(b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
            return
        self._reply(200, b"hello world\n", [("Server", "stdlib-test")])

    do_GET = do_POST = do_PUT = do_HEAD = _handle

class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def handle_error(self, request, client_address):
        pass  # clients that time out and close are part of the tests

server = Server(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
"""


class StdlibServer:
    def __init__(self, proc: subprocess.Popen[bytes], port: int) -> None:
        self.proc = proc
        self.port = port

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def stats(self) -> dict[str, Any]:
        with urllib.request.urlopen(self.url("/__stats"), timeout=10) as resp:
            result: dict[str, Any] = json.loads(resp.read())
            return result


@pytest.fixture
def server() -> Iterator[StdlibServer]:
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVER],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], READY_TIMEOUT_S)
        assert ready, "stdlib server did not report its port"
        yield StdlibServer(proc, int(proc.stdout.readline()))
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A port nothing listens on: bound (so no one else gets it) but never listening."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def test_completed_count_equals_server_count(server: StdlibServer) -> None:
    result = run_load(LoadConfig(urls=(server.url(),), requests=500, connections=8))
    assert result.requests == 500
    assert result.error_total == 0
    assert server.stats()["count"] == 500
    assert sum(s.requests for s in result.series) == 500
    assert result.histogram.get_total_count() == 500
    assert result.summary.connections_opened == 8
    assert result.summary.statuses == {200: 500}
    assert result.summary.abandoned == 0


def test_non_2xx_are_counted(server: StdlibServer) -> None:
    result = run_load(LoadConfig(urls=(server.url("/status/503"),), requests=60, connections=3))
    assert result.requests == 60
    assert result.errors["non_2xx"] == 60
    assert result.failed == 0
    assert result.summary.statuses == {503: 60}


def test_connection_refused_counts_connect_errors(
    closed_port: int, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"http://127.0.0.1:{closed_port}/"
    result = run_load(LoadConfig(urls=(url,), requests=40, connections=4))
    assert result.requests == 0
    assert result.errors["connect"] == 40
    assert result.failed == 40
    code = main(["-n", "20", "-c", "2", "--json", url])
    captured = capsys.readouterr()
    assert code == 1  # nothing completed
    assert "Traceback" not in captured.err
    assert json.loads(captured.out)["errors"]["connect"] == 20


def test_open_model_keeps_its_rate(server: StdlibServer) -> None:
    result = run_load(LoadConfig(urls=(server.url(),), rate=200.0, duration_s=2.0, connections=8))
    assert 360 <= result.requests <= 440
    assert result.rps == pytest.approx(200.0, rel=0.1)
    assert 380 <= result.summary.scheduled <= 420
    assert result.summary.dispatched <= result.summary.scheduled + 1
    assert result.error_total == 0
    # Completed ones were all counted; abandoned ones may or may not have reached it yet.
    assert result.requests <= server.stats()["count"] <= result.requests + 8


def test_open_model_counts_queueing_in_latency(server: StdlibServer) -> None:
    """One connection, 1 s responses, 4 arrivals/s: the second arrival (due at 0.25 s) queues
    behind the first until 1 s, so from its intended time it takes 1.75 s, not the 1 s the
    server spent on it -- the time a closed-loop tool would report."""
    config = LoadConfig(
        urls=(server.url("/slow?1"),), rate=4.0, requests=2, connections=1, timeout_s=10.0
    )
    result = run_load(config)
    assert result.requests == 2
    assert result.summary.max_lag_s >= 0.7  # sent at ~1.0 s, intended at 0.25 s
    assert result.max_latency_ms() >= 1700


def test_procs_merge(server: StdlibServer) -> None:
    result = run_load(LoadConfig(urls=(server.url(),), requests=400, connections=4, procs=2))
    assert result.worker_failures == []
    assert result.requests == 400
    assert server.stats()["count"] == 400
    assert result.histogram.get_total_count() == 400
    assert sum(s.requests for s in result.series) == 400
    assert result.summary.connections_opened == 4
    assert result.procs == 2


def test_procs_open_model_interleave(server: StdlibServer) -> None:
    config = LoadConfig(urls=(server.url(),), rate=100.0, requests=100, connections=4, procs=2)
    result = run_load(config)
    assert result.requests == 100
    assert result.summary.dispatched == 100
    assert 0.9 <= result.duration_s < 3.0  # 100 arrivals at 100/s overall, not 200/s


def test_json_schema_from_cli(server: StdlibServer, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["-n", "100", "-c", "4", "--json", server.url()]) == 0
    doc = json.loads(capsys.readouterr().out)
    for key in ("requests", "rps", "errors", "latency_ms", "duration_s", "connections"):
        assert key in doc
    assert doc["requests"] == 100 and doc["connections"] == 4
    assert doc["errors"]["total"] == 0
    assert set(doc["errors"]) == {"connect", "reset", "timeout", "protocol", "non_2xx", "total"}
    assert {"p50", "p90", "p99", "p999", "max"} <= set(doc["latency_ms"])
    assert doc["server"]["software"] == "stdlib-test"
    assert doc["server"]["document_length"] == 12


def test_text_csv_and_plot_from_cli(
    server: StdlibServer, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    page = tmp_path / "plot.html"
    assert main(["-n", "50", "-c", "2", "--plot", str(page), server.url()]) == 0
    text = capsys.readouterr().out
    assert "Complete requests:      50" in text
    assert "Percentage of the requests served within a certain time (ms)" in text
    assert page.read_text().count("<svg") == 2
    assert main(["-n", "30", "-c", "2", "--csv", server.url()]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and lines[0].startswith("url,model,")


def test_no_keepalive_opens_a_connection_per_request(server: StdlibServer) -> None:
    config = LoadConfig(urls=(server.url(),), requests=60, connections=3, keepalive=False)
    result = run_load(config)
    assert result.requests == 60
    assert result.summary.connections_opened == 60
    assert result.connect_histogram.get_total_count() == 60
    assert server.stats()["count"] == 60


def test_post_body_and_round_robin_urls(server: StdlibServer) -> None:
    urls = (server.url("/a"), server.url("/b"))
    config = LoadConfig(urls=urls, requests=40, connections=2, method="POST", body=b"x" * 33)
    result = run_load(config)
    assert result.requests == 40
    stats = server.stats()
    assert stats["paths"] == {"/a": 20, "/b": 20}
    assert stats["methods"] == {"POST": 40}
    assert stats["body_bytes"] == 40 * 33


def test_head_requests_end_at_the_head(server: StdlibServer) -> None:
    result = run_load(LoadConfig(urls=(server.url(),), requests=30, connections=2, method="HEAD"))
    assert result.requests == 30
    assert result.error_total == 0


def test_timeouts_are_counted(server: StdlibServer) -> None:
    config = LoadConfig(urls=(server.url("/slow"),), requests=2, connections=2, timeout_s=0.3)
    result = run_load(config)
    assert result.requests == 0
    assert result.errors["timeout"] == 2


def test_truncated_body_is_a_reset(server: StdlibServer) -> None:
    result = run_load(LoadConfig(urls=(server.url("/truncate"),), requests=10, connections=2))
    assert result.requests == 0
    assert result.errors["reset"] == 10


def test_close_delimited_and_chunked_bodies_complete(server: StdlibServer) -> None:
    eof = run_load(LoadConfig(urls=(server.url("/eof"),), requests=20, connections=2))
    assert (eof.requests, eof.error_total, eof.summary.connections_opened) == (20, 0, 20)
    chunked = run_load(LoadConfig(urls=(server.url("/chunked"),), requests=20, connections=2))
    assert (chunked.requests, chunked.error_total) == (20, 0)
    assert chunked.summary.connections_opened == 2


def test_large_bodies_span_reads(server: StdlibServer) -> None:
    result = run_load(LoadConfig(urls=(server.url("/big"),), requests=6, connections=2))
    assert (result.requests, result.error_total) == (6, 0)
    assert result.summary.bytes_read > 6_000_000
    assert result.summary.connections_opened == 2


def test_stop_event_ends_a_run_early(server: StdlibServer) -> None:
    stop = threading.Event()
    seen: list[Progress] = []

    def on_progress(progress: Progress) -> None:
        seen.append(progress)
        stop.set()

    config = LoadConfig(urls=(server.url(),), duration_s=30.0, connections=2, rate=50.0)
    result = run_load(config, stop=stop, on_progress=on_progress)
    assert result.duration_s < 5.0
    assert seen and seen[0].last.second == 0
    assert seen[0].requests == seen[0].last.requests > 0


def test_stop_event_reaches_forked_workers(server: StdlibServer) -> None:
    stop = threading.Event()
    config = LoadConfig(urls=(server.url(),), duration_s=30.0, connections=2, procs=2)
    result = run_load(config, stop=stop, on_progress=lambda p: stop.set())
    assert result.duration_s < 5.0
    assert result.worker_failures == []
    assert result.requests > 0


def test_forked_workers_do_not_hold_the_callers_sockets(server: StdlibServer) -> None:
    """A listener the caller closes mid-run must refuse connections at once: no bench worker
    process may keep an inherited copy of it open (chaos scenarios restart servers)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    port = listener.getsockname()[1]
    outcomes: list[str] = []
    stop = threading.Event()

    def on_progress(progress: Progress) -> None:
        if not outcomes:  # the workers are running now
            listener.close()
            with socket.socket() as probe:
                probe.settimeout(5)
                outcomes.append("refused" if probe.connect_ex(("127.0.0.1", port)) else "held")
        stop.set()

    config = LoadConfig(urls=(server.url(),), duration_s=20.0, connections=2, procs=2)
    result = run_load(config, stop=stop, on_progress=on_progress)
    listener.close()
    assert outcomes == ["refused"]
    assert result.worker_failures == []


def test_interrupt_prints_the_report(server: StdlibServer) -> None:
    """The first ^C stops the run; the report still comes out and the exit status is 0."""
    cmd = [sys.executable, "-m", "corral.bench", "-d", "30", "-c", "2", "--progress"]
    proc = subprocess.Popen(
        [*cmd, server.url()], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert proc.stderr is not None
        ready, _, _ = select.select([proc.stderr], [], [], READY_TIMEOUT_S)
        assert ready, "no progress line"  # the first progress line: the run is going
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=15)
    finally:
        proc.kill()
        proc.wait(timeout=10)
    assert proc.returncode == 0, err
    assert "Complete requests:" in out
    assert "Traceback" not in err
