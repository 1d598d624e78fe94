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
       7  memory alert (bytes)  q   38-201  latency histogram     q x NBUCKETS (histogram.py)
    8-12  requests 1xx..5xx     q
      13  in flight             q
      14  open connections      q
      15  bytes in              q
      16  bytes out             q
      17  duration sum (s)      d
      18  current request start d     (meaningful while in flight > 0)
      19  gc collections gen0   q
     202  open WebSockets       q     (ASGI workers: ``Scoreboard.set_websockets``)

Consistency: multi-word updates (the worker's ``flush`` of the requests and collections it
batched since the last one, and the master's ``reset``) are bracketed by a seqlock: ``seq``
becomes odd before and even after. A reader copies the slot, and accepts the copy when ``seq``
was even and unchanged across the copy. A writer preempted inside its bracket keeps ``seq`` odd
for a whole time slice, so after ``READ_RETRIES`` tries the reader returns its last consistent
copy of the same worker (stale by one flush) or, failing that, the torn copy, whose counters
then disagree by one batch (skew, not garbage: every word is 8-byte aligned and memcpy moves
aligned words whole on x86-64 and arm64). The ordering argument is x86-64's (stores and loads
are not reordered with each other); on arm64 CPython emits no barriers, so a copy that mixes two
updates can rarely pass the check: counters skewed by one batch, nothing worse. Single-word
fields (heartbeat, state, connections, request start, memory alert, and in flight as
``start_request`` raises it) need no bracket. The memory alert is the worker's own estimate of
its memory once it found itself over ``--max-worker-memory-mib`` (0 while under; see
``corral.worker.memguard``): the master reads it every tick and starts a replacement.
To keep the hot path short, the total request count is not stored
(it is the sum of words 8-12) and the request start is not cleared at finish (the reader
ignores it while nothing is in flight).

Two writers implement the worker's side: ``_fastslot.Recorder`` (C, built with the package when a
compiler is present, the default) stores each request event at once inside the bracket; the
pure-Python ``ScoreboardSlot`` (the fallback, and the reference the tests compare the C one
against) batches finished requests as its docstring says.

