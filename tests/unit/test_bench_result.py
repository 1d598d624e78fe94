"""corral.bench.result: HDR buckets, percentiles, merging processes and seconds, rates."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from corral.bench.result import (
    HDR_HIGHEST_US,
    ProcSummary,
    SecondStats,
    add_counts,
    bucket_counts,
    bucket_top_us,
    bucket_us,
    build_result,
    histogram_from_counts,
    new_histogram,
    percentile_us,
    rate_per_s,
)

values = st.integers(min_value=1, max_value=HDR_HIGHEST_US)


@given(value=values)
def test_bucket_is_hdr_lowest_equivalent(value: int) -> None:
    hist = new_histogram()
    assert bucket_us(value) == hist.get_lowest_equivalent_value(value)
    assert bucket_top_us(bucket_us(value)) == hist.get_highest_equivalent_value(value)


def test_bucket_clamps_out_of_range() -> None:
    assert bucket_us(0) == 1
    assert bucket_us(-5) == 1
    assert bucket_us(10 * HDR_HIGHEST_US) == bucket_us(HDR_HIGHEST_US)


def test_exact_below_2048_us() -> None:
    assert [bucket_us(v) for v in (1, 999, 2047)] == [1, 999, 2047]
    assert bucket_us(2049) == 2048


@given(
    samples=st.lists(values, min_size=1, max_size=300),
    pct=st.sampled_from([0.0, 1.0, 50.0, 66.0, 90.0, 99.0, 99.9, 100.0]),
)
def test_percentile_matches_hdrhistogram(samples: list[int], pct: float) -> None:
    hist = new_histogram()
    exact: dict[int, int] = {}
    for v in samples:
        hist.record_value(v)
        exact[v] = exact.get(v, 0) + 1
    assert percentile_us(bucket_counts(exact), pct) == hist.get_value_at_percentile(pct)


def test_percentile_of_nothing_is_zero() -> None:
    assert percentile_us({}, 99.0) == 0


def test_merged_counts_equal_added_histograms() -> None:
    rng = random.Random(7)
    a = {rng.randint(1, 5_000_000): rng.randint(1, 5) for _ in range(500)}
    b = {rng.randint(1, 5_000_000): rng.randint(1, 5) for _ in range(500)}
    merged = add_counts(bucket_counts(a), bucket_counts(b))
    expected = histogram_from_counts(bucket_counts(a))
    expected.add(histogram_from_counts(bucket_counts(b)))
    got = histogram_from_counts(merged)
    assert got.get_total_count() == expected.get_total_count() == sum(a.values()) + sum(b.values())
    for pct in (50, 90, 99, 99.9, 100):
        assert got.get_value_at_percentile(pct) == expected.get_value_at_percentile(pct)


def test_second_stats_merge() -> None:
    one = SecondStats(3, requests=10, bytes_read=100, errors={"reset": 1}, latency_us={5: 10})
    two = SecondStats(3, requests=5, bytes_read=50, errors={"reset": 2, "connect": 1})
    two.latency_us = {5: 2, 900: 3}
    one.merge(two)
    assert (one.requests, one.bytes_read) == (15, 150)
    assert one.errors == {"reset": 3, "connect": 1}
    assert one.latency_us == {5: 12, 900: 3}
    assert one.error_total() == 4
    assert one.latency_ms(100) == pytest.approx(0.9)


def test_proc_summary_merge() -> None:
    a = ProcSummary(requests=3, errors={"timeout": 1}, statuses={200: 3}, max_lag_s=0.5)
    a.ended, a.sample = 10.0, b"first"
    b = ProcSummary(requests=4, errors={"timeout": 2}, statuses={200: 2, 503: 2}, ended=12.0)
    b.sample, b.abandoned, b.dispatched, b.scheduled = b"second", 2, 5, 6
    a.merge(b)
    assert a.requests == 7
    assert a.errors == {"timeout": 3}
    assert a.statuses == {200: 5, 503: 2}
    assert (a.ended, a.max_lag_s, a.abandoned, a.dispatched, a.scheduled) == (12.0, 0.5, 2, 5, 6)
    assert a.sample == b"first"


def test_rate_per_s() -> None:
    assert rate_per_s(500, 2.0) == 250.0
    assert rate_per_s(5, 0.0) == 0.0


def test_build_result_derives_totals() -> None:
    summary = ProcSummary(requests=30, errors={"non_2xx": 2, "reset": 1}, ended=102.0)
    seconds = {
        1: SecondStats(1, requests=20, latency_us={1000: 20}),
        0: SecondStats(0, requests=10, latency_us={2000: 10}),
    }
    result = build_result(summary, seconds, 100.0, 8, 2, None, [])
    assert [s.second for s in result.series] == [0, 1]
    assert result.duration_s == 2.0
    assert result.rps == 15.0
    assert result.failed == 1
    assert result.error_total == 3
    assert result.errors == {"connect": 0, "reset": 1, "timeout": 0, "protocol": 0, "non_2xx": 2}
    assert result.histogram.get_total_count() == 30
    assert result.latency_ms(50) == pytest.approx(1.0)
    assert result.max_latency_ms() == pytest.approx(2.0)
