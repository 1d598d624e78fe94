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
"""

from __future__ import annotations

import math
from collections.abc import Sequence

LOW_S = 50e-6
PER_OCTAVE = 8
OCTAVES = 20.25  # 50 µs * 2**20.25 ~= 62.3 s, just above a 60 s request timeout
REGULAR = int(OCTAVES * PER_OCTAVE)  # 162 regular buckets
NBUCKETS = REGULAR + 2  # + underflow + overflow
HIGH_S = LOW_S * 2.0 ** (REGULAR / PER_OCTAVE)
MAX_RELATIVE_ERROR = 2.0 ** (1.0 / (2 * PER_OCTAVE)) - 1.0  # ~0.0443

_INV_LOW = 1.0 / LOW_S
_LAST = NBUCKETS - 1


def bucket_index(seconds: float) -> int:
    """The bucket a duration falls in (hot path: one log2, no allocation)."""
    if seconds < LOW_S:
        return 0
    i = int(math.log2(seconds * _INV_LOW) * PER_OCTAVE) + 1
    return i if i < _LAST else _LAST


def upper_bound(index: int) -> float:
    """Exclusive upper edge of bucket ``index`` (``inf`` for the overflow bucket)."""
    if index >= _LAST:
        return math.inf
    return float(LOW_S * 2.0 ** (index / PER_OCTAVE))


def representative(index: int) -> float:
    """The value reported for a sample in bucket ``index``: geometric midpoint of its edges."""
    if index <= 0:
        return LOW_S
    if index >= _LAST:
        return float(HIGH_S)
    return float(LOW_S * 2.0 ** ((index - 0.5) / PER_OCTAVE))


def quantile(counts: Sequence[int], q: float) -> float | None:
    """Nearest-rank quantile ``q`` in ``[0, 1]`` in seconds, or None for an empty histogram."""
    total = sum(counts)
    if total <= 0:
        return None
    rank = max(1, math.ceil(q * total))
    seen = 0
    for i, n in enumerate(counts):
        seen += n
        if seen >= rank:
            return representative(i)
    return representative(len(counts) - 1)


def merge(a: Sequence[int], b: Sequence[int]) -> list[int]:
    """Element-wise sum of two histograms of the same shape."""
    return [x + y for x, y in zip(a, b, strict=True)]


def subtract(a: Sequence[int], b: Sequence[int]) -> list[int]:
    """``a - b`` element-wise, clamped at zero (``b`` is an earlier copy of the same counters)."""
    return [max(0, x - y) for x, y in zip(a, b, strict=True)]


def octave_bounds() -> list[tuple[int, float]]:
    """(bucket index, upper edge) at every power of two: exact cumulative ``le`` edges."""
    return [(i, upper_bound(i)) for i in range(0, REGULAR + 1, PER_OCTAVE)]
