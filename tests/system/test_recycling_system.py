"""Recycling on private memory: a leaking app is replaced before it hurts, and no request fails."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from corral.bench import LoadConfig, run_load
from corral.memory.proc import MemoryProbeError, read_smaps_rollup
from harness import wait_for, worker_pids

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
    # Paced like real traffic (600 req/s, open model): at full speed one worker can leak
    # 100+ MB/s, faster than any minimum lifetime allows a recycle to keep up with.
    config = LoadConfig(
        urls=(f"http://{c.host}:{c.port}/leak?32",), connections=8, rate=600.0, duration_s=25.0
    )
    stop = threading.Event()
    outcome: list[Any] = []
    loader = threading.Thread(target=lambda: outcome.append(run_load(config, stop=stop)))
    loader.start()
    deadline = time.monotonic() + 25
    while time.monotonic() < deadline and c.log().count("recycling") < 3 and loader.is_alive():
        time.sleep(0.1)  # polling the log with a deadline
    stop.set()
    loader.join(30)
    done.set()
    watcher.join(5)
    result = outcome[0]
    recycles = c.log().count("recycling")
    assert recycles >= 3, c.log()
    assert result.failed == 0 and result.error_total == 0, result.errors
    assert result.requests > 1000
    assert peak["uss"] < 1.5 * limit_mib * MIB, f"peak USS {peak['uss'] / MIB:.1f} MiB"
    wait_for(lambda: len(worker_pids(c.pid)) == 2)
    assert first - set(worker_pids(c.pid)), "no original worker was replaced"
