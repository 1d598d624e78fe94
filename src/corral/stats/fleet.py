"""The master's view of all workers: live slots + retired totals + rates + an event log.

Theory of operation
-------------------
Slot counters die with their worker. ``Fleet`` keeps what would be lost: when the master
retires a worker (``retire(snapshot, reason)``) its counters, histogram and GC figures are added
to retired totals, both fleet-wide and per slot index, so every exported counter is
``retired + live`` and never goes backwards across a replacement (Prometheus counter semantics).
Per-worker series are keyed by slot index, a bounded set (uWSGI's exporter labels by worker
position the same way), never by pid or by a worker id that grows with every replacement.
A worker incarnation is identified by (slot index, worker_id, generation, started_at), stamped by
``reset``. The master must ``scoreboard.clear(index)`` or ``reset(...)`` the slot after retiring
it; until it does, the retired incarnation is remembered and skipped so nothing counts twice.

Rates are computed by the reader from deltas: ``RateTracker`` keeps a bounded history of
(time, cumulative totals); rps and windowed latency quantiles are the difference between the
newest sample and the one ``window_s`` older. The same history is the dashboard's time series.

Memory figures come from the master (it reads /proc); this module only stores the last sample
per pid. Everything here is pure: the clock is passed in.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from corral.lifecycle import UNPLANNED, RecycleReason
from corral.stats import histogram
from corral.stats.protocol import WorkerState
from corral.stats.scoreboard import Scoreboard, SlotSnapshot

# Why a worker was replaced (the recycle counter's labels); crash and timeout, unplanned, are
# also restarts. A worker that left without being replaced (a shutdown) is folded in, not counted.
RETIRE_REASONS = tuple(RecycleReason)
MEMORY_KINDS = ("rss", "pss", "uss", "shared", "swap")
EVENT_LOG_SIZE = 200  # a few minutes of a busy fleet's spawns/retires/GCs
SERIES_POINTS = 120  # two minutes at one sample a second
MEMORY_POINTS = 60  # per-worker memory history for the dashboard's stacked bars
MIN_SAMPLE_INTERVAL_S = 0.5  # /stats polled by several clients must not shrink the window


@dataclass(slots=True)
class Counters:
    """Cumulative request/GC figures; added together across workers and retirements."""

    requests: int = 0
    by_status: list[int] = field(default_factory=lambda: [0] * 5)
    bytes_in: int = 0
    bytes_out: int = 0
    duration_sum_s: float = 0.0
    gc_collections: list[int] = field(default_factory=lambda: [0, 0, 0])
    gc_pause_s: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])
    histogram: list[int] = field(default_factory=lambda: [0] * histogram.NBUCKETS)

    def add_slot(self, s: SlotSnapshot) -> None:
        """Add one slot's counters."""
        self.requests += s.requests
        self.bytes_in += s.bytes_in
        self.bytes_out += s.bytes_out
        self.duration_sum_s += s.duration_sum_s
        _accumulate(self.by_status, s.by_status)
        _accumulate(self.gc_collections, s.gc_collections)
        _accumulate(self.gc_pause_s, s.gc_pause_s)
        _accumulate(self.histogram, s.histogram)

    def add(self, other: Counters) -> None:
        """Add another accumulator."""
        self.requests += other.requests
        self.bytes_in += other.bytes_in
        self.bytes_out += other.bytes_out
        self.duration_sum_s += other.duration_sum_s
        _accumulate(self.by_status, other.by_status)
        _accumulate(self.gc_collections, other.gc_collections)
        _accumulate(self.gc_pause_s, other.gc_pause_s)
        _accumulate(self.histogram, other.histogram)

    def copy(self) -> Counters:
        """An independent copy."""
        c = Counters()
        c.add(self)
        return c


def _accumulate(into: list[Any], values: Iterable[Any]) -> None:
    for i, v in enumerate(values):
        into[i] += v


@dataclass(frozen=True, slots=True)
class Window:
    """Rates and latency over the last few seconds."""

    rps: float
    errors_4xx_per_s: float
    errors_5xx_per_s: float
    p50_s: float | None
    p90_s: float | None
    p99_s: float | None
    p999_s: float | None


