"""The master's stop sequence (corral.master.stopping) and the health answer
(corral.worker.health): pure decisions, driven with a fake clock."""

from __future__ import annotations

import pytest

from corral.master.stopping import Step, StopSequence
from corral.worker import health

pytestmark = pytest.mark.timeout(10)


def _seq(delay: float) -> StopSequence:
    return StopSequence(shutdown_delay_s=delay, graceful_timeout_s=10.0, fast_grace_s=2.0)


def test_without_a_delay_the_drain_starts_at_once_listeners_first() -> None:
    seq = _seq(0.0)
    assert seq.begin(100.0, fast=False) == [Step.CLOSE_LISTENERS, Step.DRAIN]
    assert seq.begin(100.5, fast=False) == []  # a second TERM changes nothing
    assert seq.tick(110.9) == []
    assert seq.tick(111.1) == [Step.KILL]


def test_a_lame_duck_serves_with_health_down_then_drains() -> None:
    seq = _seq(5.0)
    assert seq.begin(100.0, fast=False) == [Step.STOP_ZYGOTES, Step.HEALTH_DOWN]
    assert seq.tick(104.9) == []  # still serving and accepting
    assert seq.tick(105.0) == [Step.CLOSE_LISTENERS, Step.DRAIN]
    assert seq.tick(105.1) == []
    assert seq.tick(116.1) == [Step.KILL]


def test_a_fast_stop_cuts_the_lame_duck_short() -> None:
    seq = _seq(5.0)
    seq.begin(100.0, fast=False)
    assert seq.begin(101.0, fast=True) == [Step.CLOSE_LISTENERS, Step.STOP_NOW]
    assert seq.tick(106.0) == [Step.KILL]  # 2 s grace + 1, and no drain step any more


def test_the_health_answer() -> None:
    assert health.answer(b"/healthz", "", False) is None  # off
    assert health.answer(b"/", "/healthz", False) is None  # for the app
    assert health.answer(b"/healthz", "/healthz", False) is health.SERVING
    assert health.answer(b"/healthz", "/healthz", True) is health.DRAINING
    assert health.DRAINING.status_line == "503 Service Unavailable"
    for bad in ("healthz", "/a b", "/x?y", "/é"):
        with pytest.raises(ValueError):
            health.check_path(bad)
    health.check_path("")
    health.check_path("/-/ready")
