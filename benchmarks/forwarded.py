"""What trusting a proxy costs a request: building the environ alone, plus the check the worker
loop makes for forwarding headers (none sent), and with X-Forwarded-For/-Proto resolved.

    .venv/bin/python benchmarks/forwarded.py
"""

from __future__ import annotations

import timeit
from types import SimpleNamespace
from typing import Any

from corral.http import Connection, Request
from corral.http.forwarded import ENVIRON_KEYS, TrustedProxies
from corral.worker.proxied import forwarded_environ
from corral.wsgi import build_environ, connection_environ

N = 200_000
TRUSTED = TrustedProxies(["127.0.0.1", "::1"])
BASE = connection_environ(
    server_name="127.0.0.1", server_port="8000", remote_addr="127.0.0.1", remote_port="5000"
)


CONN = SimpleNamespace(peer=("127.0.0.1", 5000), remote="127.0.0.1")


def _request(extra: bytes) -> Request:
    conn = Connection()
    conn.receive_data(b"GET /x HTTP/1.1\r\nHost: a\r\nUser-Agent: wrk\r\n" + extra + b"\r\n")
    event = conn.next_event()
    assert isinstance(event, Request)
    return event


def _as_the_loop(request: Request) -> dict[str, Any]:
    environ = build_environ(request, BASE, None)
    if not environ.keys().isdisjoint(ENVIRON_KEYS):  # worker/loop.py:_run_app
        forwarded_environ(environ, CONN, request, TRUSTED)
    return environ


def _ns(func: Any, number: int = N) -> float:
    return min(timeit.repeat(func, number=number, repeat=5)) / number * 1e9


def main() -> None:
    plain = _request(b"Accept: */*\r\n")
    proxied = _request(b"X-Forwarded-For: 203.0.113.9\r\nX-Forwarded-Proto: https\r\n")
    assert _as_the_loop(proxied)["wsgi.url_scheme"] == "https"
    alone = _ns(lambda: build_environ(plain, BASE, None))
    checked = _ns(lambda: _as_the_loop(plain))
    resolved = _ns(lambda: _as_the_loop(proxied))
    print(f"build_environ alone:                   {alone:6.0f} ns")
    print(f"+ the check, no forwarding headers:    {checked - alone:6.0f} ns")
    print(f"with X-Forwarded-For/-Proto resolved:  {resolved:6.0f} ns")


if __name__ == "__main__":
    main()
