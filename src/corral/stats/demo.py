"""A synthetic fleet for the dashboard and tests: real scoreboard, fake traffic, no workers.

Theory of operation: ``DemoFleet`` owns a real ``Scoreboard`` and ``Fleet`` and plays every
worker's part in-process through real slot writers (``Scoreboard.writer``), so everything downstream
(exposition, the stats server, the dashboard, ``corral top``) sees exactly what a live master
would produce. Traffic, memory growth, GC and recycles come from a seeded RNG, driven by the
caller's clock: each ``snapshot(now)`` first simulates the time elapsed since the last call.
``LoopThread`` runs a ``StatsServer`` in its own selector loop on a background thread, the way
the master runs it in its main loop.
"""

from __future__ import annotations

import random
import selectors
import socket
import threading
from collections.abc import Callable, Sequence

from corral.lifecycle import RecycleReason
from corral.stats.fleet import Fleet, FleetSnapshot
from corral.stats.protocol import WorkerState
from corral.stats.scoreboard import RecordingSlot, Scoreboard
from corral.stats.server import StatsServer, bind_stats_socket

_PATHS = (b"/", b"/api/items", b"/api/items/42", b"/login", b"/static/app.css", b"/search?q=x")
MIB = 1024 * 1024


class DemoFleet:
    """``workers`` synthetic workers serving about ``rps`` requests per second each."""

    def __init__(
        self,
        workers: int = 2,
        *,
        now: float,
        rps: float = 150.0,
        seed: int = 7,
        recycle_every: int = 0,
        memory: bool = True,
    ) -> None:
        self.scoreboard = Scoreboard.create(workers)
        self.fleet = Fleet(self.scoreboard, now=now, window_s=3.0)
        self.rng = random.Random(seed)
        self.rps = rps
        self.recycle_every = recycle_every
        self.memory = memory
        self._writers: list[RecordingSlot] = []
        self._private: list[int] = []
        self._busy: list[bool] = []
        self._next_pid = 41000
        self._last = now
        for i in range(workers):
            self._writers.append(self.scoreboard.writer(i, claim_pid=False))
            self._private.append(0)
            self._busy.append(False)
            self._spawn(i, now, generation=0)
        self.fleet.set_master_memory(
            {"rss": 180 * MIB, "pss": 60 * MIB, "uss": 22 * MIB, "shared": 158 * MIB, "swap": 0}
        )

    def _spawn(self, index: int, now: float, generation: int) -> None:
        self._next_pid += self.rng.randint(1, 40)
        self.scoreboard.reset(index, self._next_pid, index, generation, now)
        # a new writer per worker life, as in a real worker: its mirrors start from the reset slot
        self._writers[index] = self.scoreboard.writer(index, claim_pid=False)
        self._writers[index].set_state(WorkerState.READY)
        self._private[index] = 8 * MIB
        self._busy[index] = False
        self.fleet.record_event(now, "spawn", index, f"pid {self._next_pid}")

    def snapshot(self, now: float) -> FleetSnapshot:
        """Simulate up to ``now``, then return what /stats would show."""
        elapsed = max(0.0, min(now - self._last, 5.0))
        self._last = now
        for i in range(self.scoreboard.nslots):
            self._serve(i, now, elapsed)
        return self.fleet.snapshot(now)

    def _serve(self, index: int, now: float, elapsed: float) -> None:
        w = self._writers[index]
        if self._busy[index]:
            w.finish_request(now, 200, self._latency(), 180, 2400)
        n = int(self.rps * elapsed * self.rng.uniform(0.7, 1.3))
        for _ in range(n):
            path = self.rng.choice(_PATHS)
            w.start_request(now, b"GET", path)
            w.finish_request(now, self._status(), self._latency(), 180, 2400)
        if n and self.rng.random() < 0.15:
            w.record_gc(2, self.rng.uniform(0.0005, 0.004))
        w.flush()
        w.heartbeat(now)
        self._grow(index, n)
        slot = self.scoreboard.read(index)
        if self.recycle_every and slot.requests >= self.recycle_every:
            self.fleet.retire(slot, RecycleReason.MAX_REQUESTS, now)
            self._spawn(index, now, slot.generation + 1)
        w = self._writers[index]  # a new one if the worker was just replaced
        w.start_request(now, b"GET", self.rng.choice(_PATHS))  # leave one request in flight
        self._busy[index] = True

    def _status(self) -> int:
        r = self.rng.random()
        return 500 if r < 0.01 else 404 if r < 0.05 else 304 if r < 0.12 else 200

    def _latency(self) -> float:
        return self.rng.lognormvariate(-6.2, 0.6)  # median ~2 ms, long right tail

    def _grow(self, index: int, served: int) -> None:
        if not self.memory:
            return
        self._private[index] += int(served * self.rng.uniform(2000, 9000))
        rss = 150 * MIB + self._private[index]
        pid = self.scoreboard.read(index).pid
        uss = self._private[index]
        self.fleet.set_memory(
            pid,
            {"rss": rss, "pss": uss + (rss - uss) // 3, "uss": uss, "shared": rss - uss, "swap": 0},
            {"cow_shared_pages": (rss - uss) // 4096, "cow_copied_pages": uss // 4096},
        )


class LoopThread:
    """A selector loop on a daemon thread serving one ``StatsServer`` (tests, demos)."""

    def __init__(
        self,
        provider: Callable[[], FleetSnapshot],
        *,
        healthy: Callable[[], bool] | None = None,
        host: str = "127.0.0.1",
        allowed_hosts: Sequence[str] = (),
    ) -> None:
        self.selector = selectors.DefaultSelector()
        self.server = StatsServer(
            bind_stats_socket(host, 0),
            provider,
            healthy=healthy or (lambda: True),
            allowed_hosts=allowed_hosts,
        )
        self._wake_r, self._wake_w = socket.socketpair()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="stats-loop", daemon=True)

    @property
    def address(self) -> tuple[str, int]:
        """(host, port) the server listens on."""
        return self.server.address

    def start(self) -> LoopThread:
        """Register and start the loop; returns self."""
        self.server.register(self.selector)
        self.selector.register(self._wake_r, selectors.EVENT_READ, self._on_wake)
        self._thread.start()
        return self

    def _on_wake(self, fileobj: object, mask: int) -> None:
        self._wake_r.recv(64)
        self._stopping = True

    def _run(self) -> None:
        while not self._stopping:
            for key, mask in self.selector.select(0.5):
                key.data(key.fileobj, mask)
            self.server.expire()

    def stop(self, timeout: float = 5.0) -> None:
        """Wake the loop, join it and close everything."""
        self._wake_w.send(b"x")
        self._thread.join(timeout)
        self.server.close()
        self.selector.close()
        self._wake_r.close()
        self._wake_w.close()
