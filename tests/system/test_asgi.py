"""The ASGI worker seen by real clients (issue 11): detection, the spec's HTTP scope, lifespan
after fork, bodies both ways with backpressure, errors, disconnects, pipelining, the stuck-loop
timeout, WebSockets, and a graceful stop."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from websockets.exceptions import ConnectionClosed, InvalidStatus

from harness import Corral, wait_for, worker_pids

pytestmark = pytest.mark.slow
MIB = 1024 * 1024


def _serve(factory: Any, app: str, *args: str, **kw: Any) -> Corral:
    return factory(app, "-b", "127.0.0.1:0", "-w", "1", *args, **kw)  # type: ignore[no-any-return]


def _raw(c: Corral, data: bytes, shut: bool = True, timeout: float = 10.0) -> bytes:
    with socket.create_connection((c.host, c.port), timeout=timeout) as sock:
        sock.sendall(data)
        if shut:
            sock.shutdown(socket.SHUT_WR)
        out = b""
        try:
            while chunk := sock.recv(65536):
                out += chunk
        except ConnectionResetError:
            pass
        return out


# ----------------------------------------------------------------- detection and the scope


def test_an_asgi_app_is_detected_and_served_with_no_flag(corral_factory: Any) -> None:
    c = _serve(corral_factory, "asgiapps:hello")
    r = httpx.get(f"{c.url}/abc")
    assert r.status_code == 200
    assert r.json() == {"hello": "world", "path": "/abc"}
    assert r.headers["content-length"] == str(len(r.content))  # one body message: a length


def test_an_asgi2_class_is_wrapped(corral_factory: Any) -> None:
    c = _serve(corral_factory, "asgiapps:Asgi2")
    assert httpx.get(c.url).text == "asgi2"


def test_interface_wsgi_overrides_detection(corral_factory: Any) -> None:
    """Called as WSGI, an async function returns a coroutine, not an iterable: a 500."""
    c = _serve(corral_factory, "asgiapps:hello", "--interface", "wsgi")
    assert httpx.get(c.url).status_code == 500


def test_the_http_scope_is_the_specs(corral_factory: Any) -> None:
    c = _serve(corral_factory, "asgiapps:scope_echo", "--root-path", "/api")
    with httpx.Client() as client:
        r = client.get(
            f"{c.url}/caf%C3%A9/a%20b?x=1&y=%20",
            headers={"X-Mixed-Case": "Value", "Cookie": "a=1"},
        )
        scope = r.json()
        assert scope["type"] == "http"
        assert scope["asgi"] == {"version": "3.0", "spec_version": "2.4"}
        assert scope["http_version"] == "1.1"
        assert scope["method"] == "GET"
        assert scope["scheme"] == "http"
        assert scope["path"] == "/café/a b"
        assert scope["raw_path"] == "/caf%C3%A9/a%20b"
        assert scope["query_string"] == "x=1&y=%20"
        assert scope["root_path"] == "/api"
        headers = scope["headers"]
        assert ["x-mixed-case", "Value"] in headers  # names lower-cased, values as sent
        assert ["host", f"{c.host}:{c.port}"] in headers
        assert scope["client"][0] == "127.0.0.1" and isinstance(scope["client"][1], int)
        assert scope["server"] == [c.host, c.port]
        assert scope["state"]["started_in"] == scope["pid"]  # lifespan ran in this worker
        assert "http.response.pathsend" in scope["extensions"]
        # keep-alive: the same connection serves the next request
        assert client.get(f"{c.url}/again").json()["path"] == "/again"


def test_lifespan_starts_in_each_worker_after_fork_and_shuts_down_on_stop(
    corral_factory: Any, tmp_path: Path
) -> None:
    done = tmp_path / "shutdown.txt"
    c = corral_factory(
        "asgiapps:scope_echo",
        "-b",
        "127.0.0.1:0",
        "-w",
        "2",
        env={"ASGI_SHUTDOWN_FILE": str(done)},
    )
    workers = worker_pids(c.pid)
    seen = set()
    for _ in range(40):
        scope = httpx.get(c.url, headers={"Connection": "close"}).json()
        assert scope["state"]["started_in"] == scope["pid"]
        seen.add(scope["pid"])
    assert seen <= set(workers) and len(workers) == 2
    c.signal(signal.SIGTERM)
    assert c.wait(30) == 0
    assert sorted(int(p) for p in done.read_text().split()) == sorted(workers)


def test_a_failing_lifespan_startup_is_a_boot_failure(corral_factory: Any) -> None:
    c = corral_factory(
        "asgiapps:hello", "-b", "127.0.0.1:0", "--lifespan", "on", "--boot-timeout-s", "20",
        ready=False,
    )  # fmt: skip
    code = c.wait(60)
    assert code != 0
    assert "does not support lifespan" in c.log()


# ----------------------------------------------------------------- bodies


def test_a_1_mib_body_is_echoed_in_pieces(corral_factory: Any) -> None:
    c = _serve(corral_factory, "asgiapps:behaviours")
    body = os.urandom(MIB)
    r = httpx.post(f"{c.url}/echo", content=body)
    assert r.status_code == 200 and r.content == body
    r = httpx.post(f"{c.url}/echo", content=iter([body[:1000], body[1000:]]))  # chunked
    assert r.content == body


def test_expect_100_continue_is_answered_when_the_app_reads(corral_factory: Any) -> None:
    c = _serve(corral_factory, "asgiapps:behaviours")
    with socket.create_connection((c.host, c.port), timeout=10) as sock:
        sock.sendall(
            b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"
        )
        assert sock.recv(100).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        sock.sendall(b"hello")
        data = b""
        while b"0\r\n\r\n" not in data:
            data += sock.recv(65536)
        assert data.startswith(b"HTTP/1.1 200") and b"hello" in data


def test_a_streamed_response_arrives_whole(corral_factory: Any) -> None:
    c = _serve(corral_factory, "asgiapps:behaviours")
    r = httpx.get(f"{c.url}/stream/5000")
    assert r.headers["transfer-encoding"] == "chunked"
    assert r.text == "".join(f"{i}\n" for i in range(5000))


def test_pathsend_sends_the_file(corral_factory: Any) -> None:
    c = _serve(corral_factory, "asgiapps:behaviours")
    r = httpx.get(f"{c.url}/pathsend")
    assert r.status_code == 200
    assert r.content == (Path(__file__).parent / "apps" / "asgiapps.py").read_bytes()


def test_a_slow_reader_holds_the_app_in_send_not_the_worker(corral_factory: Any) -> None:
    """send() awaits the transport's drain: a client that does not read a 64 MiB stream keeps
    the app waiting while other clients are served at once."""
    c = _serve(corral_factory, "asgiapps:behaviours")
    with socket.create_connection((c.host, c.port), timeout=10) as slow:
        slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        slow.sendall(b"GET /stream/10000000 HTTP/1.1\r\nHost: a\r\n\r\n")
        assert slow.recv(100).startswith(b"HTTP/1.1 200")
        for _ in range(20):
            assert httpx.get(f"{c.url}/").text == "ok"
        rss = int(Path(f"/proc/{worker_pids(c.pid)[0]}/statm").read_text().split()[1]) * 4096
        assert rss < 200 * MIB, f"the worker holds {rss >> 20} MiB for one slow reader"


def test_pipelined_requests_are_answered_in_order(corral_factory: Any) -> None:
    c = _serve(corral_factory, "asgiapps:scope_echo")
    reqs = (
        b"".join(b"GET /%d HTTP/1.1\r\nHost: a\r\n\r\n" % i for i in range(5))
        + b"GET /last HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
    )
    data = _raw(c, reqs, shut=False)
    paths = [json.loads(part.split(b"\r\n\r\n", 1)[1])["path"] for part in _split(data)]
    assert paths == ["/0", "/1", "/2", "/3", "/4", "/last"]


def _split(data: bytes) -> list[bytes]:
    """Content-Length responses back to back."""
    out = []
    while data:
        head, _, rest = data.partition(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        out.append(head + b"\r\n\r\n" + rest[:length])
        data = rest[length:]
    return out


# ----------------------------------------------------------------- errors and disconnects


def test_an_exception_before_the_response_is_a_500_and_the_worker_goes_on(
    corral_factory: Any,
) -> None:
    c = _serve(corral_factory, "asgiapps:behaviours")
    workers = worker_pids(c.pid)
    r = httpx.get(f"{c.url}/raise")
    assert r.status_code == 500 and r.headers["connection"] == "close"
    assert httpx.get(f"{c.url}/none").status_code == 500
    assert httpx.get(f"{c.url}/").text == "ok"
    assert worker_pids(c.pid) == workers
    log = c.log()
    assert "boom before the response" in log and "GET /raise" in log
    assert "returned without a response" in log


def test_an_exception_after_the_response_started_closes_the_connection(
    corral_factory: Any,
) -> None:
    c = _serve(corral_factory, "asgiapps:behaviours")
    data = _raw(c, b"GET /raise-late HTTP/1.1\r\nHost: a\r\n\r\n", shut=False)
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and body == b"x" * 10  # cut short, then EOF
    assert httpx.get(f"{c.url}/").text == "ok"


def test_a_client_that_goes_away_is_an_http_disconnect(corral_factory: Any, tmp_path: Path) -> None:
    flag = tmp_path / "disconnected"
    c = _serve(corral_factory, "asgiapps:behaviours", env={"ASGI_DISCONNECT_FILE": str(flag)})
    with socket.create_connection((c.host, c.port), timeout=10) as sock:
        sock.sendall(b"GET /disconnect HTTP/1.1\r\nHost: a\r\n\r\n")
        assert sock.recv(100).startswith(b"HTTP/1.1 200")
    wait_for(flag.exists, timeout=10)


def test_a_coroutine_that_blocks_the_loop_is_caught_by_the_timeout(corral_factory: Any) -> None:
    c = _serve(corral_factory, "asgiapps:behaviours", "--timeout-s", "2")
    before = worker_pids(c.pid)
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{c.url}/block?60", timeout=30)
    wait_for(lambda: worker_pids(c.pid) and worker_pids(c.pid) != before, timeout=30)
    assert httpx.get(f"{c.url}/").text == "ok"
    log = c.wait_log("killed by SIGABRT (timeout)", timeout=10)
    assert "in behaviours" in log  # the stack dump names the coroutine that blocked


def test_a_bad_request_gets_the_same_answer_as_from_the_wsgi_worker(corral_factory: Any) -> None:
    c = _serve(corral_factory, "asgiapps:behaviours")
    data = _raw(c, b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n")
    assert data.startswith(b"HTTP/1.1 400")
    assert _raw(c, b"GET / HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.1 400")  # no Host
    assert httpx.get(f"{c.url}/").text == "ok"


def test_the_health_path_is_answered_without_the_app(corral_factory: Any) -> None:
    c = _serve(corral_factory, "asgiapps:behaviours", "--health-path", "/healthz")
    r = httpx.get(f"{c.url}/healthz")
    assert r.status_code == 200 and r.text == "ok\n"


# ----------------------------------------------------------------- WebSockets


def _ws(c: Corral, path: str = "/") -> str:
    return f"ws://{c.host}:{c.port}{path}"


def test_websocket_echo_text_and_bytes(corral_factory: Any) -> None:
    c = _serve(corral_factory, "asgiapps:ws_echo")

    async def talk() -> None:
        async with websockets.connect(_ws(c), subprotocols=["chat", "x"]) as ws:  # type: ignore[list-item]
            assert ws.subprotocol == "chat"
            await ws.send("hello")
            assert await ws.recv() == "hello"
            await ws.send(b"\x00\x01" * 50_000)  # fragmented by nobody, deflated perhaps
            assert await ws.recv() == b"\x00\x01" * 50_000
            for i in range(100):
                await ws.send(f"m{i}")
            assert [await ws.recv() for _ in range(100)] == [f"m{i}" for i in range(100)]
            await ws.send("close-me")
            with pytest.raises(ConnectionClosed) as info:
                await ws.recv()
            assert info.value.rcvd is not None and info.value.rcvd.code == 4000

    asyncio.run(asyncio.wait_for(talk(), 30))
    assert httpx.get(c.url).text == "http here"  # the same app answers plain HTTP


def test_websocket_denials(corral_factory: Any) -> None:
    c = _serve(corral_factory, "asgiapps:ws_echo")

    async def deny(path: str) -> InvalidStatus:
        with pytest.raises(InvalidStatus) as info:
            async with websockets.connect(_ws(c, path)):
                pass
        return info.value

    assert asyncio.run(deny("/deny")).response.status_code == 403
    denied = asyncio.run(deny("/http-deny"))
    assert denied.response.status_code == 401 and denied.response.body == b"no entry"


def test_a_websocket_message_over_the_limit_closes_with_1009(corral_factory: Any) -> None:
    c = _serve(corral_factory, "asgiapps:ws_echo", "--ws-max-message-bytes", "1000")

    async def talk() -> int:
        async with websockets.connect(_ws(c), compression=None) as ws:
            await ws.send("x" * 999)
            assert await ws.recv() == "x" * 999
            await ws.send("x" * 1001)
            with pytest.raises(ConnectionClosed) as info:
                await ws.recv()
            assert info.value.rcvd is not None
            return info.value.rcvd.code

    assert asyncio.run(asyncio.wait_for(talk(), 30)) == 1009


def test_a_websocket_peer_that_does_not_answer_pings_is_closed(corral_factory: Any) -> None:
    c = _serve(
        corral_factory, "asgiapps:ws_echo", "--ws-ping-interval-s", "1", "--ws-ping-timeout-s", "1"
    )
    key = b"dGhlIHNhbXBsZSBub25jZQ=="
    with socket.create_connection((c.host, c.port), timeout=15) as sock:
        sock.sendall(
            b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: " + key + b"\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        data = b""
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:  # never answering the pings
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
        assert data.startswith(b"HTTP/1.1 101")
        assert b"\x89" in data  # a ping frame came
        assert b"\x88" in data  # then a close frame (1011), and the connection ended


def test_open_websockets_get_1001_on_graceful_stop(corral_factory: Any, tmp_path: Path) -> None:
    closes = tmp_path / "closes.txt"
    c = _serve(corral_factory, "asgiapps:ws_echo", env={"ASGI_WS_CLOSE_FILE": str(closes)})

    async def talk() -> int:
        async with websockets.connect(_ws(c)) as ws:
            await ws.send("hi")
            assert await ws.recv() == "hi"
            c.signal(signal.SIGTERM)
            with pytest.raises(ConnectionClosed) as info:
                await ws.recv()
            assert info.value.rcvd is not None
            return info.value.rcvd.code

    assert asyncio.run(asyncio.wait_for(talk(), 30)) == 1001
    assert c.wait(30) == 0
    assert closes.read_text().split() == ["1001"]


def test_open_websockets_are_counted_on_stats_and_metrics(corral_factory: Any) -> None:
    c = _serve(corral_factory, "asgiapps:ws_echo", "--stats", "127.0.0.1:0")
    stats = c.wait_log("stats on http://").split("stats on ")[1].split(")")[0]

    def count() -> tuple[int, str]:
        doc = httpx.get(f"{stats}/stats").json()
        metrics = httpx.get(f"{stats}/metrics").text
        line = next(x for x in metrics.splitlines() if x.startswith("corral_websockets_open{"))
        return doc["totals"]["websockets"], line.rsplit(" ", 1)[1]

    async def talk() -> None:
        async with websockets.connect(_ws(c)) as one, websockets.connect(_ws(c)) as two:
            await one.send("a")
            await two.send("b")
            assert (await one.recv(), await two.recv()) == ("a", "b")
            await asyncio.to_thread(wait_for, lambda: count() == (2, "2"), 10)
        await asyncio.to_thread(wait_for, lambda: count() == (0, "0"), 10)

    asyncio.run(asyncio.wait_for(talk(), 30))


ASGI_VERSIONED = """
async def app(scope, receive, send):
    if scope["type"] == "websocket":
        await receive()
        await send({{"type": "websocket.accept"}})
        while (await receive())["type"] != "websocket.disconnect":
            await send({{"type": "websocket.send", "text": "{version}"}})
        return
    if scope["type"] != "http":
        return
    await send({{"type": "http.response.start", "status": 200, "headers": []}})
    await send({{"type": "http.response.body", "body": b"{version}"}})
