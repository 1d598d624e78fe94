"""HTTP behaviour seen by a real client of the real server (issue 16): large uploads read in
one call, extension methods, SERVER_SOFTWARE."""

from __future__ import annotations

import http.client
import socket
from typing import Any

import pytest

import corral

pytestmark = pytest.mark.slow
MIB = 1024 * 1024


def _post(host: str, port: int, path: str, body: bytes) -> tuple[int, float]:
    """POST ``body``; the upload app answers "<bytes read> <app CPU seconds>"."""
    conn = http.client.HTTPConnection(host, port, timeout=60)
    try:
        conn.request("POST", path, body=body, headers={"Content-Type": "application/octet-stream"})
        resp = conn.getresponse()
        assert resp.status == 200, resp.read()[:200]
        size, cpu = resp.read().split()
        return int(size), float(cpu)
    finally:
        conn.close()


def test_one_read_of_a_50_mib_body_costs_about_what_streaming_does(corral_factory: Any) -> None:
    """Django's ``request.body`` is one ``wsgi.input.read(CONTENT_LENGTH)``; it used to append
    each 64 KiB piece to an immutable bytes (quadratic: 20 s of CPU for 50 MiB). Bound it by
    the streaming read of the same body in the same run, in the worker's CPU time."""
    c = corral_factory("sysapps:upload_app", "-b", "127.0.0.1:0", "-w", "1")
    body = b"x" * (50 * MIB)
    _post(c.host, c.port, "/stream", body[:MIB])  # warm up the worker
    stream = min(_post(c.host, c.port, "/stream", body)[1] for _ in range(3))
    results = [_post(c.host, c.port, "/one", body) for _ in range(3)]
    assert all(size == len(body) for size, _ in results)
    one = min(cpu for _, cpu in results)
    assert one <= 3 * stream + 0.05, f"one read(n): {one:.3f}s CPU, streaming {stream:.3f}s"
    lines = (b"y" * 99 + b"\n") * 100_000 + b"z" * MIB  # and a last line of 1 MiB
    assert _post(c.host, c.port, "/lines", lines)[0] == len(lines)


def _raw(host: str, port: int, data: bytes) -> bytes:
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        out = b""
        while chunk := sock.recv(65536):
            out += chunk
        return out


@pytest.mark.parametrize("method", [b"BREW", b"X-CUSTOM", b"MKCOLA", b"DESCRIBE", b"get"])
def test_extension_methods_reach_the_app(corral_factory: Any, method: bytes) -> None:
    c = corral_factory("sysapps:method_app", "-b", "127.0.0.1:0", "-w", "1")
    req = method + b" /pot HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
    out = _raw(c.host, c.port, req)
    assert out.startswith(b"HTTP/1.1 200 "), out[:200]
    assert out.endswith(method + b" corral/" + corral.__version__.encode()), out[-100:]
