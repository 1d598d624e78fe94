"""The scoreboard: one fixed-layout slot of shared memory per worker, written without locks.

Theory of operation
-------------------
The master creates one anonymous ``MAP_SHARED`` mapping (``mmap.mmap(-1, size)``) before it
forks anything; every worker inherits it. Slot ``i`` is written by exactly one process at a
time: the master (``reset``/``clear``) while no worker owns it, then the worker forked for it
(``writer(i)``, which also writes the worker's own pid: a zygote may fork it, so the master
learns the pid late). The master only reads a live slot (and may ``set_pid``).

Layout (native byte order, every field one 8-byte word, ``q`` = int64, ``d`` = float64)::

    header  (64 bytes)  magic b"CORRALSB", version, nslots, slot_stride, 4 words spare
    slot i  at 64 + i * slot_stride; slot_stride is a multiple of 64 so that two workers never
            write the same cache line (no false sharing between cores).

    word  field                 type  word  field                 type
       0  seq                   q       20  gc collections gen1   q
       1  pid                   q       21  gc collections gen2   q
       2  worker_id             q       22  gc pause s gen0       d
       3  generation            q       23  gc pause s gen1       d
       4  state (WorkerState)   q       24  gc pause s gen2       d
       5  started_at (mono)     d       25  request line length   q
       6  heartbeat (mono)      d    26-37  request line (96 B)   "METHOD /path", truncated
       7  reserved (0)          q   38-201  latency histogram     q x NBUCKETS (histogram.py)
    8-12  requests 1xx..5xx     q
      13  in flight             q
      14  open connections      q
      15  bytes in              q
      16  bytes out             q
      17  duration sum (s)      d
      18  current request start d     (meaningful while in flight > 0)
      19  gc collections gen0   q

Consistency: multi-word updates (``start_request``, ``finish_request``, GC records, ``reset``)
are bracketed by a seqlock: ``seq`` becomes odd before and even after. A reader copies the slot,
and accepts the copy when ``seq`` was even and unchanged across the copy. A writer preempted
inside its bracket keeps ``seq`` odd for a whole time slice, so after ``READ_RETRIES`` tries the
reader returns its last consistent copy of the same worker (stale by one update) or, failing
that, the torn copy, whose counters then disagree by one request (skew, never garbage: every
word is 8-byte aligned, so x86-64 and arm64 store it whole). The ordering argument is x86-64's
(stores and loads are not reordered with each other); on arm64 CPython emits no barriers, so a
copy that mixes two updates can rarely pass the check: counters skewed by one, nothing worse.
Single-word fields (heartbeat, state, connections) need no bracket. To keep the hot path at a
handful of stores, the total request count is not stored (it is the sum of words 8-12) and the
request start is not cleared at finish (the reader ignores it while nothing is in flight).

Timestamps are ``time.monotonic()``: CLOCK_MONOTONIC is system-wide on Linux, so the master can
compare a worker's heartbeat with its own clock.
"""

from __future__ import annotations

import gc
import mmap
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from corral.stats import histogram
from corral.stats.protocol import WorkerState

MAGIC = b"CORRALSB"
VERSION = 1
HEADER_BYTES = 64
REQUEST_LINE_BYTES = 96  # enough for "GET /api/v1/..." at a glance; Apache's scoreboard keeps 64
READ_RETRIES = 32  # a running writer holds seq odd ~1 µs; 32 copies (~100 µs) outlast that
STATUS_CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx")

