"""The open model's arrival schedule, and how work is split between processes.

wrk2's insight: a load generator that waits for a slow response before sending the next
request quietly stops measuring the stall it caused ("coordinated omission"). Under
``--rate R`` arrival ``k`` is *due* at ``t0 + k / R`` whether or not the server kept up;
its latency runs from that intended time, so queueing inside the generator counts.

With ``N`` processes, process ``i`` owns every arrival ``k`` with ``k % N == i``: its
``j``-th arrival is global arrival ``j * N + i``. Together they interleave into exactly
one stream at rate ``R``. Everything here is a pure function of rate, index and clock.
"""

from __future__ import annotations

import math


def arrival_time(j: int, rate: float, t0: float, index: int = 0, nprocs: int = 1) -> float:
    """When this process's ``j``-th arrival is due (``rate`` is the global rate)."""
    return t0 + (j * nprocs + index) / rate


def arrivals_due(now: float, rate: float, t0: float, index: int = 0, nprocs: int = 1) -> int:
    """How many of this process's arrivals are due at ``now`` (those with time <= now)."""
    if now < t0:
        return 0
    # Float rounding of absolute monotonic times is absorbed by calling an arrival due up to
    # 1e-4 of a gap early, so arrivals_due(arrival_time(j)) is always j + 1.
    k = math.floor((now - t0) * rate + 1e-4)  # global arrivals 0..k are due
    return max(0, (k - index) // nprocs + 1)


def split_evenly(total: int, parts: int) -> list[int]:
    """``total`` split into ``parts`` integers differing by at most one, larger first."""
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]
