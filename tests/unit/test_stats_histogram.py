"""Latency buckets: edges, and quantile error against known distributions."""

from __future__ import annotations

import math
import random
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from corral.stats import histogram as h

BOUND = h.MAX_RELATIVE_ERROR + 1e-9


def exact_quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q * len(ordered))) - 1]


def build(values: list[float]) -> list[int]:
    counts = [0] * h.NBUCKETS
    for v in values:
        counts[h.bucket_index(v)] += 1
    return counts


def test_error_bound_is_under_five_percent() -> None:
    assert 0.04 < h.MAX_RELATIVE_ERROR < 0.045
    assert h.HIGH_S > 60.0


@given(st.floats(min_value=h.LOW_S, max_value=h.HIGH_S * 0.999999))
def test_every_in_range_value_is_reported_within_the_bound(v: float) -> None:
    i = h.bucket_index(v)
    assert 1 <= i <= h.REGULAR
    assert h.upper_bound(i - 1) <= v * (1 + 1e-12)
    assert v < h.upper_bound(i) * (1 + 1e-12)
    assert abs(h.representative(i) - v) / v <= BOUND


def test_out_of_range_values_clamp() -> None:
    assert h.bucket_index(0.0) == 0
    assert h.bucket_index(h.LOW_S / 2) == 0
    assert h.bucket_index(3600.0) == h.NBUCKETS - 1
    assert h.upper_bound(h.NBUCKETS - 1) == math.inf
    assert h.quantile([0] * h.NBUCKETS, 0.5) is None


@pytest.mark.parametrize(
    "name",
    ["lognormal", "exponential", "uniform-log", "bimodal"],
)
def test_quantiles_match_known_distributions(name: str) -> None:
    rng = random.Random(1234)
    draws: dict[str, Callable[[], float]] = {
        "lognormal": lambda: rng.lognormvariate(math.log(0.002), 0.8),
        "exponential": lambda: h.LOW_S + rng.expovariate(1 / 0.010),
        "uniform-log": lambda: math.exp(rng.uniform(math.log(1e-4), math.log(30.0))),
        "bimodal": lambda: rng.choice((0.0004, 0.25)) * rng.uniform(0.9, 1.1),
    }
    draw = draws[name]
    values = [draw() for _ in range(20000)]
    counts = build(values)
    for q in (0.5, 0.9, 0.99, 0.999):
        got = h.quantile(counts, q)
        want = exact_quantile(values, q)
        assert got is not None
        assert abs(got - want) / want <= BOUND, (name, q, got, want)


def test_merge_and_subtract_are_inverse() -> None:
    a = build([0.001, 0.002, 0.5])
    b = build([0.001, 7.0])
    assert h.subtract(h.merge(a, b), b) == a
    assert h.subtract(a, h.merge(a, b)) == [0] * h.NBUCKETS


def test_octave_bounds_are_exact_bucket_edges() -> None:
    bounds = h.octave_bounds()
    assert bounds[0] == (0, h.LOW_S)
    for index, edge in bounds:
        assert h.bucket_index(edge * 0.99999) <= index < h.bucket_index(edge * 1.00001)


@given(
    st.lists(
        st.one_of(
            st.floats(min_value=0.0, max_value=3 * h.HIGH_S),
            st.sampled_from([*h.EDGES[:5], *h.EDGES[-3:], h.LOW_S, h.HIGH_S, 0.0]),
        ),
        max_size=300,
    )
)
def test_batch_counting_equals_one_sample_at_a_time(values: list[float]) -> None:
    """The worker's per-flush path (sort + bisect per distinct bucket) counts every sample into
    the bucket ``bucket_index`` gives it, edges included."""
    counts = [0] * h.NBUCKETS
    h.count_into(counts, list(values))
    assert counts == build(values)


@given(st.lists(st.integers(min_value=0, max_value=50), min_size=h.NBUCKETS, max_size=h.NBUCKETS))
def test_one_pass_quantiles_equal_a_walk_of_the_buckets(counts: list[int]) -> None:
    """``quantiles`` (cumulative sums + bisect) against the plain definition: the first bucket
    at which the running count reaches the nearest rank."""
    qs = (0.0, 0.5, 0.9, 0.99, 0.999, 1.0)
    total = sum(counts)
    want: list[float | None] = []
    for q in qs:
        if total == 0:
            want.append(None)
            continue
        rank, seen = max(1, math.ceil(q * total)), 0
        for i, n in enumerate(counts):
            seen += n
            if seen >= rank:
                want.append(h.representative(i))
                break
    assert h.quantiles(counts, qs) == want