EMPTY_WINDOW = Window(0.0, 0.0, 0.0, None, None, None, None)


@dataclass(frozen=True, slots=True)
class _Sample:
    t: float
    requests: int
    e4xx: int
    e5xx: int
    hist: tuple[int, ...]


class RateTracker:
    """A bounded history of (time, cumulative totals) giving windowed rates and quantiles."""

    def __init__(self, window_s: float = 5.0, points: int = SERIES_POINTS) -> None:
        self.window_s = window_s
        self._samples: deque[_Sample] = deque(maxlen=points)
        # the series' points, computed once as each sample arrives (a scrape reads them all)
        self._points: deque[dict[str, float | None]] = deque(maxlen=max(1, points - 1))

    def observe(self, now: float, c: Counters) -> None:
        """Record cumulative totals at ``now`` (ignored if too close to the previous sample)."""
        if self._samples and now - self._samples[-1].t < MIN_SAMPLE_INTERVAL_S:
            return  # keep (time, values) pairs true; rates lag by at most the interval
        sample = _Sample(now, *_figures(c))
        if self._samples:
            self._points.append(_point(self._samples[-1], sample))
        self._samples.append(sample)

    def window(self) -> Window:
        """Rates between the newest sample and the one about ``window_s`` before it."""
        if len(self._samples) < 2:
            return EMPTY_WINDOW
        new = self._samples[-1]
        old = self._at_or_before(new.t - self.window_s)
        return _delta(old, new)

    def series(self) -> list[dict[str, float | None]]:
        """One point per consecutive pair of samples: the dashboard's time series."""
        return list(self._points)

    def _at_or_before(self, t: float) -> _Sample:
        best = self._samples[0]
        for s in self._samples:
            if s.t > t:
                break
            best = s
        return best if best is not self._samples[-1] else self._samples[-2]


def _figures(c: Counters) -> tuple[int, int, int, tuple[int, ...]]:
    return c.requests, c.by_status[3], c.by_status[4], tuple(c.histogram)


def _delta(old: _Sample, new: _Sample) -> Window:
    dt = max(new.t - old.t, 1e-9)
    p50, p90, p99, p999 = histogram.quantiles(
        histogram.subtract(new.hist, old.hist), (0.50, 0.90, 0.99, 0.999)
    )
    return Window(
        rps=max(0, new.requests - old.requests) / dt,
        errors_4xx_per_s=max(0, new.e4xx - old.e4xx) / dt,
        errors_5xx_per_s=max(0, new.e5xx - old.e5xx) / dt,
        p50_s=p50,
        p90_s=p90,
        p99_s=p99,
        p999_s=p999,
    )


def _point(a: _Sample, b: _Sample) -> dict[str, float | None]:
    w = _delta(a, b)
    return {
        "t": b.t,
        "rps": w.rps,
        "p50_ms": _ms(w.p50_s),
        "p99_ms": _ms(w.p99_s),
        "errors_4xx_per_s": w.errors_4xx_per_s,
        "errors_5xx_per_s": w.errors_5xx_per_s,
    }


def _ms(s: float | None) -> float | None:
    return None if s is None else s * 1000.0


Incarnation = tuple[int, int, int, float]  # (slot index, worker_id, generation, started_at)


def incarnation(s: SlotSnapshot) -> Incarnation:
    """Which worker life a slot copy belongs to (all four are stamped by ``reset``)."""
    return (s.index, s.worker_id, s.generation, s.started_at)


@dataclass(frozen=True, slots=True)
class Event:
    """One entry of the timeline: ``kind`` is spawn, retire, gc, reload, ... ."""

    t: float
    kind: str
    worker: int | None
    detail: str


@dataclass(frozen=True, slots=True)
class WorkerView:
    """One live worker as exported: its slot, rates, memory and lifetime totals of its id."""

    slot: SlotSnapshot
    window: Window
    memory: Mapping[str, int] | None
    cow: Mapping[str, int] | None
    slot_totals: Counters  # retired + live for this slot index (monotonic per label)
    memory_history: tuple[tuple[float, int, int], ...] = ()  # (t, shared, private) bytes