Timestamps are ``time.monotonic()``: CLOCK_MONOTONIC is system-wide on Linux, so the master can
compare a worker's heartbeat with its own clock.
"""

from __future__ import annotations

import gc
import mmap
import os
import time
from array import array
from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from corral.stats import histogram
from corral.stats.protocol import SlotWriter, WorkerState

try:  # the slot's write side in C, built with the package when a compiler is present
    from corral.stats import _fastslot  # type: ignore[attr-defined, unused-ignore]
except ImportError:  # pragma: no cover - exercised by installs without a compiler
    _fastslot = None

NATIVE_AVAILABLE = _fastslot is not None

MAGIC = b"CORRALSB"
VERSION = 1
HEADER_BYTES = 64
REQUEST_LINE_BYTES = 96  # enough for "GET /api/v1/..." at a glance; Apache's scoreboard keeps 64
READ_RETRIES = 32  # a running writer holds seq odd ~1 µs; 32 copies (~100 µs) outlast that
STATUS_CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx")

SEQ, PID, WORKER_ID, GENERATION, STATE = 0, 1, 2, 3, 4
STARTED_AT, HEARTBEAT = 5, 6
MEMORY_ALERT, STATUS0 = 7, 8
IN_FLIGHT, CONNECTIONS, BYTES_IN, BYTES_OUT = 13, 14, 15, 16
DURATION_SUM, REQUEST_START = 17, 18
GC_COUNT0, GC_PAUSE0 = 19, 22
LINE_LEN, LINE0 = 25, 26
HIST0 = LINE0 + REQUEST_LINE_BYTES // 8
WEBSOCKETS = HIST0 + histogram.NBUCKETS  # open WebSockets (the ASGI worker; set_websockets)
SLOT_WORDS = WEBSOCKETS + 1
SLOT_STRIDE = -(-SLOT_WORDS * 8 // 64) * 64

_LINE_OFFSET = LINE0 * 8
_EDGES = histogram.EDGES
_ALL = slice(None)  # a prebuilt [:]: no allocation inside a flush's bracket
PUBLISH_AFTER_S = 0.005  # how old a batch may grow before ``publish`` stores it
# status code -> the word of its class (1xx..5xx); anything else (0, 600-999) counts as 5xx
_STATUS_WORD = [STATUS0 + (c // 100 - 1 if 100 <= c < 600 else 4) for c in range(1000)]


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
    memory_alert: int  # bytes the worker estimated when over its memory limit; 0 while under
    websockets: int  # open WebSocket connections (ASGI workers)
    gc_collections: tuple[int, int, int]
    gc_pause_s: tuple[float, float, float]
    histogram: tuple[int, ...]

    @property
    def live(self) -> bool:
        """True while a worker owns the slot (booting, ready or draining)."""
        return self.state in (WorkerState.BOOTING, WorkerState.READY, WorkerState.DRAINING)


class ScoreboardSlot:
    """The worker's write side of one slot; implements ``corral.stats.protocol.SlotWriter``.

    No locks, no system calls. What must be seen at once is stored at once: state, heartbeat,
    open connections, and at ``start_request`` the in-flight count, start time and request line
    (a hung request must show in the slot). A finished request is batched: ``finish_request``
    appends the tuple of its arguments to a list, nothing more. After each round of events
    the loop calls ``publish(now)``, which runs ``flush`` once ``PUBLISH_AFTER_S`` (5 ms) has
    passed since the last one (at once after an idle spell) and otherwise says how long until
    then, so the loop wakes up in time. ``flush`` (also run before exit) transposes the batch
    with one ``zip``, counts and sums its columns in C (``count``, ``sum``; the histogram by
    ``histogram.count_into``: a sort and two bisects per distinct bucket) and stores the words
    that changed inside one seqlock bracket: one status word for a batch of one status class,
    the histogram (one word for a batch of one request, else a memcpy from an ``array('q')``
    mirror), the duration sum, in flight and the byte counts. A busy worker (hello world:
    ~30k requests/s) flushes once per ~150 requests, so a finished request costs one list
    append where it cost a dozen stores into shared memory, at any number of connections per
    worker. Readers see finished requests at most ~5 ms late; an idle worker's figures are
    exact; a worker killed by a signal it cannot handle (SIGKILL, the OOM killer) loses its
    last batch: at most 5 ms of requests. One writer per slot and process: the mirrors start
    from the slot's values when the writer is made.
    """

    __slots__ = (
        "_b", "_bin", "_bout", "_d", "_dur", "_finished", "_gc", "_gc_dirty", "_gc_pause",
        "_hist", "_hist_view", "_inflight", "_method", "_path", "_published_at", "_q", "_seq",
        "_words",
    )  # fmt: skip

    def __init__(self, q: memoryview[int], d: memoryview[float], b: memoryview[int]) -> None:
        self._q = q
        self._d = d
        self._b = b
        self._method, self._path = b"", b""  # the request line last written: most repeat it
        self._seq = q[SEQ] + (q[SEQ] & 1)  # an odd value would be a torn bracket: round up
        # the status-class counters, indexed by their word in the slot (see _STATUS_WORD)
        self._words = [q[w] if STATUS0 <= w < STATUS0 + 5 else 0 for w in range(STATUS0 + 5)]
        # the histogram, mirrored in an array of the slot's layout: a batch's flush is a memcpy
        self._hist_view = q[HIST0 : HIST0 + histogram.NBUCKETS]
        self._hist = array("q", self._hist_view)
        self._inflight = q[IN_FLIGHT]
        self._bin, self._bout, self._dur = q[BYTES_IN], q[BYTES_OUT], d[DURATION_SUM]
        self._published_at = 0.0
        self._finished: list[tuple[float, int, float, int, int]] = []
        self._gc = [q[GC_COUNT0 + g] for g in range(3)]
        self._gc_pause = [d[GC_PAUSE0 + g] for g in range(3)]
        self._gc_dirty = False

    def set_state(self, state: WorkerState) -> None:
        self._q[STATE] = int(state)

    def heartbeat(self, now: float) -> None:
        self._d[HEARTBEAT] = now

    def set_connections(self, open_connections: int) -> None:
        self._q[CONNECTIONS] = open_connections

    def set_memory_alert(self, estimate: int) -> None:
        """The worker's memory estimate once over its limit (0: under it again)."""
        self._q[MEMORY_ALERT] = estimate

    def start_request(self, now: float, method: bytes, path: bytes) -> None:
        # No seqlock here: these fields are single aligned words read on their own (the request
        # line is display-only and may show torn for one read); the bracket protects the
        # counters that must agree with each other, written in flush.
        q = self._q
        self._inflight = n = self._inflight + 1
        q[IN_FLIGHT] = n
        self._d[REQUEST_START] = now
        if path != self._path or method != self._method:
            q[LINE_LEN] = _write_line(self._b, method, path)
            self._method, self._path = method, path

    def finish_request(self, *record: Any) -> None:
        """``(now, status, duration_s, bytes_in, bytes_out)`` as ``SlotWriter`` has them: the
        tuple the call builds anyway is kept as it is, and folded in at the next flush."""
        self._finished.append(record)  # type: ignore[arg-type]

    def record_gc(self, generation: int, pause_s: float) -> None:
        """Count one collection of ``generation`` (0..2) that paused the worker ``pause_s``
        (seen by readers after the next ``flush``)."""
        g = generation if 0 <= generation <= 2 else 2
        self._gc[g] += 1
        self._gc_pause[g] += pause_s
        self._gc_dirty = True

    def publish(self, now: float) -> float | None:
        """Store the batch once ``PUBLISH_AFTER_S`` has passed since the last store (at once
        for a worker that was idle that long); else say how long until then."""
        if not self._finished and not self._gc_dirty:
            return None
        wait = self._published_at + PUBLISH_AFTER_S - now
        if wait > 0.0:
            return wait
        self._published_at = now
        self.flush()
        return None

    def flush(self) -> None:
        """Store the requests finished (and collections counted) since the last store."""
        records = self._finished
        n = len(records)
        if not n and not self._gc_dirty:
            return
        q, d = self._q, self._d
        seq = self._seq
        q[SEQ] = seq + 1  # odd: an update is in progress
        if n:
            # one C-level transpose, then counts, sums and buckets per column
            _, statuses, durations, bytes_in, bytes_out = zip(*records, strict=True)
            records.clear()
            words = self._words
            first = statuses[0]
            if statuses.count(first) == n:  # the usual batch: one status
                word = _status_word(first)
                words[word] += n
                q[word] = words[word]
            else:
                for status in statuses:
                    words[_status_word(status)] += 1
                for word in range(STATUS0, STATUS0 + len(STATUS_CLASSES)):
                    q[word] = words[word]
            hist = self._hist
            if n == 1:  # a worker that wakes up for each request: one bucket, one word
                i = bisect_right(_EDGES, durations[0])
                hist[i] += 1
                q[HIST0 + i] = hist[i]
            else:
                histogram.count_into(hist, list(durations))
                self._hist_view[_ALL] = hist
            self._dur += sum(durations)
            d[DURATION_SUM] = self._dur
            self._inflight = inflight = self._inflight - n
            q[IN_FLIGHT] = inflight
            received = sum(bytes_in)
            if received:  # most requests have no body
                self._bin += received
                q[BYTES_IN] = self._bin
            self._bout += sum(bytes_out)
            q[BYTES_OUT] = self._bout
        if self._gc_dirty:
            self._gc_dirty = False  # a collection during these stores flags the next flush
            for g in range(3):
                q[GC_COUNT0 + g] = self._gc[g]
                d[GC_PAUSE0 + g] = self._gc_pause[g]
        self._seq = seq + 2
        q[SEQ] = seq + 2  # even again: consistent


