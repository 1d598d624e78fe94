"""A small closed-loop load generator for system tests: N threads, each with its own keep-alive
HTTP/1.1 connection, bounded by a stop event and a hard deadline. It records every outcome so a
test can say exactly how many requests failed and why.

With ``reuse_check`` a client looks at a kept-alive connection before sending on it, as urllib3
and browsers do: one the server has closed while it was idle (readable: EOF) is replaced by a
new connection, because a request never sent cannot fail. Without it, a request written into a
connection the server closed long before is counted as failed, which says more about the
client than about the server."""

from __future__ import annotations

import http.client
import select
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class LoadStats:
    ok: int = 0
    failures: list[str] = field(default_factory=list)
    bodies: Counter[bytes] = field(default_factory=Counter)
    reconnects: int = 0  # kept-alive connections found closed by the server before reuse
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, body: bytes | None, error: str | None) -> None:
        with self.lock:
            if error is None:
                self.ok += 1
                self.bodies[body or b""] += 1
            else:
                self.failures.append(f"{time.monotonic():.3f} {error}")

    def total(self) -> int:
        return self.ok + len(self.failures)


def dropped(conn: http.client.HTTPConnection) -> bool:
    """Whether the server closed this idle kept-alive connection (or sent something unasked)."""
    if conn.sock is None:
        return False
    readable, _, _ = select.select([conn.sock], [], [], 0)
    return bool(readable)


class Load:
    def __init__(
        self,
        host: str,
        port: int,
        path: str = "/",
        connections: int = 4,
        max_seconds: float = 60.0,
        *,
        method: str = "GET",
        body: bytes | None = None,
        expect: Callable[[bytes], bool] | None = None,
        reuse_check: bool = False,
        timeout_s: float = 10.0,
    ) -> None:
        """``expect``: a test of a 200's body (a failure when false); see the module for
        ``reuse_check``; ``timeout_s`` bounds each socket operation."""
        self.host, self.port, self.path = host, port, path
        self.method, self.body, self.expect = method, body, expect
        self.reuse_check, self.timeout_s = reuse_check, timeout_s
        self.stats = LoadStats()
        self.stop_event = threading.Event()
        self.deadline = time.monotonic() + max_seconds
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(connections)]
        self.last_body: bytes = b""

    def __enter__(self) -> Load:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> LoadStats:
        self.stop_event.set()
        for t in self.threads:
            t.join(timeout=15)
        return self.stats

    def _connection(self, conn: http.client.HTTPConnection | None) -> http.client.HTTPConnection:
        if conn is not None and self.reuse_check and dropped(conn):
            conn.close()
            conn = None
            with self.stats.lock:
                self.stats.reconnects += 1
        return conn or http.client.HTTPConnection(self.host, self.port, timeout=self.timeout_s)

    def _run(self) -> None:
        conn: http.client.HTTPConnection | None = None
        while not self.stop_event.is_set() and time.monotonic() < self.deadline:
            conn = self._connection(conn)
            if not self._one(conn):
                conn.close()
                conn = None
        if conn is not None:
            conn.close()

    def _one(self, conn: http.client.HTTPConnection) -> bool:
        """One request, its outcome recorded: whether the connection may be used again."""
        try:
            conn.request(self.method, self.path, body=self.body)
            resp = conn.getresponse()
            body = resp.read()
        except (OSError, http.client.HTTPException) as exc:
            self.stats.record(None, f"{type(exc).__name__}: {exc}")
            return False
        if resp.status != 200:
            self.stats.record(None, f"status {resp.status} {body[:80]!r}")
        elif self.expect is not None and not self.expect(body):
            self.stats.record(None, f"unexpected body {body[:80]!r}")
        else:
            self.stats.record(body, None)
            self.last_body = body
        return not resp.will_close

    def wait_requests(self, n: int, timeout: float = 20.0) -> None:
        """Bounded wait until at least n more requests have succeeded."""
        target = self.stats.ok + n
        deadline = time.monotonic() + timeout
        while self.stats.ok < target:
            if time.monotonic() > deadline:
                raise AssertionError(f"load made no progress: {self.stats.failures[-5:]}")
            time.sleep(0.01)