@dataclass(frozen=True, slots=True)
class FleetSnapshot:
    """Everything /metrics, /stats and the dashboard show, taken at monotonic time ``now``."""

    now: float
    started_at: float
    window_s: float
    workers: tuple[WorkerView, ...]
    totals: Counters  # retired + live
    by_slot: Mapping[int, Counters]  # retired + live per slot index
    window: Window
    series: list[dict[str, float | None]]
    events: tuple[Event, ...]
    recycles: Mapping[str, int]
    restarts: int
    master_memory: Mapping[str, int] | None

    @property
    def in_flight(self) -> int:
        """Requests being served right now, fleet-wide."""
        return sum(w.slot.in_flight for w in self.workers)


class Fleet:
    """Aggregates a scoreboard's live slots with everything retired from it."""

    def __init__(self, scoreboard: Scoreboard, *, now: float, window_s: float = 5.0) -> None:
        self.scoreboard = scoreboard
        self.started_at = now
        self.window_s = window_s
        self.retired = Counters()
        self._retired_by_slot: dict[int, Counters] = {}
        self._retired_keys: dict[Incarnation, None] = {}
        self.recycles: dict[RecycleReason, int] = dict.fromkeys(RecycleReason, 0)
        self.restarts = 0
        self.events: deque[Event] = deque(maxlen=EVENT_LOG_SIZE)
        self._memory: dict[int, dict[str, int]] = {}
        self._cow: dict[int, dict[str, int]] = {}
        self._memory_history: dict[int, deque[tuple[float, int, int]]] = {}
        self._master_memory: dict[str, int] | None = None
        self._rates = RateTracker(window_s)
        self._worker_rates: dict[Incarnation, RateTracker] = {}
        self._gc2_seen: dict[Incarnation, int] = {}

    def record_event(self, now: float, kind: str, worker: int | None, detail: str = "") -> None:
        """Append to the bounded timeline (spawn, reload, scale, ... as the master sees fit)."""
        self.events.append(Event(now, kind, worker, detail))

    def set_memory(
        self, pid: int, sample: Mapping[str, int], cow: Mapping[str, int] | None = None
    ) -> None:
        """Store the latest /proc sample for ``pid`` (bytes; CoW figures are page counts)."""
        self._memory[pid] = {k: int(sample[k]) for k in MEMORY_KINDS if k in sample}
        if cow is not None:
            self._cow[pid] = {k: int(v) for k, v in cow.items()}

    def set_master_memory(self, sample: Mapping[str, int] | None) -> None:
        """The master's own memory (the shared heap every worker forked from)."""
        self._master_memory = None if sample is None else dict(sample)

    def retire(
        self,
        snapshot: SlotSnapshot,
        reason: str | None,
        now: float | None = None,
        detail: str | None = None,
    ) -> None:
        """Fold a departed worker's counters into the retired totals and count why it was
        replaced (a ``RecycleReason``); ``reason`` None folds without counting (a shutdown).
        ``detail`` is the timeline's word for it (default: ``reason``)."""
        if reason is not None and reason not in self.recycles:
            raise ValueError(f"unknown retire reason {reason!r}; expected one of {RETIRE_REASONS}")
        key = incarnation(snapshot)
        if key in self._retired_keys:
            return
        self._remember_retired(key)
        self.retired.add_slot(snapshot)
        self._retired_by_slot.setdefault(snapshot.index, Counters()).add_slot(snapshot)
        if reason is not None:
            self.recycles[RecycleReason(reason)] += 1
            self.restarts += reason in UNPLANNED
        self._forget(snapshot)
        t = snapshot.heartbeat if now is None else now
        why = detail or reason or "left"
        self.record_event(t, "retire", snapshot.worker_id, f"pid {snapshot.pid}: {why}")

    def _remember_retired(self, key: Incarnation) -> None:
        self._retired_keys[key] = None
        while len(self._retired_keys) > 4 * self.scoreboard.nslots + 64:
            del self._retired_keys[next(iter(self._retired_keys))]

    def _forget(self, s: SlotSnapshot) -> None:
        self._memory.pop(s.pid, None)
        self._cow.pop(s.pid, None)
        self._memory_history.pop(s.pid, None)
        self._worker_rates.pop(incarnation(s), None)
        self._gc2_seen.pop(incarnation(s), None)

    def live_slots(self) -> list[SlotSnapshot]:
        """Slots owned by a worker that has not been retired."""
        return [s for s in self.counted_slots() if s.live]

    def counted_slots(self) -> list[SlotSnapshot]:
        """Slots whose counters are not in the retired totals yet: the live ones, and those of
        workers that exited but that the master has not reaped (and retired) yet. Leaving the
        latter out would make totals dip between a worker's exit and its reaping."""
        return [
            s
            for s in self.scoreboard.read_all()
            if s.state != WorkerState.EMPTY and incarnation(s) not in self._retired_keys
        ]

    def snapshot(self, now: float) -> FleetSnapshot:
        """Read every slot, update the rate history and build the exported picture."""
        counted = self.counted_slots()
        live = [s for s in counted if s.live]
        totals = self.retired.copy()
        by_slot = {i: c.copy() for i, c in self._retired_by_slot.items()}
        for s in counted:
            totals.add_slot(s)
            by_slot.setdefault(s.index, Counters()).add_slot(s)
        self._rates.observe(now, totals)
        workers = tuple(self._view(now, s, by_slot[s.index]) for s in live)
        self._prune(live)
        return FleetSnapshot(
            now=now,
            started_at=self.started_at,
            window_s=self.window_s,
            workers=workers,
            totals=totals,
            by_slot=by_slot,
            window=self._rates.window(),
            series=self._rates.series(),
            events=tuple(self.events),
            recycles={r.value: n for r, n in self.recycles.items()},
            restarts=self.restarts,
            master_memory=self._master_memory,
        )

    def _view(self, now: float, s: SlotSnapshot, slot_totals: Counters) -> WorkerView:
        key = incarnation(s)
        tracker = self._worker_rates.setdefault(key, RateTracker(self.window_s, points=16))
        c = Counters()
        c.add_slot(s)
        tracker.observe(now, c)
        self._note_full_gc(now, s)
        memory, cow = self._memory.get(s.pid), self._cow.get(s.pid)
        history = self._remember_memory(now, s.pid, memory)
        return WorkerView(s, tracker.window(), memory, cow, slot_totals, history)

    def _remember_memory(
        self, now: float, pid: int, memory: Mapping[str, int] | None
    ) -> tuple[tuple[float, int, int], ...]:
        split = split_memory(memory)
        ring = self._memory_history.setdefault(pid, deque(maxlen=MEMORY_POINTS))
        if split is not None and (not ring or now - ring[-1][0] >= MIN_SAMPLE_INTERVAL_S):
            ring.append((now, *split))
        return tuple(ring)

    def _note_full_gc(self, now: float, s: SlotSnapshot) -> None:
        key = incarnation(s)
        seen = self._gc2_seen.get(key)
        self._gc2_seen[key] = s.gc_collections[2]
        if seen is not None and s.gc_collections[2] > seen:
            n = s.gc_collections[2] - seen
            self.record_event(now, "gc", s.worker_id, f"pid {s.pid}: {n} full collection(s)")

    def _prune(self, live: list[SlotSnapshot]) -> None:
        keys = {incarnation(s) for s in live}
        for key in [k for k in self._worker_rates if k not in keys]:
            del self._worker_rates[key]
            self._gc2_seen.pop(key, None)
        pids = {s.pid for s in live}
        for table in (self._memory_history, self._memory, self._cow):
            for pid in [p for p in table if p not in pids]:
                del table[pid]  # a worker that left without retire() must not leak its samples


def split_memory(memory: Mapping[str, int] | None) -> tuple[int, int] | None:
    """(shared, private) bytes of a sample: private is USS (else rss - shared)."""
    if not memory or "rss" not in memory:
        return None
    rss = memory["rss"]
    if "uss" in memory:
        private = memory["uss"]
    elif "shared" in memory:
        private = rss - memory["shared"]
    else:
        return None
    private = max(0, min(private, rss))
    return rss - private, private


def state_name(state: WorkerState) -> str:
    """Lower-case state label used in exposition (``ready``, ``draining``, ...)."""
    return state.name.lower()
