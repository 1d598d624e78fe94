"""Fleet: totals survive worker replacement, rates from deltas, events, memory bookkeeping."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from corral.lifecycle import RecycleReason
from corral.stats.fleet import RETIRE_REASONS, Counters, Fleet, RateTracker
from corral.stats.protocol import WorkerState
from corral.stats.scoreboard import RecordingSlot, Scoreboard


@pytest.fixture
def board() -> Iterator[Scoreboard]:
    sb = Scoreboard.create(2)
    yield sb
    sb.close()


def serve(w: RecordingSlot, n: int, status: int = 200, duration: float = 0.002) -> None:
    for _ in range(n):
        w.start_request(0.0, b"GET", b"/")
        w.finish_request(0.0, status, duration, 10, 100)
    w.flush()  # as the worker loop does after each iteration


def spawn(board: Scoreboard, index: int, pid: int, gen: int, now: float) -> RecordingSlot:
    board.reset(index, pid, index, gen, now)
    w = board.writer(index, claim_pid=False)
    w.set_state(WorkerState.READY)
    return w


def test_totals_never_go_backwards_across_replacement(board: Scoreboard) -> None:
    fleet = Fleet(board, now=0.0)
    w0 = spawn(board, 0, 100, 0, 0.0)
    w1 = spawn(board, 1, 101, 0, 0.0)
    serve(w0, 30)
    serve(w1, 5, status=500)
    first = fleet.snapshot(1.0)
    assert first.totals.requests == 35 and first.totals.by_status[4] == 5

    fleet.retire(board.read(0), "max-requests", now=1.5)
    mid = fleet.snapshot(1.6)  # retired but not yet cleared: counted once, not twice
    assert mid.totals.requests == 35
    assert [w.slot.pid for w in mid.workers] == [101]

    w0 = spawn(board, 0, 102, 1, 2.0)
    serve(w0, 3)
    last = fleet.snapshot(3.0)
    assert last.totals.requests == 38
    assert sum(last.totals.histogram) == 38
    assert last.by_slot[0].requests == 33  # per slot: retired + live
    assert last.recycles["max-requests"] == 1 and last.restarts == 0


def test_retire_twice_counts_once_and_unknown_reason_is_refused(board: Scoreboard) -> None:
    fleet = Fleet(board, now=0.0)
    serve(spawn(board, 0, 100, 0, 0.0), 4)
    snap = board.read(0)
    fleet.retire(snap, "crash")
    fleet.retire(snap, "crash")
    assert fleet.retired.requests == 4 and fleet.restarts == 1
    assert fleet.recycles[RecycleReason.CRASH] == 1
    with pytest.raises(ValueError, match="unknown retire reason"):
        fleet.retire(snap, "bored")


def test_every_reason_is_exported_even_at_zero(board: Scoreboard) -> None:
    snap = Fleet(board, now=0.0).snapshot(0.0)
    assert set(snap.recycles) == set(RETIRE_REASONS) and not any(snap.recycles.values())


def test_unplanned_reasons_are_restarts(board: Scoreboard) -> None:
    fleet = Fleet(board, now=0.0)
    for gen, reason in enumerate(("crash", "timeout", "memory", "reload")):
        spawn(board, 0, 200 + gen, 0, float(gen))  # same slot and generation, new life
        fleet.retire(board.read(0), reason)
    assert fleet.restarts == 2 and sum(fleet.recycles.values()) == 4
    assert [e.kind for e in fleet.events] == ["retire"] * 4


def test_memory_is_kept_per_pid_and_dropped_on_retire(board: Scoreboard) -> None:
    fleet = Fleet(board, now=0.0)
    spawn(board, 0, 100, 0, 0.0)
    fleet.set_memory(
        100,
        {"rss": 10, "pss": 5, "uss": 3, "shared": 7, "swap": 0, "junk": 1},
        {"cow_shared_pages": 2, "cow_copied_pages": 1},
    )
    view = fleet.snapshot(0.0).workers[0]
    assert view.memory == {"rss": 10, "pss": 5, "uss": 3, "shared": 7, "swap": 0}
    assert view.cow == {"cow_shared_pages": 2, "cow_copied_pages": 1}
    fleet.retire(board.read(0), "memory")
    spawn(board, 0, 100, 1, 1.0)  # same pid reused: the old sample must not come back
    assert fleet.snapshot(1.0).workers[0].memory is None


def test_rates_come_from_deltas_over_the_window(board: Scoreboard) -> None:
    fleet = Fleet(board, now=0.0, window_s=2.0)
    w = spawn(board, 0, 100, 0, 0.0)
    for t in range(1, 6):
        serve(w, 100, duration=0.004)
        serve(w, 10, status=404, duration=0.004)
        snap = fleet.snapshot(float(t))
    assert snap.window.rps == pytest.approx(110.0)
    assert snap.window.errors_4xx_per_s == pytest.approx(10.0)
    assert snap.window.p50_s == pytest.approx(0.004, rel=0.05)
    assert snap.workers[0].window.rps == pytest.approx(110.0)
    assert len(snap.series) == 4 and snap.series[-1]["rps"] == pytest.approx(110.0)


def test_rate_tracker_merges_samples_closer_than_the_minimum_interval() -> None:
    tracker = RateTracker(window_s=5.0, points=10)
    c = Counters()
    tracker.observe(0.0, c)
    c.requests = 10
    tracker.observe(0.1, c)  # too soon after t=0: ignored
    c.requests = 20
    tracker.observe(1.0, c)
    assert len(tracker.series()) == 1
    assert tracker.series()[0]["rps"] == pytest.approx(20.0)
    for t in range(2, 40):
        tracker.observe(float(t), c)
    assert len(tracker.series()) == 9  # bounded history


def test_full_collections_are_marked_on_the_timeline(board: Scoreboard) -> None:
    fleet = Fleet(board, now=0.0)
    w = spawn(board, 1, 300, 0, 0.0)
    fleet.snapshot(0.0)
    w.record_gc(2, 0.01)
    w.record_gc(0, 0.0001)
    w.flush()
    fleet.snapshot(1.0)
    gc_events = [e for e in fleet.events if e.kind == "gc"]
    assert len(gc_events) == 1 and gc_events[0].worker == 1 and gc_events[0].t == 1.0


def test_event_log_is_bounded(board: Scoreboard) -> None:
    fleet = Fleet(board, now=0.0)
    for i in range(1000):
        fleet.record_event(float(i), "spawn", 0, "x")
    assert 0 < len(fleet.events) <= 500 and fleet.events[-1].t == 999.0


def test_exited_but_unreaped_worker_still_counts(board: Scoreboard) -> None:
    """Between a worker's exit and the master reaping it, its requests stay in the totals."""
    fleet = Fleet(board, now=0.0)
    w0 = spawn(board, 0, 100, 0, 0.0)
    serve(w0, 40)
    w0.set_state(WorkerState.EXITED)  # the worker is gone; the master has not retired it yet
    snap = fleet.snapshot(1.0)
    assert snap.totals.requests == 40
    assert snap.workers == ()  # not shown as a live worker
    fleet.retire(board.read(0), "max-requests", 1.5)
    board.clear(0)
    assert fleet.snapshot(2.0).totals.requests == 40  # counted once, not twice
