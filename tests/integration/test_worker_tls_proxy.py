"""The worker loop with TLS and PROXY protocol headers, on real sockets: the handshake bounded
by the header timeout, large bodies both ways through non-blocking TLS (inline and on app
threads), a PROXY header sent byte by byte, and a PROXY v2 header in front of a TLS handshake."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import socket
import ssl
import struct
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import trustme

from corral.http.forwarded import TrustedProxies
from corral.http.proxyproto import V2_SIGNATURE, ProxyMode
from corral.tlsconfig import CertReqs, build_context
from corral.worker import WorkerSettings
from tests.worker_defaults import production_worker_settings

from .conftest import Server, StartServer

pytestmark = [pytest.mark.slow, pytest.mark.timeout(60)]

BIG = bytes(range(256)) * (16 * 1024)  # 4 MiB


def app(environ: dict[str, Any], start_response: Any) -> Any:
    path = environ["PATH_INFO"]
    if path == "/big":
        start_response("200 OK", [("Content-Length", str(len(BIG)))])
        return (BIG[i : i + 100_000] for i in range(0, len(BIG), 100_000))
    if path == "/write":
        write = start_response("200 OK", [("Content-Length", str(len(BIG)))])
        write(BIG)
        return []
    body = environ["wsgi.input"].read()
    seen = {
        "remote": [environ["REMOTE_ADDR"], environ["REMOTE_PORT"]],
        "scheme": environ["wsgi.url_scheme"],
        "sha": hashlib.sha256(body).hexdigest(),
        "file_wrapper": "wsgi.file_wrapper" in environ,
    }
    data = json.dumps(seen).encode()
    start_response("200 OK", [("Content-Length", str(len(data)))])
    return [data]


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[trustme.CA, Path]]:
    authority = trustme.CA()
    d = tmp_path_factory.mktemp("certs")
    leaf = authority.issue_cert("localhost", "127.0.0.1")
    leaf.private_key_and_cert_chain_pem.write_to_path(str(d / "server.pem"))
    yield authority, d


def _tls_settings(ca_dir: Path, **changes: Any) -> WorkerSettings:
    cfg = SimpleNamespace(
        certfile=str(ca_dir / "server.pem"),
        keyfile="",
        ca_certs="",
        cert_reqs=CertReqs.NONE,
        ciphers="",
        ssl_min_version="TLSv1_2",
    )
    return production_worker_settings(tls=build_context(cfg), **changes)


def _client_ctx(authority: trustme.CA) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    authority.configure_trust(ctx)
    return ctx


def _request(sock: Any, path: str, body: bytes = b"") -> bytes:
    head = f"POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: {len(body)}\r\n\r\n"
    sock.sendall(head.encode() + body)
    data = b""
    while b"\r\n\r\n" not in data:
        data += _recv(sock)
    head_bytes, _, rest = data.partition(b"\r\n\r\n")
    length = int(head_bytes.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
    while len(rest) < length:
        rest += _recv(sock)
    assert head_bytes.startswith(b"HTTP/1.1 200"), head_bytes
    return rest


def _recv(sock: Any) -> bytes:
    chunk = sock.recv(16384)
    assert chunk, "the server closed the connection"
    return bytes(chunk)


@pytest.mark.parametrize("threads", [1, 4], ids=["inline", "threads4"])
def test_tls_big_bodies_both_ways_on_one_connection(
    start_server: StartServer, ca: tuple[trustme.CA, Path], threads: int
) -> None:
    authority, ca_dir = ca
    server = start_server(app, _tls_settings(ca_dir, threads=threads))
    upload = bytes(reversed(BIG))[: 3 * 1024 * 1024]
    with (
        socket.create_connection(("127.0.0.1", server.port), timeout=20) as raw,
        _client_ctx(authority).wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        seen = json.loads(_request(tls, "/echo", upload))
        assert seen["sha"] == hashlib.sha256(upload).hexdigest()
        assert seen["scheme"] == "https" and seen["file_wrapper"]
        assert _request(tls, "/big") == BIG  # iterated: the app's pieces through SSL_write
        assert _request(tls, "/write") == BIG  # write(): the blocking path
        assert json.loads(_request(tls, "/echo"))["sha"] == hashlib.sha256(b"").hexdigest()


@pytest.mark.parametrize("sent", [b"", b"\x16\x03"], ids=["silent", "partial-hello"])
def test_tls_handshake_is_bounded_by_the_header_timeout(
    start_server: StartServer, ca: tuple[trustme.CA, Path], sent: bytes
) -> None:
    _, ca_dir = ca
    server = start_server(app, _tls_settings(ca_dir, header_timeout_s=0.5))
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(sent)
        started = time.monotonic()
        try:
            assert s.recv(1024) == b""
        except ConnectionResetError:
            pass
        assert time.monotonic() - started < 5.0  # 0.5 s, plus the loop's 1 s sweep


def _proxy_settings(mode: ProxyMode, **changes: Any) -> WorkerSettings:
    return production_worker_settings(
        proxy_protocol=mode, proxy_allow=TrustedProxies(["127.0.0.1"]), **changes
    )


def test_proxy_v1_header_byte_by_byte(start_server: StartServer) -> None:
    server = start_server(app, _proxy_settings(ProxyMode.V1))
    header = b"PROXY TCP4 198.51.100.7 127.0.0.1 40001 80\r\n"
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i in range(len(header)):
            s.send(header[i : i + 1])
        first = json.loads(_request(s, "/", b"body"))
        again = json.loads(_request(s, "/"))  # the connection keeps the header's client
    assert first["remote"] == again["remote"] == ["198.51.100.7", "40001"]
    assert first["sha"] == hashlib.sha256(b"body").hexdigest()


def test_proxy_v2_header_before_a_tls_handshake(
    start_server: StartServer, ca: tuple[trustme.CA, Path]
) -> None:
    authority, ca_dir = ca
    settings = dataclasses.replace(
        _tls_settings(ca_dir),
        proxy_protocol=ProxyMode.V2,
        proxy_allow=TrustedProxies(["127.0.0.0/8"]),
    )
    server: Server = start_server(app, settings)
    addrs = socket.inet_aton("203.0.113.50") + socket.inet_aton("127.0.0.1")
    body = addrs + struct.pack("!HH", 51000, 443) + b"\x04\x00\x03abc"  # a NOOP TLV
    header = V2_SIGNATURE + b"\x21\x11" + struct.pack("!H", len(body)) + body
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as raw:
        raw.sendall(header)
        with _client_ctx(authority).wrap_socket(raw, server_hostname="localhost") as tls:
            seen = json.loads(_request(tls, "/"))
    assert seen["remote"] == ["203.0.113.50", "51000"] and seen["scheme"] == "https"
