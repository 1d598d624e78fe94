"""The scoreboard slot: layout, single-writer updates, reads across a real fork."""

from __future__ import annotations

import gc
import os
import time
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from corral.stats import histogram
from corral.stats.protocol import SlotWriter, WorkerState
from corral.stats.scoreboard import (
    NATIVE_AVAILABLE,
    PUBLISH_AFTER_S,
    REQUEST_LINE_BYTES,
    SLOT_STRIDE,
    Scoreboard,
    ScoreboardSlot,
    install_gc_callbacks,
)

CHILD_DEADLINE_S = 20.0


@pytest.fixture(params=["native", "python"])
def board(request: pytest.FixtureRequest) -> Iterator[Scoreboard]:
    """Every test runs against both writers: the C recorder and the pure-Python fallback."""
    sb = Scoreboard.create(3)
    if request.param == "native":
        if not NATIVE_AVAILABLE:
            if os.environ.get("CI"):
                pytest.fail("corral.stats._fastslot was not built (is a C compiler installed?)")
            pytest.skip("corral.stats._fastslot was not built")
    else:
        sb.native = False
    yield sb
    sb.close()


def wait_child(pid: int) -> int:
    """waitpid with a deadline (never hang the suite on a stuck child)."""
    deadline = time.monotonic() + CHILD_DEADLINE_S
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.01)
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    raise AssertionError("child did not exit in time")


def test_slot_writer_satisfies_the_protocol(board: Scoreboard) -> None:
    writer: SlotWriter = board.writer(0)
    assert isinstance(writer, ScoreboardSlot) != board.native
    assert SLOT_STRIDE % 64 == 0


def test_reset_stamps_identity_and_zeroes_counters(board: Scoreboard) -> None:
    w = board.writer(1)
    board.reset(1, 4321, 7, 2, 100.0)
    w.start_request(100.5, b"GET", b"/x")
    w.finish_request(101.0, 200, 0.01, 10, 20)
    board.reset(1, 5555, 7, 3, 200.0)
    s = board.read(1)
    assert (s.pid, s.worker_id, s.generation, s.state) == (5555, 7, 3, WorkerState.BOOTING)
    assert (s.started_at, s.heartbeat) == (200.0, 200.0)
    assert s.requests == 0 and sum(s.histogram) == 0 and s.in_flight == 0
    board.clear(1)
    assert board.read(1).state == WorkerState.EMPTY and not board.read(1).live


def test_request_cycle_updates_every_counter(board: Scoreboard) -> None:
    board.reset(0, 1, 0, 0, 0.0)
    w = board.writer(0)
    w.set_state(WorkerState.READY)
    w.heartbeat(12.5)
    w.set_connections(3)
    w.start_request(13.0, b"POST", b"/api/items")
    s = board.read(0)
    assert s.in_flight == 1 and s.request_line == "POST /api/items" and s.request_start == 13.0
    w.finish_request(13.2, 404, 0.2, 111, 222)
    if not board.native:
        assert board.read(0).requests == 0  # batched until the loop publishes it
    w.flush()
    s = board.read(0)
    assert s.state == WorkerState.READY and s.heartbeat == 12.5 and s.connections == 3
    assert s.requests == 1 and s.by_status == (0, 0, 0, 1, 0)
    assert (s.in_flight, s.bytes_in, s.bytes_out) == (0, 111, 222)
    assert s.duration_sum_s == pytest.approx(0.2)
    assert s.histogram[histogram.bucket_index(0.2)] == 1
    assert s.request_line == ""  # idle


def test_odd_status_codes_count_as_5xx(board: Scoreboard) -> None:
    w = board.writer(0)
    for status in (99, 600, 0, 2**70):
        w.start_request(0.0, b"GET", b"/")
        w.finish_request(0.0, status, 0.001, 0, 0)
    w.flush()
    assert board.read(0).by_status == (0, 0, 0, 0, 4)


def test_request_line_is_truncated(board: Scoreboard) -> None:
    w = board.writer(2)
    w.start_request(1.0, b"GET", b"/" + b"a" * 500)
    line = board.read(2).request_line
    assert len(line) == REQUEST_LINE_BYTES and line.startswith("GET /aaa")
    w.start_request(1.0, b"GET", b"/short")
    assert board.read(2).request_line == "GET /short"


def test_pid_is_claimed_by_the_writer_or_set_by_the_master(board: Scoreboard) -> None:
    board.reset(0, 0, 0, 0, 0.0)
    board.writer(0)
    assert board.read(0).pid == os.getpid()
    board.set_pid(0, 999)
    assert board.read(0).pid == 999
    board.writer(0, claim_pid=False)
    assert board.read(0).pid == 999


def test_slots_are_independent(board: Scoreboard) -> None:
    w = board.writer(0)
    w.finish_request(0.0, 200, 0.001, 1, 1)
    w.flush()
    assert board.read(0).requests == 1
    assert board.read(1).requests == 0 and board.read(2).requests == 0
    with pytest.raises(IndexError):
        board.writer(3)
    with pytest.raises(ValueError):
        Scoreboard.create(0)


