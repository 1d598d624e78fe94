"""Keep-alive connections split evenly across workers (issue 14; worker/fairness.py).

A burst of connections is opened at once (all connected before the first request is sent,
as wrk does), then each sends one request to ``/pid`` and keeps the connection: the answer
names the worker that holds it, for the connection's whole life. Before the fairness rules
the first worker in the listener's queue of exclusive waiters took most of a burst.
"""

from __future__ import annotations

import socket
from collections import Counter
from typing import Any

import pytest

CONNECTIONS = 32
REQUEST = b"GET /pid HTTP/1.1\r\nHost: t\r\n\r\n"


def _pid_of(sock: socket.socket) -> int:
    data = b""
    while b"\r\n\r\n" not in data or not data.split(b"\r\n\r\n", 1)[1]:
        chunk = sock.recv(4096)
        assert chunk, f"connection closed early: {data!r}"
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 200"), head
    return int(body)


@pytest.mark.parametrize("workers", [2, 4])
def test_a_burst_of_keep_alive_connections_is_split_evenly(
    corral_factory: Any, workers: int
) -> None:
    c = corral_factory("sysapps:app", "-b", "127.0.0.1:0", "-w", str(workers))
    socks = [socket.create_connection((c.host, c.port), timeout=10) for _ in range(CONNECTIONS)]
    try:
        for sock in socks:
            sock.sendall(REQUEST)
        held = Counter(_pid_of(sock) for sock in socks)
    finally:
        for sock in socks:
            sock.close()
    # Fair is CONNECTIONS / workers each. The bound is generous, since a loaded 2-core
    # machine can delay a worker's wake-up past HOLD_S: 3/4 of the burst on 2 workers, twice
    # the fair share on 4, and every worker holds some (before the fix the first worker in
    # the listener's queue took the whole burst, on 2 workers and on 4).
    assert len(held) == workers, held
    assert max(held.values()) <= (
        CONNECTIONS * 3 // 4 if workers == 2 else 2 * CONNECTIONS // workers
    ), held
