"""A small closed-loop load generator for system tests: N threads, each with its own keep-alive
HTTP/1.1 connection, bounded by a stop event and a hard deadline. It records every outcome so a
test can say exactly how many requests failed and why."""

from __future__ import annotations

import http.client
import threading
import time
from collections import Counter
from dataclasses import dataclass, field


@dataclass
class LoadStats:
    ok: int = 0
    failures: list[str] = field(default_factory=list)
    bodies: Counter[bytes] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, body: bytes | None, error: str | None) -> None:
        with self.lock:
            if error is None:
                self.ok += 1
                self.bodies[body or b""] += 1
            else:
                self.failures.append(error)


class Load:
    def __init__(
        self, host: str, port: int, path: str = "/", connections: int = 4, max_seconds: float = 60.0
    ) -> None:
        self.host, self.port, self.path = host, port, path
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

    def _run(self) -> None:
        conn: http.client.HTTPConnection | None = None
        while not self.stop_event.is_set() and time.monotonic() < self.deadline:
            if conn is None:
                conn = http.client.HTTPConnection(self.host, self.port, timeout=10)
            try:
                conn.request("GET", self.path)
                resp = conn.getresponse()
                body = resp.read()
                if resp.status != 200:
                    self.stats.record(None, f"status {resp.status}")
                else:
                    self.stats.record(body, None)
                    self.last_body = body
                if resp.will_close:
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException) as exc:
                self.stats.record(None, f"{type(exc).__name__}: {exc}")
                conn.close()
                conn = None
        if conn is not None:
            conn.close()

    def wait_requests(self, n: int, timeout: float = 20.0) -> None:
        """Bounded wait until at least n more requests have succeeded."""
        target = self.stats.ok + n
        deadline = time.monotonic() + timeout
        while self.stats.ok < target:
            if time.monotonic() > deadline:
                raise AssertionError(f"load made no progress: {self.stats.failures[-5:]}")
            time.sleep(0.01)
