"""Behind a proxy (issue 12 point 3): a Django app behind a real nginx that terminates TLS and
sends X-Forwarded-*, the same headers from an untrusted address ignored, HAProxy's PROXY
protocol v1 and v2 naming the real client, and corral's own TLS (keep-alive, client
certificates, large bodies, a plain-HTTP client, a certificate renewed on HUP).

Clients bind distinct loopback addresses (127.0.0.2-5) so "who connected" is observable.
nginx and HAProxy are system packages (scripts/install-system-deps): missing, those tests
skip, and fail under CI."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme

from corral.launch import Launched, spawn
from harness import Corral, start_corral, wait_for, worker_pids

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

NGINX, HAPROXY, CURL = "/usr/sbin/nginx", "/usr/sbin/haproxy", "/usr/bin/curl"
APP = "proxyapp:application"


def _need(program: str) -> None:
    if not os.access(program, os.X_OK):
        if os.environ.get("CI"):
            pytest.fail(f"{program} is missing (scripts/install-system-deps installs it)")
        pytest.skip(f"{program} is not installed")


def _free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _get(host: str, port: int, *, source: str, headers: dict[str, str] | None = None) -> Any:
    """GET / from the loopback address ``source``; the app's JSON."""
    conn = http.client.HTTPConnection(host, port, timeout=10, source_address=(source, 0))
    try:
        conn.request("GET", "/", headers=headers or {})
        resp = conn.getresponse()
        assert resp.status == 200, resp.read()
        return json.loads(resp.read())
    finally:
        conn.close()


class Certs:
    """A trustme CA, a server certificate for localhost/127.0.0.1 and a client certificate."""

    def __init__(self, tmp: Path, name: str = "a") -> None:
        self.ca = trustme.CA()
        self.dir = tmp
        self.ca_pem = tmp / f"ca-{name}.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_pem))
        self.cert, self.key = tmp / f"cert-{name}.pem", tmp / f"key-{name}.pem"
        self.write_server(self.cert, self.key)
        client = self.ca.issue_cert("client@example.com")
        self.client = tmp / f"client-{name}.pem"
        client.private_key_and_cert_chain_pem.write_to_path(str(self.client))

    def write_server(self, cert: Path, key: Path) -> None:
        leaf = self.ca.issue_cert("localhost", "127.0.0.1")
        leaf.private_key_pem.write_to_path(str(key))
        cert.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))

    def client_ctx(self, with_cert: bool = False) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.ca_pem))
        if with_cert:
            ctx.load_cert_chain(str(self.client))
        return ctx


@pytest.fixture
def certs(tmp_path: Path) -> Certs:
    return Certs(tmp_path)


@pytest.fixture
def started(tmp_path: Path) -> Iterator[list[Corral | Launched]]:
    procs: list[Corral | Launched] = []
    yield procs
    for proc in reversed(procs):
        proc.stop()


def _corral(tmp: Path, procs: list[Corral | Launched], *args: str, **env: str) -> Corral:
    corral = start_corral(tmp, APP, "-w", "1", *args, env=env or None)
    procs.append(corral)
    return corral


# ---------------------------------------------------------------- forwarded headers


DOC = Path(__file__).parents[2] / "docs" / "deploy.md"


