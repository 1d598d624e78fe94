"""Sample every worker's private memory from outside corral, as fast as /proc allows.

Run as a process of its own (``python memsampler.py MASTER_PID SECONDS``) so that the sampling
never waits for the test's GIL or forks along with a load generator: it rescans the master's
children for ``corral worker`` every 20 ms and reads each worker's ``/proc/PID/smaps_rollup``
in a tight loop (a 2 ms pause per round), until its stdin closes or the time is up. It then
prints one JSON line: the number of samples, the largest private figure (USS) seen and which
pid it belonged to, and how many distinct workers were seen.
"""

from __future__ import annotations

import json
import os
import select
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from harness import worker_pids

RESCAN_S = 0.020
PAUSE_S = 0.002


def private_bytes(pid: int) -> int | None:
    """USS (Private_Clean + Private_Dirty) of ``pid``, or None once it is gone."""
    try:
        with open(f"/proc/{pid}/smaps_rollup", "rb") as f:
            text = f.read()
    except OSError:
        return None
    total = 0
    for line in text.splitlines():
        if line.startswith((b"Private_Clean:", b"Private_Dirty:")):
            total += int(line.split()[1]) * 1024
    return total or None


def sample(master_pid: int, seconds: float) -> dict[str, int]:
    deadline = time.monotonic() + seconds
    pids: list[int] = []
    seen: set[int] = set()
    rescan_at = 0.0
    samples, peak, peak_pid = 0, 0, 0
    while (now := time.monotonic()) < deadline:
        if now >= rescan_at:
            pids, rescan_at = worker_pids(master_pid), now + RESCAN_S
            seen.update(pids)
            if select.select([sys.stdin], [], [], 0)[0] and not os.read(0, 1):
                break  # the test closed our stdin: done
        for pid in pids:
            value = private_bytes(pid)
            if value is not None:
                samples += 1
                if value > peak:
                    peak, peak_pid = value, pid
        time.sleep(PAUSE_S)
    return {"samples": samples, "max_private": peak, "max_pid": peak_pid, "workers": len(seen)}


if __name__ == "__main__":
    print(json.dumps(sample(int(sys.argv[1]), float(sys.argv[2]))), flush=True)