"""


def test_hup_under_load_serves_new_code_and_closes_old_websockets_cleanly(
    tmp_path: Path, corral_factory: Any
) -> None:
    from loadgen import Load

    (tmp_path / "asgiver.py").write_text(ASGI_VERSIONED.format(version="v1"))
    c = corral_factory("asgiver:app", "-b", "127.0.0.1:0", "-w", "2", "--chdir", str(tmp_path))

    async def open_ws() -> Any:
        ws = await websockets.connect(_ws(c))
        await ws.send("?")
        assert await ws.recv() == "v1"
        return ws

    async def closed_code(ws: Any) -> int | None:
        with pytest.raises(ConnectionClosed) as info:
            await asyncio.wait_for(ws.recv(), 30)
        return info.value.rcvd.code if info.value.rcvd is not None else None

    loop = asyncio.new_event_loop()
    try:
        ws = loop.run_until_complete(open_ws())
        with Load(c.host, c.port, connections=4) as load:
            load.wait_requests(50)
            (tmp_path / "asgiver.py").write_text(ASGI_VERSIONED.format(version="v2"))
            c.signal(signal.SIGHUP)
            wait_for(lambda: load.last_body == b"v2", timeout=30)
            load.wait_requests(50)
            stats = load.stop()
        assert loop.run_until_complete(closed_code(ws)) == 1001  # a close frame, not a reset
    finally:
        loop.close()
    assert stats.failures == []
    assert stats.bodies[b"v2"] > 0
    c.wait_log("reload complete")