def test_counts_written_in_a_forked_child_are_read_exactly(board: Scoreboard) -> None:
    board.reset(1, 0, 1, 0, time.monotonic())  # before the fork, as the master does
    statuses = [200] * 500 + [301] * 40 + [404] * 30 + [503] * 7 + [101] * 3
    pid = os.fork()
    if pid == 0:  # child: write and leave without running the parent's atexit handlers
        try:
            w = board.writer(1)
            w.set_state(WorkerState.READY)
            for i, status in enumerate(statuses):
                w.start_request(time.monotonic(), b"GET", b"/n")
                w.finish_request(time.monotonic(), status, 0.001 * (1 + i % 50), 10, 100)
                if i % 7 == 0:  # batches of every size the loop may make
                    w.flush()
            w.flush()
            w.set_state(WorkerState.EXITED)
        finally:
            os._exit(0)
    assert wait_child(pid) == 0
    s = board.read(1)
    assert s.state == WorkerState.EXITED and s.pid == pid  # the child claimed its slot
    assert s.requests == len(statuses) == sum(s.histogram)
    assert s.by_status == (3, 500, 40, 30, 7)
    assert (s.bytes_in, s.bytes_out, s.in_flight) == (10 * len(statuses), 100 * len(statuses), 0)


def test_reads_during_concurrent_writes_are_consistent(board: Scoreboard) -> None:
    """The seqlock: a read never mixes two updates (histogram == requests == bytes).

    A writer preempted inside its bracket (this box is loaded) makes the reader fall back to its
    last consistent copy, so the parent reads once before the child starts writing.
    """
    r, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(wfd)
            w = board.writer(0)
            os.read(r, 2)
            for _ in range(8000):
                w.start_request(0.0, b"GET", b"/")
                w.finish_request(0.0, 200, 0.003, 1, 1)
                w.start_request(0.0, b"GET", b"/")
                w.finish_request(0.0, 500, 0.3, 1, 1)
                w.flush()
                for _ in range(50):  # the application's share of a request (a few µs here)
                    pass
        finally:
            os._exit(0)
    os.close(r)
    assert board.read(0).requests == 0
    os.write(wfd, b"go")
    os.close(wfd)
    consistent = 0
    for _ in range(2000):
        s = board.read(0)
        # one flush's bracket: every counter moves together
        n = s.requests
        if n == sum(s.histogram) == s.bytes_in and s.in_flight in (0, 1, 2):
            consistent += 1
    assert wait_child(pid) == 0
    assert consistent == 2000
    final = board.read(0)
    assert final.requests == 16000 and final.by_status[1] == final.by_status[4] == 8000


def test_gc_callbacks_count_collections(board: Scoreboard) -> None:
    w = board.writer(0)
    uninstall = install_gc_callbacks(w)
    try:
        before = board.read(0).gc_collections[2]
        gc.collect()
        gc.collect()
        w.flush()
        s = board.read(0)
        assert s.gc_collections[2] == before + 2
        assert s.gc_pause_s[2] > 0.0
    finally:
        uninstall()
    gc.collect()
    w.flush()
    assert board.read(0).gc_collections[2] == before + 2


def test_a_batch_is_published_whole_and_exactly(board: Scoreboard) -> None:
    """One flush of a mixed batch: every class, byte and bucket counted once."""
    w = board.writer(0)
    mixed = [(200, 0.00004), (200, 0.0001), (404, 0.0001), (503, 2.5), (101, 70.0), (301, 0.02)]
    for status, seconds in mixed:
        w.start_request(0.0, b"GET", b"/")
        w.finish_request(0.0, status, seconds, 3, 5)
    w.flush()
    s = board.read(0)
    assert s.by_status == (1, 2, 1, 1, 1) and s.in_flight == 0
    assert (s.bytes_in, s.bytes_out) == (18, 30)
    assert s.duration_sum_s == pytest.approx(sum(t for _, t in mixed))
    want = [0] * histogram.NBUCKETS
    for _, seconds in mixed:
        want[histogram.bucket_index(seconds)] += 1
    assert list(s.histogram) == want


def test_single_word_readers_agree_with_a_full_read(board: Scoreboard) -> None:
    board.reset(2, 77, 2, 0, 5.0)
    w = board.writer(2, claim_pid=False)
    w.set_state(WorkerState.DRAINING)
    w.heartbeat(42.25)
    for status in (200, 204, 404, 500):
        w.start_request(0.0, b"GET", b"/")
        w.finish_request(0.0, status, 0.001, 0, 0)
    w.set_memory_alert(99 << 20)
    w.flush()
    s = board.read(2)
    assert (board.heartbeat(2), board.state(2), board.requests(2)) == (42.25, s.state, 4)
    assert board.memory_alert(2) == s.memory_alert == 99 << 20
    assert board.memory_alert(0) == 0
    assert s.heartbeat == 42.25 and s.requests == 4
    assert board.state(0) == WorkerState.EMPTY and board.requests(0) == 0
    with pytest.raises(IndexError):
        board.heartbeat(3)


