"""Connect the master to the stats layer: the stats listener, the fleet aggregate fed from the
scoreboard and the memory monitor's figures, and the retire/recycle history.

The stats server runs inside the master's single selector loop (no thread: the master forks
zygotes, and forking a threaded process is unsafe); every request builds a fresh snapshot.
The glue holds no arbiter: it is given the scoreboard, the selector to register with, and two
callables (is the master healthy, what are the latest memory figures); the arbiter tells it
when a worker retires and why, and ``corral.lifecycle.recycle_reason`` decides what is counted.
"""

from __future__ import annotations

import os
import selectors
import socket
import time
from collections.abc import Callable, Sequence

from corral.addresses import parse_address
from corral.lifecycle import ExitReason, recycle_reason
from corral.master.monitor import MemoryReport
from corral.memory.proc import MemorySample
from corral.stats.fleet import Fleet, FleetSnapshot
from corral.stats.scoreboard import Scoreboard
from corral.stats.server import StatsServer, bind_stats_socket


class StatsGlue:
    def __init__(
        self,
        scoreboard: Scoreboard,
        sock: socket.socket,
        *,
        healthy: Callable[[], bool],
        memory: Callable[[], MemoryReport | None],
        allowed_hosts: Sequence[str] = (),
    ) -> None:
        self.scoreboard = scoreboard
        self.memory = memory
        self.fleet = Fleet(scoreboard, now=time.monotonic())
        self.server = StatsServer(sock, self.snapshot, healthy=healthy, allowed_hosts=allowed_hosts)
        host, port = self.server.address
        self.address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        self.next_snapshot = 0.0

    def register(self, sel: selectors.BaseSelector) -> None:
        self.server.register(sel)

    def fds(self) -> list[int]:
        return [self.server.sock.fileno()]

    def tick(self, now: float) -> None:
        """Once a second: keep the rate history continuous even when nobody is scraping."""
        if now >= self.next_snapshot:
            self.next_snapshot = now + 1.0
            self.snapshot()
            self.server.expire(now)

    def snapshot(self) -> FleetSnapshot:
        report = self.memory()
        if report is not None:
            for pid, sample, cow in report.workers:
                cow_pages = None
                if cow is not None:
                    cow_pages = {
                        "cow_shared_pages": cow.shared_pages,
                        "cow_copied_pages": cow.exclusive_pages,
                    }
                self.fleet.set_memory(pid, _memory_dict(sample), cow_pages)
            if report.zygote is not None:
                self.fleet.set_master_memory(_memory_dict(report.zygote))
        return self.fleet.snapshot(time.monotonic())

    def retire(self, slot: int, reason: ExitReason) -> None:
        """Fold a departed worker's counters into the totals (and count it if it was a
        recycle), then free its slot for the next worker."""
        snap = self.scoreboard.read(slot)
        self.fleet.retire(snap, recycle_reason(reason), time.monotonic(), detail=reason)
        self.scoreboard.clear(slot)

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


def start_stats_server(
    address_text: str,
    scoreboard: Scoreboard,
    *,
    allow_remote: bool,
    healthy: Callable[[], bool],
    memory: Callable[[], MemoryReport | None],
    allowed_hosts: Sequence[str] = (),
) -> StatsGlue:
    address = parse_address(address_text)
    sock = bind_stats_socket(address.host, address.port, allow_remote=allow_remote)
    glue = StatsGlue(scoreboard, sock, healthy=healthy, memory=memory, allowed_hosts=allowed_hosts)
    os.environ["CORRAL_STATS_URL"] = f"http://{glue.address}"
    return glue
