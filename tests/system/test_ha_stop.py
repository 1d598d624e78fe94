"""The stop a balancer can follow (docs/fleet.md): the app-port health path, the lame-duck
period, and a drain whose new connections are refused, never reset (issue 13)."""

from __future__ import annotations

import http.client
import signal
import socket
import threading
import time
from collections.abc import Callable

import pytest

from harness import Corral, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(90)]

Factory = Callable[..., Corral]


def _get(host: str, port: int, path: str, method: str = "GET") -> tuple[int, bytes, str]:
    conn = http.client.HTTPConnection(host, port, timeout=10)
    try:
        conn.request(method, path, body=b"x" * 10 if method == "POST" else None)
        resp = conn.getresponse()
        return resp.status, resp.read(), resp.getheader("Connection") or ""
    finally:
        conn.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_health_path_is_answered_without_the_app(corral_factory: Factory) -> None:
    c = corral_factory("fleetapp:app", "-b", "127.0.0.1:0", "-w", "1", "--health-path", "/healthz")
    assert _get(c.host, c.port, "/healthz") == (200, b"ok\n", "")
    assert _get(c.host, c.port, "/healthz?probe=1")[:2] == (200, b"ok\n")
    assert _get(c.host, c.port, "/healthz", "POST")[:2] == (200, b"ok\n")
    status, body, _ = _get(c.host, c.port, "/healthzz")
    assert status == 200 and body.startswith(b"v1 ")  # the app's own answer


def test_a_bad_health_path_is_a_one_line_error(corral_factory: Factory) -> None:
    c = corral_factory("fleetapp:app", "--health-path", "healthz", ready=False)
    assert c.wait(30) == 2
    assert "health_path" in c.log() and "Traceback" not in c.log()


def test_term_turns_health_503_keeps_serving_then_refuses(corral_factory: Factory) -> None:
    stats = f"127.0.0.1:{_free_port()}"
    c = corral_factory(
        "fleetapp:app",
        *("-b", "127.0.0.1:0", "-w", "2", "--health-path", "/healthz", "--stats", stats),
        *("--shutdown-delay-s", "3"),
    )
    shost, sport = stats.split(":")
    assert _get(shost, int(sport), "/healthz")[0] == 200
    keep = http.client.HTTPConnection(c.host, c.port, timeout=10)  # a pooled connection
    keep.request("GET", "/")
    assert keep.getresponse().read().startswith(b"v1 ")
    c.signal(signal.SIGTERM)
    c.wait_log("received SIGTERM")
    t0 = time.monotonic()
    assert _get(c.host, c.port, "/healthz")[:2] == (503, b"draining\n")
    assert _get(shost, int(sport), "/healthz")[0] == 503
    status, body, _ = _get(c.host, c.port, "/", "POST")  # a new connection: still accepted
    assert status == 200 and body.endswith(b" 10\n")
    keep.request("GET", "/")  # the pooled one keeps working through the lame duck
    assert keep.getresponse().read().startswith(b"v1 ")
    assert time.monotonic() - t0 < 3.0, "the checks above took the whole lame duck"
    # After the lame duck: the pooled connection's next answer says "close"...
    deadline = time.monotonic() + 20
    while True:
        keep.request("GET", "/")
        resp = keep.getresponse()
        resp.read()
        if resp.getheader("Connection") == "close" or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert resp.getheader("Connection") == "close"
    assert time.monotonic() - t0 >= 2.9  # not before the lame duck was over
    keep.close()
    # ...and a new connection is refused, not accepted and reset.
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((c.host, c.port), timeout=5).close()
    assert c.wait(30) == 0


def test_a_drain_never_resets_a_connection(corral_factory: Factory) -> None:
    """Clients connect and send a POST as fast as they can across a TERM: each one is either
    answered in full or refused at connect; an in-flight request finishes."""
    c = corral_factory("fleetapp:app", "-b", "127.0.0.1:0", "-w", "2")
    inflight: list[tuple[int, bytes, str]] = []
    slow = threading.Thread(target=lambda: inflight.append(_get(c.host, c.port, "/sleep?1")))
    slow.start()
    outcomes: dict[str, int] = {"ok": 0, "refused": 0}
    errors: list[str] = []
    stop = threading.Event()

    def hammer() -> None:
        while not stop.is_set():
            try:
                status, body, _ = _get(c.host, c.port, "/", "POST")
            except ConnectionRefusedError:
                outcomes["refused"] += 1
                return
            except OSError as exc:
                errors.append(repr(exc))
                return
            if status != 200 or not body.endswith(b" 10\n"):
                errors.append(f"{status} {body!r}")
            outcomes["ok"] += 1

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for t in threads:
        t.start()
    wait_for(lambda: outcomes["ok"] >= 8, timeout=30)  # under load when the TERM comes
    c.signal(signal.SIGTERM)
    for t in threads:
        t.join(timeout=30)
    stop.set()
    slow.join(timeout=30)
    assert c.wait(30) == 0
    assert not errors, errors
    assert outcomes["refused"] == 4 and outcomes["ok"] > 0
    assert inflight and inflight[0][0] == 200
