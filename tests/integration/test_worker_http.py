"""The worker speaking HTTP/1.1 to real clients over real sockets."""

from __future__ import annotations

import dataclasses
import http.client
import json
import os
import socket
import subprocess
from pathlib import Path
from typing import Any

import pytest

from corral.worker import WorkerSettings
from tests.worker_defaults import production_worker_settings

from .apps import BIG_BLOCKS, make_app
from .conftest import Server, StartServer
from .httpraw import read_response

pytestmark = [pytest.mark.slow, pytest.mark.timeout(60)]


@pytest.fixture(params=[1, 4], ids=["inline", "threads4"])
def start_server(start_server: StartServer, request: pytest.FixtureRequest) -> StartServer:
    """Every test here runs twice: app in the loop thread, and in a pool of 4 threads."""

    def start(app: Any, settings: WorkerSettings | None = None, **kw: Any) -> Server:
        settings = dataclasses.replace(
            settings or production_worker_settings(), threads=request.param
        )
        return start_server(app, settings, **kw)

    return start


CURL = "/usr/bin/curl"


def client(port: int) -> http.client.HTTPConnection:
    return http.client.HTTPConnection("127.0.0.1", port, timeout=10)


def get(port: int, path: str, method: str = "GET") -> tuple[int, bytes, dict[str, str]]:
    conn = client(port)
    try:
        conn.request(method, path)
        resp = conn.getresponse()
        return resp.status, resp.read(), {k.lower(): v for k, v in resp.getheaders()}
    finally:
        conn.close()


def test_hello_and_keep_alive(start_server: StartServer) -> None:
    server = start_server(make_app())
    conn = client(server.port)
    ports = set()
    for _ in range(3):
        conn.request("GET", "/")
        resp = conn.getresponse()
        assert (resp.status, resp.read()) == (200, b"Hello, world!")
        assert resp.getheader("Connection") is None
        assert conn.sock is not None
        ports.add(conn.sock.getsockname()[1])
    assert len(ports) == 1  # every request went over the same connection
    conn.close()


def test_pipelined_requests_answered_in_order(start_server: StartServer) -> None:
    server = start_server(make_app())
    with server.connect() as sock:
        sock.sendall(
            b"GET /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\none"
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
            b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nthree"
        )
        f = sock.makefile("rb")
        bodies = [read_response(f).body for _ in range(3)]
    assert bodies == [b"one", b"Hello, world!", b"three"]


def test_environ_seen_by_app(start_server: StartServer) -> None:
    server = start_server(make_app())
    status, body, _ = get(server.port, "/environ?a=b")
    env = json.loads(body)
    assert status == 200
    assert env["QUERY_STRING"] == "a=b"
    assert env["REMOTE_ADDR"] == "127.0.0.1"
    assert env["SERVER_PORT"] == str(server.port)
    assert env["SERVER_PROTOCOL"] == "HTTP/1.1"


def test_chunked_upload(start_server: StartServer) -> None:
    server = start_server(make_app())
    conn = client(server.port)
    pieces = [b"a" * 1000, b"b" * 70_000, b"c"]
    conn.request("POST", "/echo", body=iter(pieces), encode_chunked=True)
    resp = conn.getresponse()
    assert resp.status == 200
    assert resp.read() == b"".join(pieces)
    conn.close()


def test_chunked_download(start_server: StartServer) -> None:
    server = start_server(make_app())
    status, body, headers = get(server.port, "/chunks")
    assert status == 200
    assert headers["transfer-encoding"] == "chunked"
    assert body == b"chunk0;chunk1;chunk2;"


def test_large_body_streams_and_readline(start_server: StartServer) -> None:
    server = start_server(make_app())
    body = b"line\n" * 50_000  # 250 kB: above the in-loop buffer, read by wsgi.input
    conn = client(server.port)
    conn.request("POST", "/lines", body=body)
    resp = conn.getresponse()
    assert (resp.status, resp.read()) == (200, b"50000")
    conn.close()


