"""Log-scale latency buckets shared by the scoreboard, the aggregator and the exposition.

Theory of operation: a request duration ``s`` lands in one of ``NBUCKETS`` integer counters.
Bucket 0 holds everything below ``LOW_S`` (50 µs); bucket ``i`` in ``1..NBUCKETS-2`` holds
``[LOW_S * 2**((i-1)/8), LOW_S * 2**(i/8))``; the last bucket holds everything from
``HIGH_S`` (~62.3 s) up. Eight buckets per power of two make each bucket 9.05% wide, so a
quantile reported as its bucket's geometric midpoint is within a factor ``2**(1/16)`` of the
true sample value: relative error at most 4.4% for durations between 50 µs and 62 s (HdrHistogram
with 2 significant digits is ~1%, Prometheus' default buckets are up to 2.5x wide). Below 50 µs
the answer is "< 50 µs" (reported as 50 µs); above 62 s it is "> 62 s".

Counters are plain integers so that a histogram is a fixed-size array in shared memory that a
single writer increments and any reader copies; merging two histograms is element-wise addition.

The edges are one precomputed table (``EDGES``) and every bucketing is a ``bisect`` into it, so
the single-sample path (``bucket_index``) and the batch path (``count_into``, which the worker
runs once per loop iteration over the durations it collected) agree exactly, even at an edge.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections.abc import MutableSequence, Sequence
from itertools import accumulate
from operator import add, sub

LOW_S = 50e-6
PER_OCTAVE = 8
OCTAVES = 20.25  # 50 µs * 2**20.25 ~= 62.3 s, just above a 60 s request timeout
REGULAR = int(OCTAVES * PER_OCTAVE)  # 162 regular buckets
NBUCKETS = REGULAR + 2  # + underflow + overflow
HIGH_S = LOW_S * 2.0 ** (REGULAR / PER_OCTAVE)
MAX_RELATIVE_ERROR = 2.0 ** (1.0 / (2 * PER_OCTAVE)) - 1.0  # ~0.0443

_LAST = NBUCKETS - 1
# EDGES[i] is the exclusive upper edge of bucket i (i < _LAST): bisect_right(EDGES, s) is the
# bucket of s, one C call of ~8 float comparisons (cheaper than a log2 in Python).
EDGES: tuple[float, ...] = tuple(LOW_S * 2.0 ** (i / PER_OCTAVE) for i in range(_LAST))


def bucket_index(seconds: float) -> int:
    """The bucket a duration falls in."""
    return bisect_right(EDGES, seconds)


def count_into(counts: MutableSequence[int], durations: list[float]) -> None:
    """Add ``durations`` (seconds) to ``counts``; sorts ``durations`` in place.

    Batch bucketing for the worker's hot path: one sort, then two bisects per *distinct bucket*
    rather than per sample (a burst of similar requests lands in a few buckets).
    """
    durations.sort()
    n = len(durations)
    lo = 0
    edges = EDGES
    while lo < n:
        i = bisect_right(edges, durations[lo])
        hi = n if i >= _LAST else bisect_left(durations, edges[i], lo)
        counts[i] += hi - lo
        lo = hi


def upper_bound(index: int) -> float:
    """Exclusive upper edge of bucket ``index`` (``inf`` for the overflow bucket)."""
    if index >= _LAST:
        return math.inf
    return EDGES[index] if index >= 0 else float(LOW_S * 2.0 ** (index / PER_OCTAVE))


def representative(index: int) -> float:
    """The value reported for a sample in bucket ``index``: geometric midpoint of its edges."""
    if index <= 0:
        return LOW_S
    if index >= _LAST:
        return float(HIGH_S)
    return float(LOW_S * 2.0 ** ((index - 0.5) / PER_OCTAVE))


def quantile(counts: Sequence[int], q: float) -> float | None:
    """Nearest-rank quantile ``q`` in ``[0, 1]`` in seconds, or None for an empty histogram."""
    return quantiles(counts, (q,))[0]


def quantiles(counts: Sequence[int], qs: Sequence[float]) -> list[float | None]:
    """Several nearest-rank quantiles from one pass (cumulative sums and bisects, all in C: the
    master computes four per worker and window for every snapshot)."""
    cumulative = list(accumulate(counts))
    total = cumulative[-1] if cumulative else 0
    if total <= 0:
        return [None] * len(qs)
    last = len(cumulative) - 1
    return [
        representative(min(last, bisect_left(cumulative, max(1, math.ceil(q * total))))) for q in qs
    ]


def merge(a: Sequence[int], b: Sequence[int]) -> list[int]:
    """Element-wise sum of two histograms of the same shape."""
    if len(a) != len(b):
        raise ValueError(f"histograms of {len(a)} and {len(b)} buckets")
    return list(map(add, a, b))


def subtract(a: Sequence[int], b: Sequence[int]) -> list[int]:
    """``a - b`` element-wise, clamped at zero (``b`` is an earlier copy of the same counters)."""
    if len(a) != len(b):
        raise ValueError(f"histograms of {len(a)} and {len(b)} buckets")
    out = list(map(sub, a, b))
    return out if min(out, default=0) >= 0 else [x if x > 0 else 0 for x in out]


def octave_bounds() -> list[tuple[int, float]]:
    """(bucket index, upper edge) at every power of two: exact cumulative ``le`` edges."""
    return [(i, upper_bound(i)) for i in range(0, REGULAR + 1, PER_OCTAVE)]