def _status_word(status: int) -> int:
    """The slot word counting ``status``'s class: 1xx..5xx, anything else as 5xx."""
    return _STATUS_WORD[status] if 0 <= status < len(_STATUS_WORD) else STATUS0 + 4


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


class RecordingSlot(SlotWriter, Protocol):
    """What ``Scoreboard.writer`` returns: a ``SlotWriter`` that also counts collections."""

    def record_gc(self, generation: int, pause_s: float) -> None: ...


def _native_layout() -> tuple[int, ...]:
    """Word indexes (and the line's byte offset and size) in the order _fastslot.c reads them."""
    return (
        SEQ, STATE, HEARTBEAT, IN_FLIGHT, CONNECTIONS, BYTES_IN, BYTES_OUT, DURATION_SUM,
        REQUEST_START, GC_COUNT0, GC_PAUSE0, LINE_LEN, _LINE_OFFSET, REQUEST_LINE_BYTES,
        STATUS0, HIST0, histogram.NBUCKETS, MEMORY_ALERT,
    )  # fmt: skip


def install_gc_callbacks(slot: RecordingSlot) -> Callable[[], None]:
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
        self._floats: memoryview[float] = memoryview(mm).cast("d")
        self._views: list[memoryview[Any]] = [self._words, self._floats]
        self._recorders: list[RecordingSlot] = []
        # writers in C unless turned off (CORRAL_PURE_PYTHON_SLOT=1, or by tests of the fallback)
        self.native = NATIVE_AVAILABLE and not os.environ.get("CORRAL_PURE_PYTHON_SLOT")
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

    def writer(self, index: int, *, claim_pid: bool = True) -> RecordingSlot:
        """The write side of slot ``index``, called in the worker that owns it: the C recorder
        when it was built (and ``native`` is left on), else the pure-Python ``ScoreboardSlot``.

        With ``claim_pid`` the calling process writes its own pid into the slot: when a zygote
        forks the worker, the master learns the pid only later (``set_pid`` does it from there).
        """
        raw = self._slot_view(index)
        q: memoryview[int] = raw.cast("q")
        d: memoryview[float] = raw.cast("d")
        self._views += (raw, q, d)
        if claim_pid:
            q[PID] = os.getpid()
        if self.native and _fastslot is not None:
            recorder: RecordingSlot = _fastslot.Recorder(raw, _native_layout(), histogram.EDGES)
            self._recorders.append(recorder)
            return recorder
        slot = ScoreboardSlot(q, d, raw)
        self._views.append(slot._hist_view)  # a sub-view: released before q
        return slot

    def reset(self, index: int, pid: int, worker_id: int, generation: int, now: float) -> None:
        """Master: zero slot ``index`` and stamp it for a new worker (state BOOTING)."""
        self._stamp(index, pid, worker_id, generation, now, WorkerState.BOOTING)

    def set_pid(self, index: int, pid: int) -> None:
        """Master, right after fork: record the child's pid (``reset`` ran before the fork, so
        the child's first writes are never wiped; no worker ever writes this word)."""
        with self._slot_view(index) as raw, raw.cast("q") as q:
            q[PID] = pid

    def set_websockets(self, index: int, count: int) -> None:
        """Worker: its open WebSockets, one word (an upgrade or a close is rare next to a
        request, so it is written from here rather than by the recorders)."""
        with self._slot_view(index) as raw, raw.cast("q") as q:
            q[WEBSOCKETS] = count

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

    def heartbeat(self, index: int) -> float:
        """Master, every tick: one word of slot ``index`` (a full ``read`` copies and decodes
        1.6 KB)."""
        return self._floats[self._word(index, HEARTBEAT)]

    def state(self, index: int) -> WorkerState:
        """Master: the state word of slot ``index`` (EMPTY for a value no writer stores)."""
        try:
            return WorkerState(self._words[self._word(index, STATE)])
        except ValueError:
            return WorkerState.EMPTY

    def memory_alert(self, index: int) -> int:
        """Master, every tick: the worker's memory alert word (0 = no alert)."""
        return self._words[self._word(index, MEMORY_ALERT)]

    def requests(self, index: int) -> int:
        """Master: requests answered in slot ``index``, without the seqlock (a read that races
        a flush may miss that batch; it is counted on the next)."""
        at = self._word(index, STATUS0)
        return sum(self._words[at : at + len(STATUS_CLASSES)])

    def _word(self, index: int, field: int) -> int:
        if not 0 <= index < self.nslots:
            raise IndexError(f"slot {index} out of range 0..{self.nslots - 1}")
        return (HEADER_BYTES + index * SLOT_STRIDE) // 8 + field

    def census(self) -> tuple[int, int]:
        """Worker: (READY workers, connections they hold), one word of each per slot and no
        seqlock (single words are stored whole); ``corral.worker.fairness`` balances on it."""
        first, stride = HEADER_BYTES // 8, SLOT_STRIDE // 8
        words = self._words
        end = first + self.nslots * stride
        states = words[first + STATE : end : stride].tolist()
        conns = words[first + CONNECTIONS : end : stride].tolist()
        ready = [c for s, c in zip(states, conns, strict=True) if s == WorkerState.READY]
        return len(ready), sum(ready)

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
        for recorder in self._recorders:
            recorder.release()  # type: ignore[attr-defined]
        self._recorders.clear()
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
        memory_alert=q[MEMORY_ALERT],
        websockets=max(0, q[WEBSOCKETS]),
        gc_collections=(q[GC_COUNT0], q[GC_COUNT0 + 1], q[GC_COUNT0 + 2]),
        gc_pause_s=(d[GC_PAUSE0], d[GC_PAUSE0 + 1], d[GC_PAUSE0 + 2]),
        histogram=tuple(q[HIST0 : HIST0 + histogram.NBUCKETS]),
    )