SEQ, PID, WORKER_ID, GENERATION, STATE = 0, 1, 2, 3, 4
STARTED_AT, HEARTBEAT = 5, 6
RESERVED, STATUS0 = 7, 8
IN_FLIGHT, CONNECTIONS, BYTES_IN, BYTES_OUT = 13, 14, 15, 16
DURATION_SUM, REQUEST_START = 17, 18
GC_COUNT0, GC_PAUSE0 = 19, 22
LINE_LEN, LINE0 = 25, 26
HIST0 = LINE0 + REQUEST_LINE_BYTES // 8
SLOT_WORDS = HIST0 + histogram.NBUCKETS
SLOT_STRIDE = -(-SLOT_WORDS * 8 // 64) * 64

_LINE_OFFSET = LINE0 * 8


@dataclass(frozen=True, slots=True)
class SlotSnapshot:
    """A consistent copy of one slot, as the master sees it."""

    index: int
    pid: int
    worker_id: int
    generation: int
    state: WorkerState
    started_at: float
    heartbeat: float
    requests: int
    by_status: tuple[int, int, int, int, int]  # 1xx..5xx
    in_flight: int
    connections: int
    bytes_in: int
    bytes_out: int
    duration_sum_s: float
    request_start: float  # 0.0 when nothing is in flight
    request_line: str
    gc_collections: tuple[int, int, int]
    gc_pause_s: tuple[float, float, float]
    histogram: tuple[int, ...]

    @property
    def live(self) -> bool:
        """True while a worker owns the slot (booting, ready or draining)."""
        return self.state in (WorkerState.BOOTING, WorkerState.READY, WorkerState.DRAINING)


class ScoreboardSlot:
    """The worker's write side of one slot; implements ``corral.stats.protocol.SlotWriter``.

    Each call is a handful of integer/float stores through memoryviews cast once at
    construction: no locks, no system calls. The worker is the slot's only writer, so it keeps
    its counters in Python objects and only *stores* them into the mapping: a store through a
    memoryview costs ~27 ns where a read-modify-write (``q[i] += 1``) costs ~70 ns. One writer
    per slot and process: the mirrors start from the slot's values when the writer is made.
    """

    __slots__ = (
        "_b", "_bin", "_bout", "_d", "_dur", "_gc", "_gc_pause", "_hist", "_inflight", "_line",
        "_q", "_seq", "_status",
    )  # fmt: skip

    def __init__(self, q: memoryview[int], d: memoryview[float], b: memoryview[int]) -> None:
        self._q = q
        self._d = d
        self._b = b
        self._line = (b"", b"")  # (method, path) last written: most requests repeat it
        self._seq = q[SEQ] + (q[SEQ] & 1)  # an odd value would be a torn bracket: round up
        self._inflight = q[IN_FLIGHT]
        self._status = [q[STATUS0 + k] for k in range(5)]
        self._bin, self._bout, self._dur = q[BYTES_IN], q[BYTES_OUT], d[DURATION_SUM]
        self._hist = [q[HIST0 + k] for k in range(histogram.NBUCKETS)]
        self._gc = [q[GC_COUNT0 + g] for g in range(3)]
        self._gc_pause = [d[GC_PAUSE0 + g] for g in range(3)]

    def set_state(self, state: WorkerState) -> None:
        self._q[STATE] = int(state)

    def heartbeat(self, now: float) -> None:
        self._d[HEARTBEAT] = now

    def set_connections(self, open_connections: int) -> None:
        self._q[CONNECTIONS] = open_connections

    def start_request(self, now: float, method: bytes, path: bytes) -> None:
        # No seqlock here: these fields are single aligned words read on their own (the request
        # line is display-only and may show torn for one read); the bracket protects the
        # counters that must agree with each other, written in finish_request.
        q = self._q
        self._inflight = n = self._inflight + 1
        q[IN_FLIGHT] = n
        self._d[REQUEST_START] = now
        line = self._line
        if path != line[1] or method != line[0]:
            q[LINE_LEN] = _write_line(self._b, method, path)
            self._line = (method, path)

    def finish_request(
        self, now: float, status: int, duration_s: float, bytes_in: int, bytes_out: int
    ) -> None:
        q = self._q
        seq = self._seq
        q[SEQ] = seq + 1  # odd: an update is in progress
        cls = status // 100
        k = cls - 1 if 1 <= cls <= 5 else 4
        st = self._status
        st[k] += 1
        q[STATUS0 + k] = st[k]
        self._inflight = n = self._inflight - 1
        q[IN_FLIGHT] = n
        if bytes_in:  # most requests have no body: skip a shared-memory write
            self._bin += bytes_in
            q[BYTES_IN] = self._bin
        self._bout += bytes_out
        q[BYTES_OUT] = self._bout
        self._dur += duration_s
        self._d[DURATION_SUM] = self._dur
        i = histogram.bucket_index(duration_s)
        h = self._hist
        h[i] += 1
        q[HIST0 + i] = h[i]
        self._seq = seq + 2
        q[SEQ] = seq + 2  # even again: consistent

    def record_gc(self, generation: int, pause_s: float) -> None:
        """Count one collection of ``generation`` (0..2) that paused the worker ``pause_s``."""
        g = generation if 0 <= generation <= 2 else 2
        q = self._q
        seq = self._seq
        q[SEQ] = seq + 1
        self._gc[g] += 1
        q[GC_COUNT0 + g] = self._gc[g]
        self._gc_pause[g] += pause_s
        self._d[GC_PAUSE0 + g] = self._gc_pause[g]
        self._seq = seq + 2
        q[SEQ] = seq + 2


def _write_line(b: memoryview[int], method: bytes, path: bytes) -> int:
    """Store ``METHOD path`` truncated to REQUEST_LINE_BYTES; returns the stored length."""
    m = len(method)
    if m >= REQUEST_LINE_BYTES:
        method = method[: REQUEST_LINE_BYTES - 1]
        m = len(method)
    b[_LINE_OFFSET : _LINE_OFFSET + m] = method
    b[_LINE_OFFSET + m] = 0x20
    room = REQUEST_LINE_BYTES - m - 1
    p = len(path)
    if p > room:
        path = path[:room]
        p = room
    start = _LINE_OFFSET + m + 1
    b[start : start + p] = path
    return m + 1 + p


def install_gc_callbacks(slot: ScoreboardSlot) -> Callable[[], None]:
    """Count GC collections and pauses into ``slot`` (call in the worker, after fork).

    Returns a function that removes the callback again.
    """
    started = [0.0]
    clock = time.perf_counter

    def on_gc(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            started[0] = clock()
        else:
            slot.record_gc(int(info["generation"]), clock() - started[0])

    gc.callbacks.append(on_gc)

    def uninstall() -> None:
        if on_gc in gc.callbacks:
            gc.callbacks.remove(on_gc)

    return uninstall


class Scoreboard:
    """The shared mapping: created by the master before forking, inherited by every worker."""

    def __init__(self, mm: mmap.mmap, nslots: int) -> None:
        self._mm = mm
        self.nslots = nslots
        self._words: memoryview[int] = memoryview(mm).cast("q")
        self._views: list[memoryview[Any]] = [self._words]
        self._last_good: dict[int, bytes] = {}

    @classmethod
    def create(cls, nslots: int) -> Scoreboard:
        """Map ``nslots`` zeroed slots (anonymous and shared, so forked children see writes)."""
        if nslots < 1:
            raise ValueError(f"a scoreboard needs at least one slot, got {nslots}")
        mm = mmap.mmap(-1, HEADER_BYTES + nslots * SLOT_STRIDE)
        header = memoryview(mm)[:HEADER_BYTES]
        header[:8] = MAGIC
        words = header[8:32].cast("q")
        words[0], words[1], words[2] = VERSION, nslots, SLOT_STRIDE
        words.release()
        header.release()
        return cls(mm, nslots)

    @property
    def size(self) -> int:
        """Bytes mapped."""
        return len(self._mm)

    def _slot_view(self, index: int) -> memoryview[int]:
        if not 0 <= index < self.nslots:
            raise IndexError(f"slot {index} out of range 0..{self.nslots - 1}")
        start = HEADER_BYTES + index * SLOT_STRIDE
        return memoryview(self._mm)[start : start + SLOT_WORDS * 8]

    def writer(self, index: int, *, claim_pid: bool = True) -> ScoreboardSlot:
        """The write side of slot ``index``, called in the worker that owns it.

        With ``claim_pid`` the calling process writes its own pid into the slot: when a zygote
        forks the worker, the master learns the pid only later (``set_pid`` does it from there).
        """
        raw = self._slot_view(index)
        q: memoryview[int] = raw.cast("q")
        d: memoryview[float] = raw.cast("d")
        self._views += (raw, q, d)
        if claim_pid:
            q[PID] = os.getpid()
        return ScoreboardSlot(q, d, raw)

    def reset(self, index: int, pid: int, worker_id: int, generation: int, now: float) -> None:
        """Master: zero slot ``index`` and stamp it for a new worker (state BOOTING)."""
        self._stamp(index, pid, worker_id, generation, now, WorkerState.BOOTING)

    def set_pid(self, index: int, pid: int) -> None:
        """Master, right after fork: record the child's pid (``reset`` ran before the fork, so
        the child's first writes are never wiped; no worker ever writes this word)."""
        with self._slot_view(index) as raw, raw.cast("q") as q:
            q[PID] = pid

    def clear(self, index: int) -> None:
        """Master: zero slot ``index`` and mark it EMPTY (after retiring its worker)."""
        self._stamp(index, 0, 0, 0, 0.0, WorkerState.EMPTY)

    def _stamp(
        self, index: int, pid: int, worker_id: int, gen: int, now: float, state: WorkerState
    ) -> None:
        raw = self._slot_view(index)
        q: memoryview[int] = raw.cast("q")
        d: memoryview[float] = raw.cast("d")
        try:
            seq = q[SEQ]
            q[SEQ] = seq + 1
            raw[8:] = bytes(len(raw) - 8)
            q[PID], q[WORKER_ID], q[GENERATION], q[STATE] = pid, worker_id, gen, int(state)
            d[STARTED_AT] = d[HEARTBEAT] = now
            q[SEQ] = seq + 2
        finally:
            for view in (q, d, raw):
                view.release()

    def read(self, index: int) -> SlotSnapshot:
        """Master: a consistent copy of slot ``index`` (see the seqlock note above)."""
        return _decode(index, self._copy(index))

    def read_all(self) -> list[SlotSnapshot]:
        """Every slot, in index order."""
        return [self.read(i) for i in range(self.nslots)]

    def _copy(self, index: int) -> bytes:
        if not 0 <= index < self.nslots:
            raise IndexError(f"slot {index} out of range 0..{self.nslots - 1}")
        start = HEADER_BYTES + index * SLOT_STRIDE
        end = start + SLOT_WORDS * 8
        mm, words, seq_at = self._mm, self._words, start // 8
        # seq is read on its own before and after the copy: memcpy may copy a slot in any order,
        # so the seq word inside the copy proves nothing.
        data = b""
        for _ in range(READ_RETRIES):
            before = words[seq_at]
            data = mm[start:end]
            if not before & 1 and words[seq_at] == before:
                self._last_good[index] = data
                return data
        return self._fallback(index, data)

    def _fallback(self, index: int, torn: bytes) -> bytes:
        """The writer was preempted inside its bracket: prefer the last consistent copy of the
        same worker (a few ms stale) over a torn one (skewed by one update)."""
        good = self._last_good.get(index)
        if good is not None and _identity(good) == _identity(torn):
            return good
        return torn

    def close(self) -> None:
        """Release every view and unmap (only once no writer of this process is used again)."""
        for v in reversed(self._views):
            v.release()
        self._views.clear()
        self._mm.close()


def _identity(data: bytes) -> tuple[bytes, bytes]:
    """The words ``reset`` stamps for one worker life: worker_id, generation and started_at (not
    pid: a worker forked by a zygote claims its pid after the master's reset)."""
    return data[WORKER_ID * 8 : STATE * 8], data[STARTED_AT * 8 : HEARTBEAT * 8]


def _decode(index: int, data: bytes) -> SlotSnapshot:
    mv = memoryview(data)
    q: memoryview[int] = mv.cast("q")
    d: memoryview[float] = mv.cast("d")
    line_len = max(0, min(q[LINE_LEN], REQUEST_LINE_BYTES))
    line = data[_LINE_OFFSET : _LINE_OFFSET + line_len].decode("latin-1")
    by_status = (q[STATUS0], q[STATUS0 + 1], q[STATUS0 + 2], q[STATUS0 + 3], q[STATUS0 + 4])
    busy = q[IN_FLIGHT] > 0
    try:
        state = WorkerState(q[STATE])
    except ValueError:
        state = WorkerState.EMPTY
    return SlotSnapshot(
        index=index,
        pid=q[PID],
        worker_id=q[WORKER_ID],
        generation=q[GENERATION],
        state=state,
        started_at=d[STARTED_AT],
        heartbeat=d[HEARTBEAT],
        requests=sum(by_status),
        by_status=by_status,
        in_flight=max(0, q[IN_FLIGHT]),
        connections=max(0, q[CONNECTIONS]),
        bytes_in=q[BYTES_IN],
        bytes_out=q[BYTES_OUT],
        duration_sum_s=d[DURATION_SUM],
        request_start=d[REQUEST_START] if busy else 0.0,
        request_line=line if busy else "",
        gc_collections=(q[GC_COUNT0], q[GC_COUNT0 + 1], q[GC_COUNT0 + 2]),
        gc_pause_s=(d[GC_PAUSE0], d[GC_PAUSE0 + 1], d[GC_PAUSE0 + 2]),
        histogram=tuple(q[HIST0 : HIST0 + histogram.NBUCKETS]),
    )
