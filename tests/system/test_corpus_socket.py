"""The protocol corpus over real sockets against the real server: every case gets what a client
should see, and no input kills a worker or prints a traceback."""

from __future__ import annotations

import re
import socket
import time
from typing import Any

import pytest

from harness import worker_pids
from tests.corpus import load_cases

pytestmark = pytest.mark.slow
PROBE = b"GET /probe HTTP/1.1\r\nHost: probe\r\nConnection: close\r\n\r\n"
STATUS = re.compile(rb"HTTP/1\.[01] (\d{3}) ")


def _read_to_eof(sock: socket.socket, total_s: float = 10.0) -> bytes:
    data = b""
    deadline = time.monotonic() + total_s
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return data
        if not chunk:
            return data
        data += chunk
    raise AssertionError(f"no EOF within {total_s}s; got {data[:200]!r}")


def _exchange(host: str, port: int, raw: bytes, eof: bool, probe: bool) -> bytes:
    with socket.create_connection((host, port), timeout=10) as sock:
        try:
            sock.sendall(raw + (PROBE if probe else b""))
            if eof:
                sock.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed before taking everything: read its answer
        return _read_to_eof(sock)


@pytest.mark.parametrize("app", ["sysapps:corpus_app", "asgiapps:corpus_app"])
def test_corpus_over_real_sockets(corral_factory: Any, app: str) -> None:
    """The WSGI and the ASGI worker drive the same HTTP core: the same verdicts."""
    c = corral_factory(app, "-b", "127.0.0.1:0", "-w", "2")
    workers = worker_pids(c.pid)
    mismatches = []
    cases = load_cases()
    for case in cases:
        # A connection the case leaves open must still serve a probe request afterwards.
        probe = not case.close and not case.eof
        data = _exchange(c.host, c.port, case.raw, case.eof, probe)
        statuses = [int(s) for s in STATUS.findall(data) if s != b"100"]
        oks = statuses.count(200) - (1 if probe else 0)
        errors = [s for s in statuses if s != 200]
        got = (errors[-1] if errors else None, oks)
        if got != (case.expect_status, case.requests) or len(errors) > 1:
            mismatches.append((case.name, (case.expect_status, case.requests), got, data[:160]))
    assert mismatches == [], "\n".join(map(str, mismatches))
    assert worker_pids(c.pid) == workers, "a worker died"
    assert "Traceback" not in c.log()
    assert len(cases) >= 80
