"""The worker's own memory check, fed synthetic readings and a fake clock; the master's side of
it (alert_decision, the exit code), and the RLIMIT_AS ceiling in a real forked child."""

from __future__ import annotations

import os
import time

import pytest

from corral.master import exitcodes, policy
from corral.memory.recycle import RecycleSettings, alert_decision
from corral.stats.protocol import NullSlot
from corral.worker import memguard
from corral.worker.memguard import CHECK_EVERY_S, MemoryGuard, statm_reader

MIB = 1024 * 1024


class AlertSlot(NullSlot):
    def __init__(self) -> None:
        self.alerts: list[int] = []

    def set_memory_alert(self, estimate: int) -> None:
        self.alerts.append(estimate)


class Readings:
    """A process with ``rss`` resident of which ``rss - value`` stays shared: growing ``rss``
    grows the exact figure too; ``copied`` adds private pages RSS does not show (CoW)."""

    def __init__(self, rss: int, value: int) -> None:
        self.rss, self.shared, self.copied, self.exact_reads = rss, rss - value, 0, 0

    def read_rss(self) -> int:
        return self.rss

    def read_value(self) -> int:
        self.exact_reads += 1
        return self.rss - self.shared + self.copied


def guard(limit_mib: int, r: Readings, slot: AlertSlot) -> MemoryGuard:
    return MemoryGuard(limit_mib * MIB, slot, r.read_rss, r.read_value)


def test_growth_past_the_limit_alerts_and_past_1_25x_stops_once() -> None:
    r, slot = Readings(rss=100 * MIB, value=20 * MIB), AlertSlot()
    g = guard(64, r, slot)
    assert not g.check(0.0) and slot.alerts == []  # baseline: 20 MiB private
    r.rss += 40 * MIB  # estimate 60: under
    assert not g.check(0.01) and slot.alerts == []
    r.rss += 10 * MIB  # 70: over the limit -> alert
    assert not g.check(0.02) and slot.alerts == [70 * MIB]
    r.rss += 10 * MIB  # 80 = exactly 1.25x: still only an alert
    assert not g.check(0.03) and slot.alerts[-1] == 80 * MIB
    r.rss += 1 * MIB  # past 1.25x: stop taking requests
    assert g.check(0.04)
    assert g.exit_code == exitcodes.MEMORY_LIMIT == memguard.MEMORY_LIMIT_EXIT
    assert g.due == float("inf")  # checked no more: the worker drains and exits


def test_the_check_is_rate_limited_by_due() -> None:
    r, slot = Readings(rss=10 * MIB, value=10 * MIB), AlertSlot()
    g = guard(64, r, slot)
    g.check(5.0)
    assert g.due == pytest.approx(5.0 + CHECK_EVERY_S)


def test_near_the_limit_the_baseline_is_reread_at_most_once_a_second() -> None:
    r, slot = Readings(rss=100 * MIB, value=20 * MIB), AlertSlot()
    g = guard(64, r, slot)
    g.check(0.0)
    r.rss += 40 * MIB  # estimate 60 > 0.85 * 64: exact figure re-read
    r.copied = 2 * MIB  # copy-on-write copies the estimate could not see
    g.check(0.01)
    assert r.exact_reads == 2
    r.rss += 4 * MIB  # 60 + 2 + 4 = 66: over, seen thanks to the new baseline
    g.check(0.02)
    assert r.exact_reads == 2 and slot.alerts == [66 * MIB]
    g.check(1.5)
    assert r.exact_reads == 3


def test_falling_back_under_the_limit_clears_the_alert() -> None:
    r, slot = Readings(rss=100 * MIB, value=20 * MIB), AlertSlot()
    g = guard(64, r, slot)
    g.check(0.0)
    r.rss += 50 * MIB
    g.check(0.01)
    r.rss -= 20 * MIB  # freed
    assert not g.check(0.02)
    assert slot.alerts == [70 * MIB, 0]


def test_a_worker_born_over_its_limit_turns_its_check_off() -> None:
    r, slot = Readings(rss=100 * MIB, value=90 * MIB), AlertSlot()
    g = guard(64, r, slot)
    assert not g.check(0.0)
    assert g.due == float("inf") and slot.alerts == [] and g.exit_code == 0


def test_an_unreadable_proc_file_is_no_alert() -> None:
    def broken() -> int:
        raise OSError("gone")

    g = MemoryGuard(64 * MIB, AlertSlot(), broken, broken)
    assert not g.check(0.0) and g.exit_code == 0


def test_no_limit_means_never_due() -> None:
    g = MemoryGuard.for_worker(0, "uss", 0, NullSlot())
    assert g.due == float("inf")


def test_statm_reader_follows_this_process() -> None:
    rss = statm_reader()
    before = rss()
    block = bytearray(32 * MIB)
    block[:: os.sysconf("SC_PAGE_SIZE")] = b"x" * len(block[:: os.sysconf("SC_PAGE_SIZE")])
    assert rss() - before >= 30 * MIB
    del block


def test_alert_decision_confirms_with_the_masters_sample() -> None:
    s = RecycleSettings(limit_bytes=64 * MIB, jitter=0.0, min_lifetime_s=60.0)
    assert alert_decision(s, 1, 0, 100 * MIB) is None  # no alert
    assert alert_decision(s, 1, 70 * MIB, 60 * MIB) is None  # sample contradicts it
    assert alert_decision(s, 1, 70 * MIB, None) is None  # nothing to confirm with
    d = alert_decision(s, 1, 70 * MIB, 71 * MIB)  # young, one sample: replaced anyway
    assert d is not None and (d.worker_id, d.reason, d.value, d.limit) == (1, "memory", 71 * MIB,
                                                                            64 * MIB)  # fmt: skip
    stopped = alert_decision(s, 2, 90 * MIB, None, stopped=True)  # it will exit regardless
    assert stopped is not None and stopped.value == 90 * MIB


def test_exiting_with_memory_limit_is_a_recycle_not_a_crash() -> None:
    info = policy.decode_status(exitcodes.MEMORY_LIMIT << 8)
    assert policy.stopped_itself(info) == "memory"
    assert policy.stopped_itself(policy.decode_status(0)) is None
    assert policy.stopped_itself(policy.ExitInfo(None, exitcodes.MEMORY_LIMIT)) is None


def test_the_hard_limit_makes_a_big_allocation_fail_in_a_forked_child() -> None:
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through its exit code
        code = 1
        try:
            memguard.set_address_space_limit(64 * MIB)
            try:
                bytearray(256 * MIB)
            except MemoryError:
                code = 0
            else:
                code = 2
            small = bytearray(8 * MIB)  # what fits in the headroom still works
            code = code if len(small) == 8 * MIB else 3
        finally:
            os._exit(code)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            assert os.waitstatus_to_exitcode(status) == 0
            return
        time.sleep(0.01)
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    raise AssertionError("child did not exit in time")