def test_publish_stores_a_batch_when_due_and_says_when_otherwise(board: Scoreboard) -> None:
    board.native = False  # the C recorder stores every request at once: nothing to publish
    w = board.writer(0)

    def flushed() -> int:
        return sum(board.read(0).histogram)

    assert w.publish(100.0) is None  # nothing batched
    w.start_request(100.0, b"GET", b"/")
    w.finish_request(100.0, 200, 0.001, 0, 0)
    assert w.publish(100.0) is None and flushed() == 1  # the first after an idle spell: at once
    w.start_request(100.001, b"GET", b"/")
    w.finish_request(100.001, 200, 0.001, 0, 0)
    wait = w.publish(100.001)
    assert wait == pytest.approx(PUBLISH_AFTER_S - 0.001)
    assert flushed() == 1 and board.read(0).requests == 1
    assert w.publish(100.0 + PUBLISH_AFTER_S) is None and flushed() == 2
    w.record_gc(0, 0.001)
    assert w.publish(100.0 + PUBLISH_AFTER_S + 0.001) is not None  # collections batch too
    assert w.publish(101.0) is None and board.read(0).gc_collections[0] == 1


def test_a_worker_killed_before_its_flush_loses_that_batch_only(board: Scoreboard) -> None:
    """What SIGKILL (the OOM killer) costs the counters: with the C recorder nothing; with the
    Python fallback the batch not yet published, and nothing already published."""
    board.reset(1, 0, 1, 0, time.monotonic())
    pid = os.fork()
    if pid == 0:
        try:
            w = board.writer(1)
            for status in [200] * 90 + [404] * 7 + [503] * 3:
                w.start_request(0.0, b"GET", b"/")
                w.finish_request(0.0, status, 0.001, 0, 10)
            w.flush()
            w.start_request(0.0, b"GET", b"/")
            w.finish_request(0.0, 200, 0.001, 0, 10)
        finally:
            os.kill(os.getpid(), 9)
    os.waitpid(pid, 0)
    s = board.read(1)
    if board.native:
        assert s.requests == sum(s.histogram) == 101 and s.by_status == (0, 91, 0, 7, 3)
        assert s.bytes_out == 1010 and s.in_flight == 0
    else:
        assert s.requests == sum(s.histogram) == 100 and s.by_status == (0, 90, 0, 7, 3)
        assert s.bytes_out == 1000 and s.in_flight == 1  # the lost one still counts as started


@given(
    st.lists(
        st.tuples(
            st.sampled_from([b"GET", b"POST", b"M" * 120]),
            st.sampled_from([b"/", b"/a/b?c", b"/" + b"p" * 200]),
            st.sampled_from([0, 99, 100, 200, 204, 301, 404, 499, 503, 599, 600, 999, 1000, -1]),
            st.one_of(st.floats(0.0, 100.0), st.sampled_from(histogram.EDGES[:3])),
            st.integers(0, 10_000),
            st.integers(0, 10_000),
        ),
        max_size=40,
    ),
    st.lists(st.tuples(st.integers(-1, 3), st.floats(0.0, 1.0)), max_size=4),
)
def test_the_c_recorder_writes_what_the_python_slot_writes(
    requests: list[tuple[bytes, bytes, int, float, int, int]], gcs: list[tuple[int, float]]
) -> None:
    """Both writers, fed the same calls, leave identical slots (the Python one after a flush)."""
    if not NATIVE_AVAILABLE:
        if os.environ.get("CI"):
            pytest.fail("corral.stats._fastslot was not built (is a C compiler installed?)")
        pytest.skip("corral.stats._fastslot was not built")
    sb = Scoreboard.create(2)
    try:
        native = sb.writer(0)
        sb.native = False
        python = sb.writer(1)
        for w in (native, python):
            w.set_state(WorkerState.READY)
            w.heartbeat(7.5)
            w.set_connections(4)
            w.set_memory_alert(70 << 20)
            for method, path, status, seconds, bytes_in, bytes_out in requests:
                w.start_request(1.25, method, path)
                w.finish_request(1.5, status, seconds, bytes_in, bytes_out)
            for generation, pause in gcs:
                w.record_gc(generation, pause)
            w.start_request(2.0, b"GET", b"/last")  # one left in flight
            w.flush()
        a, b = sb.read(0), sb.read(1)
        assert a.duration_sum_s == pytest.approx(b.duration_sum_s)
        assert a.gc_pause_s == pytest.approx(b.gc_pause_s)
        same = ("requests", "by_status", "in_flight", "connections", "bytes_in", "bytes_out",
                "request_start", "request_line", "gc_collections", "histogram", "state",
                "heartbeat", "memory_alert")  # fmt: skip
        assert {f: getattr(a, f) for f in same} == {f: getattr(b, f) for f in same}
    finally:
        sb.close()
