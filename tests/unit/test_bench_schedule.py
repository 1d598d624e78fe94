"""corral.bench.schedule: the open model's arrivals, a pure function of rate and clock."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from corral.bench.config import LoadConfig, prepare
from corral.bench.runner import make_specs
from corral.bench.schedule import arrival_time, arrivals_due, split_evenly

rates = st.floats(min_value=0.5, max_value=200_000.0, allow_nan=False)


def test_arrivals_at_constant_spacing() -> None:
    assert [arrival_time(j, 200.0, 10.0) for j in range(3)] == pytest.approx([10.0, 10.005, 10.010])
    assert arrivals_due(9.999, 200.0, 10.0) == 0
    assert arrivals_due(10.0, 200.0, 10.0) == 1
    assert arrivals_due(12.0, 200.0, 10.0) == 401  # 0 .. 2 s inclusive of both ends


@given(rate=rates, j=st.integers(min_value=0, max_value=10**6), t0=st.floats(0.0, 1e6))
def test_each_arrival_is_due_exactly_at_its_time(rate: float, j: int, t0: float) -> None:
    at = arrival_time(j, rate, t0)
    assert arrivals_due(at, rate, t0) == j + 1
    earlier = at - 0.5 / rate  # half a gap before: the previous ones only
    assert arrivals_due(earlier, rate, t0) == j


@given(
    rate=rates,
    nprocs=st.integers(min_value=1, max_value=8),
    elapsed=st.floats(min_value=0.0, max_value=100.0),
)
def test_processes_interleave_into_one_stream(rate: float, nprocs: int, elapsed: float) -> None:
    t0 = 1000.0
    now = t0 + elapsed
    total = sum(arrivals_due(now, rate, t0, i, nprocs) for i in range(nprocs))
    assert total == arrivals_due(now, rate, t0)


def test_process_shares_are_disjoint_and_complete() -> None:
    rate, t0, nprocs = 1000.0, 0.0, 3
    times = sorted(arrival_time(j, rate, t0, i, nprocs) for i in range(nprocs) for j in range(10))
    assert times == pytest.approx([k / rate for k in range(30)])


@given(total=st.integers(0, 10**6), parts=st.integers(1, 64))
def test_split_evenly(total: int, parts: int) -> None:
    shares = split_evenly(total, parts)
    assert len(shares) == parts
    assert sum(shares) == total
    assert max(shares) - min(shares) <= 1
    assert shares == sorted(shares, reverse=True)


def test_make_specs_splits_the_run() -> None:
    config = LoadConfig(
        urls=("http://127.0.0.1:1/",), connections=5, requests=11, procs=2, rate=100.0
    )
    specs = make_specs(prepare(config), t0=50.0)
    assert [s.connections for s in specs] == [3, 2]
    assert [s.requests for s in specs] == [6, 5]
    assert [s.index for s in specs] == [0, 1]
    assert all(s.nprocs == 2 and s.rate == 100.0 and s.t0 == 50.0 for s in specs)
    assert all(s.end is None and s.hard_end == 50.0 + config.hard_deadline_s() for s in specs)


def test_make_specs_duration_bound() -> None:
    config = LoadConfig(urls=("http://127.0.0.1:1/",), duration_s=3.0)
    (spec,) = make_specs(prepare(config), t0=10.0)
    assert spec.end == 13.0
    assert spec.requests is None