def test_curl_sends_100_continue(start_server: StartServer, tmp_path: Path) -> None:
    server = start_server(make_app())
    payload = tmp_path / "payload.bin"
    payload.write_bytes(os.urandom(300_000))
    out = subprocess.run(
        [
            CURL,
            "-sS",
            "-v",
            "--max-time",
            "20",
            "-H",
            "Expect: 100-continue",
            "--data-binary",
            f"@{payload}",
            f"http://127.0.0.1:{server.port}/echo",
        ],
        capture_output=True,
        timeout=30,
        check=True,
    )
    assert out.stdout == payload.read_bytes()
    assert b"100 Continue" in out.stderr


def test_raw_100_continue(start_server: StartServer) -> None:
    server = start_server(make_app())
    with server.connect() as sock:
        sock.sendall(
            b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"
        )
        f = sock.makefile("rb")
        assert f.readline() == b"HTTP/1.1 100 Continue\r\n"
        assert f.readline() == b"\r\n"
        sock.sendall(b"hello")
        resp = read_response(f)
    assert (resp.status, resp.body) == (200, b"hello")


def test_unread_100_continue_body_closes(start_server: StartServer) -> None:
    server = start_server(make_app())
    with server.connect() as sock:
        # The app never reads the body, so no 100 goes out and the client keeps its body;
        # whatever it sends next could be body or a new request: the server must close.
        sock.sendall(
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"
        )
        f = sock.makefile("rb")
        resp = read_response(f)
        assert (resp.status, resp.body) == (200, b"Hello, world!")
        assert resp.headers["connection"] == "close"
        assert f.read() == b""


@pytest.mark.parametrize("mode", ["", "cl"])
@pytest.mark.parametrize("validate", [False, True])
def test_file_wrapper_real_file(
    start_server: StartServer, tmp_path: Path, mode: str, validate: bool
) -> None:
    server = start_server(make_app(validate=validate))
    data = os.urandom(3_000_000)
    path = tmp_path / "big.bin"
    path.write_bytes(data)
    conn = client(server.port)
    conn.request("GET", f"/file?{path}", headers={"X-Mode": mode})
    resp = conn.getresponse()
    assert resp.status == 200
    if not validate:
        # Served by os.sendfile: the worker knows the file's size and says so.
        assert resp.getheader("Content-Length") == str(len(data))
    elif not mode:
        # Under the validator the wrapper is hidden, so it is iterated and sent chunked.
        assert resp.getheader("Transfer-Encoding") == "chunked"
    assert resp.read() == data
    conn.request("GET", "/")  # the connection is still usable afterwards
    assert conn.getresponse().read() == b"Hello, world!"
    conn.close()


def test_file_wrapper_without_fileno_is_iterated(start_server: StartServer) -> None:
    server = start_server(make_app())
    status, body, _ = get(server.port, "/bytesio")
    assert (status, body) == (200, b"x" * 100_000)


