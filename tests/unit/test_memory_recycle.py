"""The recycling policies, fed synthetic samples and a fake clock."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from corral.lifecycle import RecycleReason
from corral.memory.recycle import (
    Metric,
    RecycleDecision,
    RecyclePolicy,
    RecycleSettings,
    WorkerSample,
    jitter_unit,
    jittered_max_requests,
    max_requests_due,
)

MIB = 1024 * 1024
LIMIT = 100 * MIB


def settings(**overrides: object) -> RecycleSettings:
    base: dict[str, object] = {
        "limit_bytes": LIMIT,
        "consecutive": 3,
        "min_lifetime_s": 60.0,
        "jitter": 0.0,
        "seed": 1,
    }
    base.update(overrides)
    return RecycleSettings(**base)  # type: ignore[arg-type]


class Feeder:
    """A fake clock that feeds one sample per worker per tick."""

    def __init__(self, policy: RecyclePolicy, now: float = 1000.0) -> None:
        self.policy = policy
        self.now = now

    def tick(self, values: dict[int, int], started_at: float = 0.0, step: float = 5.0) -> None:
        self.now += step
        for wid, value in values.items():
            self.policy.observe(WorkerSample(wid, started_at, value, self.now))

    def decide(self, replacing: tuple[int, ...] = ()) -> list[RecycleDecision]:
        return self.policy.decide(self.now, replacing)


def test_due_after_n_consecutive_over_limit_samples() -> None:
    feeder = Feeder(RecyclePolicy(settings()))
    for _ in range(2):
        feeder.tick({1: LIMIT + 1})
        assert feeder.decide() == []
    feeder.tick({1: LIMIT + 1})
    assert feeder.decide() == [RecycleDecision(1, RecycleReason.MEMORY, LIMIT + 1, LIMIT, 3)]


def test_a_sample_under_the_limit_resets_the_streak() -> None:
    feeder = Feeder(RecyclePolicy(settings()))
    feeder.tick({1: LIMIT + 1})
    feeder.tick({1: LIMIT + 1})
    feeder.tick({1: LIMIT})  # at the limit is not over it
    assert feeder.policy.streak(1) == 0
    feeder.tick({1: LIMIT + 1})
    feeder.tick({1: LIMIT + 1})
    assert feeder.decide() == []
    feeder.tick({1: LIMIT + 1})
    assert [d.worker_id for d in feeder.decide()] == [1]


def test_the_same_sample_twice_counts_once() -> None:
    policy = RecyclePolicy(settings())
    sample = WorkerSample(1, 0.0, LIMIT * 2, 500.0)
    for _ in range(5):
        policy.observe(sample)
    policy.observe(WorkerSample(1, 0.0, LIMIT * 2, 499.0))  # older: ignored
    assert policy.streak(1) == 1


def test_min_lifetime_holds_a_young_worker() -> None:
    feeder = Feeder(RecyclePolicy(settings(min_lifetime_s=60.0)), now=0.0)
    for _ in range(5):  # samples at 5..25 s
        feeder.tick({1: LIMIT * 2})
    assert feeder.decide() == []
    feeder.now = 59.9
    assert feeder.decide() == []
    feeder.now = 60.0
    assert [d.worker_id for d in feeder.decide()] == [1]


def test_one_recycle_at_a_time_furthest_over_first() -> None:
    feeder = Feeder(RecyclePolicy(settings()))
    for _ in range(3):
        feeder.tick({1: LIMIT + MIB, 2: LIMIT + 30 * MIB, 3: LIMIT + 10 * MIB})
    assert [d.worker_id for d in feeder.decide()] == [2]
    assert feeder.decide(replacing=(2,)) == []
    feeder.policy.forget(2)
    assert [d.worker_id for d in feeder.decide()] == [3]


def test_a_new_worker_under_a_reused_id_starts_a_new_streak() -> None:
    feeder = Feeder(RecyclePolicy(settings()))
    for _ in range(3):
        feeder.tick({1: LIMIT * 2}, started_at=0.0)
    feeder.tick({1: LIMIT * 2}, started_at=feeder.now)
    assert feeder.policy.streak(1) == 1


def test_forget_drops_the_worker() -> None:
    feeder = Feeder(RecyclePolicy(settings(consecutive=1)))
    feeder.tick({7: LIMIT * 2})
    feeder.policy.forget(7)
    assert feeder.decide() == []


def test_jitter_lowers_limits_differently_per_worker() -> None:
    s = settings(jitter=0.2, seed=42)
    limits = {s.limit_for(wid) for wid in range(50)}
    assert len(limits) > 40
    assert all(LIMIT * 0.8 <= lim <= LIMIT for lim in limits)
    assert s.limit_for(3) == settings(jitter=0.2, seed=42).limit_for(3)  # deterministic
    assert s.limit_for(3) != settings(jitter=0.2, seed=43).limit_for(3)


def test_jittered_limit_decides() -> None:
    s = settings(jitter=0.5, consecutive=1)
    wid = next(w for w in range(100) if s.limit_for(w) < LIMIT * 0.9)
    feeder = Feeder(RecyclePolicy(s))
    feeder.tick({wid: int(LIMIT * 0.9)})
    assert [d.worker_id for d in feeder.decide()] == [wid]
    assert feeder.decide()[0].limit == s.limit_for(wid)


@given(seed=st.integers(), wid=st.integers(min_value=0, max_value=2**31))
def test_jitter_unit_in_range(seed: int, wid: int) -> None:
    assert 0.0 <= jitter_unit(seed, wid) < 1.0


@pytest.mark.parametrize(
    "bad",
    [
        {"limit_bytes": 0},
        {"consecutive": 0},
        {"min_lifetime_s": -1.0},
        {"jitter": 1.0},
        {"jitter": -0.1},
    ],
)
def test_settings_validation(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        settings(**bad)


def test_metric_values() -> None:
    assert Metric("uss") is Metric.USS
    assert {m.value for m in Metric} == {"uss", "pss", "rss"}


@given(
    base=st.integers(min_value=1, max_value=10**6),
    jitter=st.integers(min_value=0, max_value=1000),
    wid=st.integers(min_value=0, max_value=10**6),
)
def test_jittered_max_requests_bounds(base: int, jitter: int, wid: int) -> None:
    limit = jittered_max_requests(base, jitter, seed=9, worker_id=wid)
    assert base <= limit <= base + jitter


def test_jittered_max_requests_spreads_and_disables() -> None:
    limits = {jittered_max_requests(1000, 50, seed=1, worker_id=w) for w in range(200)}
    assert len(limits) > 30
    assert min(limits) <= 1005 and max(limits) >= 1045  # reaches near both ends
    assert jittered_max_requests(0, 50, seed=1, worker_id=1) == 0
    assert jittered_max_requests(1000, 0, seed=1, worker_id=1) == 1000


def test_max_requests_due() -> None:
    assert not max_requests_due(999, 1000)
    assert max_requests_due(1000, 1000)
    assert not max_requests_due(10**9, 0)  # 0: no limit


def test_far_over_the_limit_is_due_at_once_but_not_before_min_lifetime() -> None:
    from corral.memory.recycle import URGENT_FACTOR

    feeder = Feeder(RecyclePolicy(settings()))
    feeder.tick({1: int(LIMIT * (URGENT_FACTOR + 0.05)), 2: int(LIMIT * 1.05)})
    assert [d.worker_id for d in feeder.decide()] == [1]  # 2 is only marginally over: streak
    young = Feeder(RecyclePolicy(settings()), now=0.0)
    young.tick({1: LIMIT * 2}, started_at=0.0, step=1.0)
    assert young.decide() == []  # still protected by the minimum lifetime