def _doc_block(lang: str) -> str:
    """The one ```lang block of docs/deploy.md: the tests run the configs the page shows."""
    blocks = re.findall(rf"```{lang}\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
    assert len(blocks) == 1, f"one ```{lang} block in {DOC}"
    return str(blocks[0])


def _replace(text: str, old: str, new: str) -> str:
    assert old in text, f"{old!r} in the documented config"
    return text.replace(old, new)


def _nginx(tmp: Path, procs: list[Corral | Launched], site: str) -> None:
    prefix = tmp / "nginx"
    prefix.mkdir()
    temps = "\n".join(
        f"    {kind}_temp_path {prefix}/{kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    conf = prefix / "nginx.conf"
    conf.write_text(
        f"daemon off;\nworker_processes 1;\npid {prefix}/nginx.pid;\n"
        f"error_log {prefix}/error.log info;\nevents {{ worker_connections 64; }}\n"
        f"http {{\n    access_log {prefix}/access.log;\n{temps}\n{site}\n}}\n"
    )
    base = [NGINX, "-p", str(prefix), "-c", str(conf)]
    check = subprocess.run([*base, "-t"], capture_output=True)
    assert check.returncode == 0, check.stderr.decode()
    procs.append(spawn(base, log_path=prefix / "stderr.log", ready_pipe=False))


def _read_to_close(s: socket.socket) -> bytes:
    """Everything the server sends until it closes (a reset counts as closing); a server that
    neither answers nor closes fails the test by the socket's timeout."""
    got = b""
    try:
        while chunk := s.recv(4096):
            got += chunk
    except ConnectionResetError:
        pass
    return got


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def test_behind_nginx_django_sees_https_and_the_client(
    tmp_path: Path, certs: Certs, started: list[Corral | Launched]
) -> None:
    _need(NGINX)
    corral = _corral(tmp_path, started, "-b", "127.0.0.1:0", "--access-log", "common")
    port = _free_port()
    site = _replace(_doc_block("nginx"), "listen 443 ssl;", f"listen 127.0.0.1:{port} ssl;")
    site = _replace(site, "/etc/ssl/shop.example.pem", str(certs.cert))
    site = _replace(site, "/etc/ssl/shop.example.key", str(certs.key))
    site = _replace(site, "127.0.0.1:8000", f"127.0.0.1:{corral.port}")
    _nginx(tmp_path, started, site)
    wait_for(lambda: _listening(port), 20)
    transport = httpx.HTTPTransport(verify=certs.client_ctx(), local_address="127.0.0.5")
    with httpx.Client(transport=transport, timeout=10) as client:
        seen = client.get(f"https://localhost:{port}/").json()
    assert seen["secure"] is True
    assert seen["url"] == f"https://localhost:{port}/x"
    assert seen["remote"] == "127.0.0.5"  # X-Forwarded-For: the client nginx saw
    assert seen["server"] == ["localhost", str(port)]
    corral.wait_log("127.0.0.5 - - [")  # the access log names the client too


def test_forwarded_headers_from_an_untrusted_address_are_ignored(
    tmp_path: Path, started: list[Corral | Launched]
) -> None:
    corral = _corral(tmp_path, started, "-b", "127.0.0.1:0", "--forwarded-allow-ips", "127.0.0.1")
    spoof = {
        "X-Forwarded-Proto": "https",
        "X-Forwarded-For": "203.0.113.9",
        "X-Forwarded-Host": "evil.example",
        "Forwarded": "for=203.0.113.9;proto=https",
    }
    direct = _get(corral.host, corral.port, source="127.0.0.2", headers=spoof)
    assert (direct["secure"], direct["remote"], direct["host"]) == (
        False,
        "127.0.0.2",
        f"127.0.0.1:{corral.port}",
    )
    # the same request from the allowed address is believed: the test can tell the two apart
    trusted = _get(corral.host, corral.port, source="127.0.0.1", headers=spoof)
    assert (trusted["secure"], trusted["remote"], trusted["host"]) == (
        True,
        "203.0.113.9",
        "evil.example",
    )
    wildcard = _corral(tmp_path, started, "-b", "127.0.0.1:0", "--forwarded-allow-ips", "*")
    assert _get(wildcard.host, wildcard.port, source="127.0.0.2", headers=spoof)["secure"]


# ---------------------------------------------------------------- PROXY protocol


HAPROXY_GLOBAL = """
global
    maxconn 64
defaults
    timeout connect 5s
    timeout client 30s
    timeout server 30s
"""


def _haproxy_cfg(upstream: int, v1: int, v2: int) -> str:
    """The documented frontend/backend twice: as written (send-proxy-v2), and with v1."""
    doc = _replace(_doc_block("haproxy"), "127.0.0.1:8000", f"127.0.0.1:{upstream}")
    second = _replace(doc, "send-proxy-v2", "send-proxy").replace("web_in", "web_in_v1")
    second = second.replace("corral", "corral_v1")
    return (
        HAPROXY_GLOBAL
        + _replace(doc, "bind :80", f"bind 127.0.0.1:{v2}")
        + _replace(second, "bind :80", f"bind 127.0.0.1:{v1}")
    )


def start_haproxy(tmp: Path, upstream: int) -> tuple[Launched, int, int]:
    """HAProxy with the documented config in front of ``upstream``, listening (send-proxy on
    the first port, send-proxy-v2 on the second); the caller stops it."""
    v1, v2 = _free_port(), _free_port()
    cfg = tmp / "haproxy.cfg"
    cfg.write_text(_haproxy_cfg(upstream, v1, v2))
    check = subprocess.run([HAPROXY, "-c", "-f", str(cfg)], capture_output=True)
    assert check.returncode == 0, check.stderr.decode()
    hap = spawn([HAPROXY, "-db", "-f", str(cfg)], log_path=tmp / "hap.log", ready_pipe=False)
    try:
        wait_for(lambda: _listening(v1) and _listening(v2), 20)
    except BaseException:
        hap.stop()
        raise
    return hap, v1, v2


def test_haproxy_proxy_protocol_v1_and_v2_give_the_real_client(
    tmp_path: Path, started: list[Corral | Launched]
) -> None:
    _need(HAPROXY)
    corral = _corral(tmp_path, started, "-b", "127.0.0.1:0", "--proxy-protocol", "auto")
    hap, v1, v2 = start_haproxy(tmp_path, corral.port)
    started.append(hap)
    for port in (v1, v2):
        seen = _get("127.0.0.1", port, source="127.0.0.3")
        assert seen["remote"] == "127.0.0.3", port
        assert seen["remote_port"] != "0"
    # auto: an allowed peer may also speak plain HTTP
    assert _get(corral.host, corral.port, source="127.0.0.1")["remote"] == "127.0.0.1"


def test_a_bad_proxy_header_closes_the_connection_not_the_worker(
    tmp_path: Path, started: list[Corral | Launched]
) -> None:
    corral = _corral(tmp_path, started, "-b", "127.0.0.1:0", "--proxy-protocol", "v2")
    workers = worker_pids(corral.pid)
    with socket.create_connection((corral.host, corral.port), timeout=10) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")  # no header from an allowed peer
        assert _read_to_close(s) == b""  # closed unanswered: it is not a proxy we know
    corral.wait_log("PROXY protocol from 127.0.0.1: expected a PROXY protocol v2 header")
    v1 = b"PROXY TCP4 198.51.100.7 127.0.0.1 5555 80\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n"
    with socket.create_connection((corral.host, corral.port), timeout=10) as s:
        s.sendall(v1)  # the other version
        assert _read_to_close(s) == b""
    # a peer outside proxy_allow_ips speaks plain HTTP, its PROXY line is no header
    assert _get(corral.host, corral.port, source="127.0.0.2")["remote"] == "127.0.0.2"
    assert worker_pids(corral.pid) == workers


# ---------------------------------------------------------------- TLS


def _tls(tmp: Path, procs: list[Corral | Launched], certs: Certs, *args: str) -> Corral:
    blob = tmp / "blob.bin"
    blob.write_bytes(os.urandom(5 * 1024 * 1024 + 3))
    tls_args = ("--certfile", str(certs.cert), "--keyfile", str(certs.key), *args)
    return _corral(tmp, procs, "-b", "127.0.0.1:0", *tls_args, PROXYAPP_FILE=str(blob))


def test_tls_keep_alive_large_bodies_and_a_plain_http_client(
    tmp_path: Path, certs: Certs, started: list[Corral | Launched]
) -> None:
    corral = _tls(tmp_path, started, certs)
    base = f"https://localhost:{corral.port}"
    with httpx.Client(verify=certs.client_ctx(), timeout=20) as client:
        first = client.get(base + "/").json()
        second = client.get(base + "/").json()
        assert first["secure"] and first["url"] == f"{base}/x"
        assert first["remote_port"] == second["remote_port"]  # the same connection, kept alive
        big = client.get(base + "/big")
        assert hashlib.sha256(big.content).hexdigest() == first["big_sha"]
        blob = client.get(base + "/file")  # wsgi.file_wrapper: read + send, never sendfile
        assert blob.content == (tmp_path / "blob.bin").read_bytes()
        pid = first["pid"]
    # a plain-HTTP client is told so and closed; the worker serves on
    with socket.create_connection((corral.host, corral.port), timeout=10) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = _read_to_close(s)
    assert answer.startswith(b"HTTP/1.1 400 ") and b"HTTPS" in answer
    # a client that sends a broken handshake gets an alert and a close, never a hang
    with socket.create_connection((corral.host, corral.port), timeout=10) as s:
        s.sendall(b"\x16\x03\x01\x00\x05garbage")
        _read_to_close(s)
    with httpx.Client(verify=certs.client_ctx(), timeout=20) as client:
        assert client.get(base + "/").json()["pid"] == pid
    if os.access(CURL, os.X_OK):
        out = subprocess.run(
            [CURL, "-sSv", "--cacert", str(certs.ca_pem), f"{base}/", f"{base}/"],
            capture_output=True,
            timeout=30,
        )
        assert out.returncode == 0, out.stderr.decode()
        assert b"Re-using existing connection" in out.stderr  # keep-alive over TLS
        assert out.stdout.count(b'"secure": true') == 2


def test_client_certificates_required(
    tmp_path: Path, certs: Certs, started: list[Corral | Launched]
) -> None:
    corral = _tls(tmp_path, started, certs, "--ca-certs", str(certs.ca_pem), "--cert-reqs", "2")
    base = f"https://localhost:{corral.port}/"
    with httpx.Client(verify=certs.client_ctx(with_cert=True), timeout=10) as client:
        assert client.get(base).json()["secure"] is True
    with (
        httpx.Client(verify=certs.client_ctx(), timeout=10) as client,
        pytest.raises((httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError)),
    ):
        client.get(base)
    with httpx.Client(verify=certs.client_ctx(with_cert=True), timeout=10) as client:
        assert client.get(base).status_code == 200  # the refusal cost one connection only


def test_certificate_renewed_on_hup(
    tmp_path: Path, certs: Certs, started: list[Corral | Launched]
) -> None:
    corral = _tls(tmp_path, started, certs)
    base = f"https://localhost:{corral.port}/"
    renewed = Certs(tmp_path, "b")  # another CA: only the new certificate verifies with it
    with pytest.raises(httpx.ConnectError):
        httpx.get(base, verify=renewed.client_ctx(), timeout=10)
    renewed.write_server(certs.cert, certs.key)  # the files in place, as certbot does
    corral.signal(signal.SIGHUP)
    corral.wait_log("reload complete")
    assert httpx.get(base, verify=renewed.client_ctx(), timeout=10).json()["secure"] is True


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--certfile", "/nonexistent.pem"), "cannot read certfile /nonexistent.pem"),
        (("--keyfile", "KEY"), "without certfile"),
        (("--certfile", "CERT", "--keyfile", "OTHERKEY"), "the key does not match"),
        (("--certfile", "CERT"), "is the key missing?"),
        (("--certfile", "CERT", "--keyfile", "KEY", "--cert-reqs", "required"), "needs ca_certs"),
        (("--certfile", "CERT", "--keyfile", "KEY", "--ciphers", "NOPE"), "ciphers 'NOPE'"),
        (("--ssl-min-version", "TLSv9"), "ssl_min_version"),
        (("--forwarded-allow-ips", "10.0.0.0/33"), "not an IP address or network"),
    ],
)
def test_bad_tls_and_proxy_settings_are_one_line_errors(
    tmp_path: Path, certs: Certs, args: tuple[str, ...], message: str
) -> None:
    other = Certs(tmp_path, "other")
    subst = {"CERT": str(certs.cert), "KEY": str(certs.key), "OTHERKEY": str(other.key)}
    argv = [subst.get(a, a) for a in args]
    cmd = [sys.executable, "-m", "corral", "serve", "-b", "127.0.0.1:0", *argv]
    out = subprocess.run(cmd, capture_output=True, timeout=60, cwd=tmp_path)
    assert out.returncode != 0
    err = out.stderr.decode()
    assert message in err and "Traceback" not in err, err
    assert len(err.strip().splitlines()) == 1, err
