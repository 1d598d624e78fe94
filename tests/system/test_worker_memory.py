"""Slow readers must not multiply a worker's memory (issue 16.7): a list body goes out as the
app's own buffer, not as a joined copy per connection."""

from __future__ import annotations

import socket
from typing import Any

import pytest

from corral.memory.proc import read_smaps_rollup
from harness import worker_pids

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

READERS = 200
MIB = 1 << 20


def _slow_reader(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)  # a small window: it stalls
    sock.settimeout(20)
    sock.connect((host, port))
    sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    return sock


def test_200_slow_readers_of_a_10_mib_list_body_cost_under_50_mib(corral_factory: Any) -> None:
    c = corral_factory("sysapps:big_app", "-b", "127.0.0.1:0", "-w", "1")
    (pid,) = worker_pids(c.pid)
    status, body = c.get("/")  # one whole response first: buffers and caches warmed
    assert status == 200 and len(body) == 10 * MIB
    before = read_smaps_rollup(pid).uss
    readers = [_slow_reader(c.host, c.port) for _ in range(READERS)]
    try:
        for sock in readers:  # each response has started and stalls on the reader
            assert sock.recv(1) == b"H"
        during = read_smaps_rollup(pid).uss
    finally:
        for sock in readers:
            sock.close()
    grown = (during - before) / MIB
    print(f"worker USS {before / MIB:.1f} MiB idle, {during / MIB:.1f} MiB with {READERS} "
          f"slow readers (+{grown:.1f} MiB)")  # fmt: skip
    assert grown < 50, f"{READERS} slow readers grew the worker by {grown:.0f} MiB"