def test_slow_reader_does_not_block_others(start_server: StartServer) -> None:
    server = start_server(make_app())
    with server.connect() as slow:
        slow.sendall(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
        # The slow client reads nothing yet; another client must still be served.
        assert get(server.port, "/")[:2] == (200, b"Hello, world!")
        resp = read_response(slow.makefile("rb"))
    assert resp.complete and len(resp.body) == BIG_BLOCKS * 65536


def test_head(start_server: StartServer) -> None:
    server = start_server(make_app())
    with server.connect() as sock:
        sock.sendall(b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n")
        f = sock.makefile("rb")
        head = read_response(f, head_request=True)
        after = read_response(f)
    assert head.status == 200 and head.headers["content-length"] == "13"
    assert after.body == b"Hello, world!"  # no stray HEAD body before it


def test_http10(start_server: StartServer) -> None:
    server = start_server(make_app())
    with server.connect() as sock:
        sock.sendall(b"GET /chunks HTTP/1.0\r\n\r\n")
        data = b"".join(iter(lambda: sock.recv(65536), b""))  # closes after the body
    assert data.startswith(b"HTTP/1.1 200 ")
    assert b"transfer-encoding" not in data.lower()
    assert data.endswith(b"\r\n\r\nchunk0;chunk1;chunk2;")


def test_write_callable(start_server: StartServer) -> None:
    server = start_server(make_app())
    assert get(server.port, "/write")[:2] == (200, b"written;returned")


def test_app_exception_before_start_is_500(start_server: StartServer) -> None:
    server = start_server(make_app())
    status, _, headers = get(server.port, "/boom")
    assert status == 500
    assert headers["connection"] == "close"
    assert get(server.port, "/")[0] == 200  # still serving
    log = server.log()
    assert "corral.error" in log and "failure before the response started" in log
    assert "Traceback" in log


def test_app_exception_after_start_closes(start_server: StartServer) -> None:
    server = start_server(make_app())
    with server.connect() as sock:
        sock.sendall(b"GET /late-boom HTTP/1.1\r\nHost: x\r\n\r\n")
        resp = read_response(sock.makefile("rb"))
    assert resp.status == 200
    assert not resp.complete  # the chunked body never got its terminator
    assert resp.body == b"first;"
    assert get(server.port, "/")[0] == 200
    assert "failure after the response started" in server.log()


@pytest.mark.parametrize("path", ["/bad-header", "/bad-status", "/str-body", "/too-long"])
def test_invalid_response_from_app_is_500(start_server: StartServer, path: str) -> None:
    server = start_server(make_app())
    assert get(server.port, path)[0] == 500
    assert get(server.port, "/")[0] == 200
    assert "corral.error" in server.log()


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"GARBAGE\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\n\r\n", 400),  # HTTP/1.1 without Host
        (b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: zz\r\n\r\n", 400),
        (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
    ],
)
def test_bad_requests_get_their_status(start_server: StartServer, raw: bytes, status: int) -> None:
    server = start_server(make_app())
    with server.connect() as sock:
        sock.sendall(raw)
        resp = read_response(sock.makefile("rb"))
        assert sock.recv(100) == b""  # closed after the error
    assert resp.status == status
    assert resp.headers["connection"] == "close"
    assert get(server.port, "/")[0] == 200


@pytest.mark.parametrize("declared", [100, 200_000])  # in-loop buffered, and streamed
def test_truncated_body_is_never_complete(
    start_server: StartServer, tmp_path: Path, declared: int
) -> None:
    record = tmp_path / "record.txt"
    server = start_server(make_app(record=record))
    with server.connect() as sock:
        sock.sendall(b"POST /record HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % declared)
        sock.sendall(b"z" * 10)
        sock.shutdown(socket.SHUT_WR)
        assert b"".join(iter(lambda: sock.recv(65536), b"")) is not None  # until closed
    assert get(server.port, "/")[0] == 200  # the worker is alive and done with the request
    seen = record.read_text() if record.exists() else ""
    assert "ok" not in seen  # never handed over as a complete body
    if declared > 65536:
        assert seen == "error BodyError\n"  # the streaming app saw the truncation


def test_unix_socket(start_server: StartServer) -> None:
    server = start_server(make_app(), unix=True)
    with server.connect() as sock:
        sock.sendall(b"GET /environ HTTP/1.1\r\nHost: localhost\r\n\r\n")
        resp = read_response(sock.makefile("rb"))
    env = json.loads(resp.body)
    assert resp.status == 200
    assert env["REMOTE_ADDR"] == "unix"


def test_access_log_combined(start_server: StartServer) -> None:
    server = start_server(make_app(), production_worker_settings(access_log="combined"))
    with server.connect() as sock:
        sock.sendall(
            b"GET /?q=1 HTTP/1.1\r\nHost: x\r\nReferer: http://r/\r\n"
            b'User-Agent: evil" agent\xff\r\nConnection: close\r\n\r\n'
        )
        assert read_response(sock.makefile("rb")).status == 200
    server.stop()
    lines = [ln for ln in server.log().splitlines() if ln.startswith("corral.access")]
    assert len(lines) == 1
    assert '"GET /?q=1 HTTP/1.1" 200 ' in lines[0]
    assert lines[0].endswith('"http://r/" "evil\\x22 agent\\xff"')


def test_access_log_records_bad_requests(start_server: StartServer) -> None:
    server = start_server(make_app(), production_worker_settings(access_log="common"))
    with server.connect() as sock:
        sock.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        assert read_response(sock.makefile("rb")).status == 400
    assert get(server.port, "/")[0] == 200
    server.stop()
    lines = [ln for ln in server.log().splitlines() if ln.startswith("corral.access")]
    assert len(lines) == 2
    assert lines[0].endswith('"-" 400 -')
    assert lines[1].endswith('"GET / HTTP/1.1" 200 ' + lines[1].rsplit(" ", 1)[1])
