"""Recycling on private memory: a leaking app is replaced before it hurts, and no request fails."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from corral.memory.proc import MemoryProbeError, read_smaps_rollup
from harness import wait_for, worker_pids
from loadgen import Load

pytestmark = pytest.mark.slow
MIB = 1024 * 1024


def test_leaking_workers_are_recycled_without_failures(corral_factory: Any) -> None:
    limit_mib = 64
    c = corral_factory(
        "sysapps:app",
        "-b",
        "127.0.0.1:0",
        "-w",
        "2",
        "--max-worker-memory-mib",
        str(limit_mib),
        "--min-worker-lifetime-s",
        "1",
        "--memory-sample-s",
        "0.5",
    )
    peak = {"uss": 0}
    done = threading.Event()

    def watch() -> None:  # our own view of the workers' private memory, independent of corral
        while not done.is_set():
            for pid in worker_pids(c.pid):
                try:
                    peak["uss"] = max(peak["uss"], read_smaps_rollup(pid).uss)
                except MemoryProbeError:
                    pass
            time.sleep(0.05)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    first = set(worker_pids(c.pid))
    with Load(c.host, c.port, path="/leak?32", connections=4, max_seconds=40) as load:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and c.log().count("recycling") < 3:
            load.wait_requests(200, timeout=20)
        stats = load.stop()
    done.set()
    watcher.join(5)
    recycles = c.log().count("recycling")
    assert recycles >= 3, c.log()
    assert stats.failures == []
    assert peak["uss"] < 1.5 * limit_mib * MIB, f"peak USS {peak['uss'] / MIB:.1f} MiB"
    wait_for(lambda: len(worker_pids(c.pid)) == 2)
    assert first - set(worker_pids(c.pid)), "no original worker was replaced"
