"""A memory limit that holds against a fast leak: unpaced load on an app keeping 256 KiB per
request (well over 100 MB/s), private memory sampled from /proc by a process of its own."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from corral.bench import LoadConfig, run_load
from harness import wait_for, worker_pids

pytestmark = pytest.mark.slow
MIB = 1024 * 1024
SAMPLER = Path(__file__).parent / "memsampler.py"


def test_private_memory_stays_within_half_over_the_limit_at_full_speed(
    corral_factory: Any,
) -> None:
    limit_mib = 64
    c = corral_factory(
        "sysapps:app",
        "-b",
        "127.0.0.1:0",
        "-w",
        "2",
        "--max-worker-memory-mib",
        str(limit_mib),
        "--memory-sample-s",
        "0.5",
    )
    sampler = subprocess.Popen(
        [sys.executable, str(SAMPLER), str(c.pid), "60"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        wait_for(lambda: sampler.poll() is None)
        config = LoadConfig(
            urls=(f"http://{c.host}:{c.port}/leak?256",),
            connections=4,
            procs=2,
            requests=4000,
            max_time_s=60.0,
        )
        result = run_load(config)
    finally:
        out, _ = sampler.communicate(b"", timeout=30)  # EOF on its stdin: it reports
    seen = json.loads(out)
    log = c.log()
    print(f"fast leak: {result.requests} requests, {seen}, log: {log.count('recycling')} recycles")
    assert result.failed == 0 and result.error_total == 0, (result.errors, log[-3000:])
    assert result.requests >= 4000
    assert seen["samples"] > 100 and seen["workers"] > 2, seen  # it sampled, workers recycled
    peak = seen["max_private"] / MIB
    assert peak <= 1.5 * limit_mib, f"a worker reached {peak:.1f} MiB private:\n{log[-3000:]}"
    assert "Traceback" not in log and "crash" not in log, log[-3000:]
    wait_for(lambda: len(worker_pids(c.pid)) == 2)


def test_the_hard_limit_fails_the_one_request_and_the_worker_serves_on(
    corral_factory: Any,
) -> None:
    c = corral_factory(
        "sysapps:app", "-b", "127.0.0.1:0", "-w", "1", "--worker-memory-hard-limit-mib", "128"
    )
    pid = c.get("/pid")[1]
    status, _ = c.get(f"/leak?{512 * 1024}")  # 512 MiB in one allocation: past the ceiling
    assert status == 500
    assert "MemoryError" in c.wait_log("MemoryError")
    assert c.get("/pid") == (200, pid)  # the same worker, alive, answers the next request
