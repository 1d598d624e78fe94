"""Micro-benchmark of the protocol core's hot path: ``python -m corral.http.microbench``.

Measures one keep-alive cycle of a typical ~300-byte browser GET: parse (receive_data plus
the three next_event calls), respond (head, one body piece, end) and start_next_cycle.
Numbers are best of several rounds, in microseconds; "respond" is the cycle minus the parse.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from corral.http.connection import Connection

REQUEST = (
    b"GET /articles/2026/11/some-page?ref=home&utm_source=x HTTP/1.1\r\n"
    b"Host: www.example.com\r\n"
    b"User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0\r\n"
    b"Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n"
    b"Accept-Language: en-US,en;q=0.5\r\n"
    b"Accept-Encoding: gzip, deflate, br\r\n"
    b"Connection: keep-alive\r\n\r\n"
)
HEADERS = [(b"Content-Type", b"text/html; charset=utf-8"), (b"Content-Length", b"13")]


def _parse(conn: Connection) -> None:
    conn.receive_data(REQUEST)
    conn.next_event()
    conn.next_event()
    conn.next_event()


def _respond(conn: Connection) -> None:
    conn.send_response(200, HEADERS)
    conn.send_data(b"Hello, world!")
    conn.send_eom()
    conn.start_next_cycle()


def _best(fn: Callable[[], None], n: int, rounds: int = 5) -> float:
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter() - start) / n)
    return best * 1e6


def run(n: int = 20_000) -> dict[str, float]:
    """Microseconds per parse, per response (head + body + end + next cycle), per cycle."""
    conn = Connection()

    def cycle() -> None:
        _parse(conn)
        _respond(conn)

    def fresh_parse() -> None:
        _parse(Connection())

    def construct() -> None:
        Connection()

    ctor = _best(construct, n)
    parse = _best(fresh_parse, n) - ctor
    whole = _best(cycle, n)
    return {"parse_us": parse, "respond_us": whole - parse, "cycle_us": whole}


if __name__ == "__main__":
    print(f"request: {len(REQUEST)} bytes")
    for name, value in run().items():
        print(f"{name:12s} {value:6.2f}")
