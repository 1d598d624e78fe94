"""The scoreboard slot: layout, single-writer updates, reads across a real fork."""

from __future__ import annotations

import gc
import os
import time
from collections.abc import Iterator

import pytest

from corral.stats import histogram
from corral.stats.protocol import SlotWriter, WorkerState
from corral.stats.scoreboard import (
    REQUEST_LINE_BYTES,
    SLOT_STRIDE,
    Scoreboard,
    ScoreboardSlot,
    install_gc_callbacks,
)

CHILD_DEADLINE_S = 20.0


@pytest.fixture
def board() -> Iterator[Scoreboard]:
    sb = Scoreboard.create(3)
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
    assert isinstance(writer, ScoreboardSlot)
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
    s = board.read(0)
    assert s.state == WorkerState.READY and s.heartbeat == 12.5 and s.connections == 3
    assert s.requests == 1 and s.by_status == (0, 0, 0, 1, 0)
    assert (s.in_flight, s.bytes_in, s.bytes_out) == (0, 111, 222)
    assert s.duration_sum_s == pytest.approx(0.2)
    assert s.histogram[histogram.bucket_index(0.2)] == 1
    assert s.request_line == ""  # idle


def test_odd_status_codes_count_as_5xx(board: Scoreboard) -> None:
    w = board.writer(0)
    for status in (99, 600, 0):
        w.start_request(0.0, b"GET", b"/")
        w.finish_request(0.0, status, 0.001, 0, 0)
    assert board.read(0).by_status == (0, 0, 0, 0, 3)


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
    board.writer(0).finish_request(0.0, 200, 0.001, 1, 1)
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
        if s.requests == sum(s.histogram) == s.bytes_in and s.in_flight in (0, 1):
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
        s = board.read(0)
        assert s.gc_collections[2] == before + 2
        assert s.gc_pause_s[2] > 0.0
    finally:
        uninstall()
    gc.collect()
    assert board.read(0).gc_collections[2] == before + 2
