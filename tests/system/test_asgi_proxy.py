"""The ASGI worker behind a proxy and on TLS (issues 11 and 12): the same settings and trust
rules as the WSGI worker (tests/system/test_proxy_system.py), seen in the ASGI scope --
X-Forwarded-* from a trusted address and not from another, HAProxy's PROXY v1/v2 naming the
client, a bad PROXY header closing one connection, and corral's own TLS for HTTP (keep-alive,
a large body) and WebSockets (wss).

Clients bind distinct loopback addresses (127.0.0.2-5) so "who connected" is observable."""

from __future__ import annotations

import asyncio
import http.client
import json
import socket
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from test_proxy_system import HAPROXY, Certs, _need, _read_to_close, start_haproxy

from harness import Corral, worker_pids

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]
APP = "asgiapps:scope_echo"
SPOOF = {
    "X-Forwarded-Proto": "https",
    "X-Forwarded-For": "203.0.113.9",
    "X-Forwarded-Host": "shop.example",
}


def _serve(factory: Any, app: str, *args: str, **env: str) -> Corral:
    c: Corral = factory(app, "-b", "127.0.0.1:0", "-w", "1", *args, env=env or None)
    return c


def _scope(c: Corral, source: str, headers: dict[str, str] | None = None) -> Any:
    conn = http.client.HTTPConnection(c.host, c.port, timeout=10, source_address=(source, 0))
    try:
        conn.request("GET", "/who", headers=headers or {})
        resp = conn.getresponse()
        assert resp.status == 200, resp.read()
        return json.loads(resp.read())
    finally:
        conn.close()


def _host(scope: Any) -> str:
    return str(dict(scope["headers"])["host"])


def _ws_scope(url: str, **kw: Any) -> Any:
    async def go() -> Any:
        async with websockets.connect(url, open_timeout=10, **kw) as ws:
            await ws.send("scope")
            return json.loads(await asyncio.wait_for(ws.recv(), 10))

    return asyncio.run(go())


@pytest.fixture
def certs(tmp_path: Path) -> Certs:
    return Certs(tmp_path)


def test_forwarded_headers_are_believed_from_allowed_addresses_only(corral_factory: Any) -> None:
    c = _serve(corral_factory, APP, "--forwarded-allow-ips", "127.0.0.1")
    direct = _scope(c, "127.0.0.2", SPOOF)
    assert (direct["scheme"], direct["client"][0]) == ("http", "127.0.0.2")
    assert _host(direct) == f"127.0.0.1:{c.port}"
    for _ in range(2):  # the second is the cached head: the same answer
        proxied = _scope(c, "127.0.0.1", SPOOF)
        assert (proxied["scheme"], proxied["client"][0]) == ("https", "203.0.113.9")
        assert _host(proxied) == "shop.example"
    # the connection's own client is back for a request without the headers
    assert _scope(c, "127.0.0.1")["client"][0] == "127.0.0.1"


def test_a_websocket_through_a_trusted_proxy_sees_wss_and_the_client(corral_factory: Any) -> None:
    c = _serve(corral_factory, "asgiapps:ws_echo", "--forwarded-allow-ips", "127.0.0.1")
    url = f"ws://127.0.0.1:{c.port}/"
    seen = _ws_scope(url, additional_headers=SPOOF)
    assert seen == {"scheme": "wss", "client": ["203.0.113.9", 0], "host": "shop.example"}
    untrusted = _ws_scope(url, additional_headers=SPOOF, local_addr=("127.0.0.2", 0))
    assert untrusted["scheme"] == "ws" and untrusted["client"][0] == "127.0.0.2"


def test_haproxy_proxy_protocol_v1_and_v2_name_the_client(
    tmp_path: Path, corral_factory: Any
) -> None:
    _need(HAPROXY)
    c = _serve(corral_factory, APP, "--proxy-protocol", "auto", "--access-log", "common")
    hap, v1, v2 = start_haproxy(tmp_path, c.port)
    try:
        for port in (v1, v2):
            conn = http.client.HTTPConnection("127.0.0.1", port, source_address=("127.0.0.3", 0))
            conn.request("GET", "/")
            seen = json.loads(conn.getresponse().read())
            conn.close()
            assert seen["client"][0] == "127.0.0.3", port
            assert seen["client"][1] != 0
        c.wait_log("127.0.0.3 - - [")  # the access log names the client too
        assert _scope(c, "127.0.0.1")["client"][0] == "127.0.0.1"  # auto: plain HTTP as well
    finally:
        hap.stop()


def test_a_bad_proxy_header_closes_that_connection_only(corral_factory: Any) -> None:
    c = _serve(corral_factory, APP, "--proxy-protocol", "v2")
    workers = worker_pids(c.pid)
    with socket.create_connection((c.host, c.port), timeout=10) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert _read_to_close(s) == b""
    c.wait_log("PROXY protocol from 127.0.0.1: expected a PROXY protocol v2 header")
    with socket.create_connection((c.host, c.port), timeout=10) as s:  # a header cut short
        s.sendall(b"\r\n\r\n\x00\r\nQUIT\n")
        s.shutdown(socket.SHUT_WR)
        assert _read_to_close(s) == b""
    assert _scope(c, "127.0.0.2")["client"][0] == "127.0.0.2"  # not an allowed proxy
    assert worker_pids(c.pid) == workers


def test_tls_http_keep_alive_and_wss(tmp_path: Path, certs: Certs, corral_factory: Any) -> None:
    tls = ("--certfile", str(certs.cert), "--keyfile", str(certs.key))
    c = _serve(corral_factory, "asgiapps:behaviours", *tls)
    base = f"https://localhost:{c.port}"
    body = bytes(range(256)) * 8192  # 2 MiB each way
    with httpx.Client(verify=certs.client_ctx(), timeout=20) as client:
        big = client.post(f"{base}/echo", content=body)
        assert big.status_code == 200 and big.content == body
        # an answer begun before the body was in closes after itself (the HTTP core's rule):
        # keep-alive over TLS is two small requests on one connection
        small = [client.post(f"{base}/echo", content=b"hi") for _ in range(2)]
        assert [r.content for r in small] == [b"hi", b"hi"]
        pool = client._transport._pool  # type: ignore[attr-defined]
        assert len(pool.connections) == 1 and "connection" not in small[0].headers
    pid = worker_pids(c.pid)
    with socket.create_connection((c.host, c.port), timeout=10) as s:  # plain HTTP: closed
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        _read_to_close(s)
    ws = _serve(corral_factory, "asgiapps:ws_echo", *tls)
    seen = _ws_scope(f"wss://localhost:{ws.port}/", ssl=certs.client_ctx())
    assert seen["scheme"] == "wss" and seen["client"][0] == "127.0.0.1"
    with httpx.Client(verify=certs.client_ctx(), timeout=20) as client:
        assert client.post(f"{base}/echo", content=b"again").content == b"again"
    assert worker_pids(c.pid) == pid
