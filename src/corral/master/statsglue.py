"""Connect the master to the stats layer: the stats listener, the fleet aggregate fed from the
scoreboard and the memory monitor, and the retire/recycle history.

The stats server runs inside the master's single selector loop (no thread: the master forks
zygotes, and forking a threaded process is unsafe); every request builds a fresh snapshot.
"""

from __future__ import annotations

import os
import socket
import time
from typing import TYPE_CHECKING

from corral.master.listeners import parse_address
from corral.memory.proc import MemorySample
from corral.stats.fleet import RETIRE_REASONS, Fleet, FleetSnapshot
from corral.stats.server import StatsServer, bind_stats_socket

if TYPE_CHECKING:
    from corral.master.arbiter import Arbiter, Worker

# The master's words for why a worker left -> the recycle counter it increments.
REASONS = {
    "oom?": "crash",
    "stopped": "scale-down",
    "shutdown": "scale-down",
    "reload-failed": "reload",
    "replaced": "reload",
}


class StatsGlue:
    def __init__(self, arbiter: Arbiter, sock: socket.socket) -> None:
        self.arbiter = arbiter
        self.fleet = Fleet(arbiter.scoreboard, now=time.monotonic())
        self.server = StatsServer(
            sock,
            self.snapshot,
            healthy=lambda: arbiter.phase != "stopping",
            allowed_hosts=arbiter.cfg.stats_allowed_hosts,
        )
        self.server.register(arbiter.sel)
        host, port = self.server.address
        self.address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        self.next_snapshot = 0.0

    def fds(self) -> list[int]:
        return [self.server.sock.fileno()]

    def tick(self, now: float) -> None:
        """Once a second: keep the rate history continuous even when nobody is scraping."""
        if now >= self.next_snapshot:
            self.next_snapshot = now + 1.0
            self.snapshot()
            self.server.expire(now)

    def snapshot(self) -> FleetSnapshot:
        monitor = self.arbiter.monitor
        if monitor is None:
            return self.fleet.snapshot(time.monotonic())
        for worker in self.arbiter.fleet.workers.values():
            sample = monitor.memory(worker.wid)
            if sample is None or not worker.pid:
                continue
            cow = monitor.cow(worker.wid)
            cow_pages = None
            if cow is not None:
                cow_pages = {
                    "cow_shared_pages": cow.shared_pages,
                    "cow_copied_pages": cow.exclusive_pages,
                }
            self.fleet.set_memory(worker.pid, _memory_dict(sample), cow_pages)
        if monitor.zygote_memory is not None:
            self.fleet.set_master_memory(_memory_dict(monitor.zygote_memory))
        return self.fleet.snapshot(time.monotonic())

    def retire(self, worker: Worker, reason: str) -> None:
        snap = self.arbiter.scoreboard.read(worker.slot)
        counted = reason if reason in RETIRE_REASONS else REASONS.get(reason, "crash")
        self.fleet.retire(snap, counted, time.monotonic())
        self.arbiter.scoreboard.clear(worker.slot)

    def event(self, kind: str, wid: int | None, detail: str = "") -> None:
        self.fleet.record_event(time.monotonic(), kind, wid, detail)

    def close(self) -> None:
        self.server.close()


def _memory_dict(sample: MemorySample) -> dict[str, int]:
    return {
        "rss": sample.rss,
        "pss": sample.pss,
        "uss": sample.uss,
        "shared": sample.shared,
        "swap": sample.swap,
    }


def start_stats_server(arbiter: Arbiter) -> StatsGlue:
    address = parse_address(arbiter.cfg.stats)
    sock = bind_stats_socket(
        address.host, address.port, allow_remote=arbiter.cfg.stats_allow_remote
    )
    glue = StatsGlue(arbiter, sock)
    os.environ["CORRAL_STATS_URL"] = f"http://{glue.address}"
    return glue
