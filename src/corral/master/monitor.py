"""Measurements the master takes of its workers, and the recycling they lead to.

Theory of operation. Every ``memory_sample_s`` the master reads each worker's
``/proc/PID/smaps_rollup`` (rss, pss, uss, shared, swap; ~5 ms for a 230 MB worker). Between those
samples it reads ``statm`` (~10 µs) every tick and estimates the worker's current figure as the
last full sample plus the RSS growth since; once the estimate nears the limit, the worker is
sampled in full on every tick, so a fast leak is seen within a tenth of a second rather than a
sampling period. Faster still, each worker checks itself between requests and raises an alert
in its scoreboard slot (``corral.worker.memguard``); an alerting worker is sampled at once and,
confirmed, replaced without waiting for a streak (``recycle.alert_decision``). The decisions
themselves are the pure policies in ``corral.memory.recycle`` (streak of over-limit samples,
minimum lifetime, jitter, one at a time) and max-requests.

The monitor does not hold the arbiter: each tick it is handed a ``MonitorInput`` (the worker
records, the live zygotes, the scoreboard's readings, whether a replacement is under way) and
returns ``Recycle`` decisions in priority order; the arbiter applies every urgent one (confirmed
memory alerts) and the first other one it can, through its spawn-before-kill path. ``report``
gives the stats layer the latest figures.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from corral.config import Config
from corral.lifecycle import ExitReason
from corral.master.workers import Recycle, SlotReadings, WorkerRecord
from corral.memory.proc import (
    AddressRange,
    CowCounts,
    MemoryProbeError,
    MemorySample,
    anonymous_ranges,
    pagemap_cow,
    read_smaps_rollup,
    read_statm_rss,
)
from corral.memory.recycle import (
    Metric,
    RecyclePolicy,
    RecycleSettings,
    WorkerSample,
    alert_decision,
    max_requests_due,
)
from corral.stats.protocol import WorkerState

MIB = 1024 * 1024
NEAR_LIMIT = 0.85  # estimated figure / limit above which a worker is sampled every tick


@dataclass
class _Reading:
    sample: MemorySample
    rss_at_sample: int
    next_at: float
    cow: CowCounts | None = None


@dataclass(frozen=True)
class MonitorSettings:
    sample_interval_s: float
    metric: Metric
    limit_bytes: int  # 0: no memory limit
    min_lifetime_s: float
    max_requests: int  # 0: no request limit

    @classmethod
    def from_config(cls, cfg: Config) -> MonitorSettings:
        return cls(
            sample_interval_s=cfg.memory_sample_s,
            metric=Metric(cfg.worker_memory_metric),
            limit_bytes=int(cfg.max_worker_memory_mib * MIB),
            min_lifetime_s=cfg.min_worker_lifetime_s,
            max_requests=cfg.max_requests,
        )


@dataclass(frozen=True)
class MonitorInput:
    """What one tick of the monitor reads; built by the arbiter."""

    workers: Sequence[WorkerRecord]
    zygotes: Mapping[int, int]  # generation -> pid of its live zygote
    readings: SlotReadings
    replacing: bool  # a replacement is booting: recycle one at a time


@dataclass(frozen=True)
class MemoryReport:
    """The latest figures for the stats layer: per live worker pid, and the zygote's."""

    workers: Sequence[tuple[int, MemorySample, CowCounts | None]]  # (pid, sample, cow)
    zygote: MemorySample | None


class Monitor:
    def __init__(self, settings: MonitorSettings, *, seed: int | None = None) -> None:
        self.settings = settings
        self.interval = settings.sample_interval_s
        self.metric = settings.metric
        self.limit = settings.limit_bytes
        self.policy = (
            RecyclePolicy(
                RecycleSettings(
                    limit_bytes=self.limit,
                    metric=self.metric,
                    consecutive=3,
                    min_lifetime_s=settings.min_lifetime_s,
                    jitter=0.1,
                    seed=os.getpid() if seed is None else seed,
                )
            )
            if self.limit > 0
            else None
        )
        self.readings: dict[int, _Reading] = {}
        self.heap_ranges: dict[int, list[AddressRange]] = {}  # generation -> zygote's heap
        self.zygote_memory: MemorySample | None = None

    def forget(self, wid: int) -> None:
        self.readings.pop(wid, None)
        if self.policy is not None:
            self.policy.forget(wid)

    def memory(self, wid: int) -> MemorySample | None:
        reading = self.readings.get(wid)
        return reading.sample if reading else None

    def cow(self, wid: int) -> CowCounts | None:
        reading = self.readings.get(wid)
        return reading.cow if reading else None

    def report(self, workers: Sequence[WorkerRecord]) -> MemoryReport:
        figures = []
        for worker in workers:
            reading = self.readings.get(worker.wid)
            if reading is not None and worker.pid:
                figures.append((worker.pid, reading.sample, reading.cow))
        return MemoryReport(figures, self.zygote_memory)

    def _heap_ranges(self, gen: int, zygotes: Mapping[int, int]) -> list[AddressRange] | None:
        """The zygote's anonymous ranges: the pre-fork heap every worker of ``gen`` maps.
        Read once per generation; the zygote is idle after loading, so they do not change."""
        ranges = self.heap_ranges.get(gen)
        if ranges is None:
            zygote_pid = zygotes.get(gen)
            if zygote_pid is None:
                return None
            try:
                ranges = anonymous_ranges(zygote_pid)
                self.zygote_memory = read_smaps_rollup(zygote_pid)
            except MemoryProbeError:
                return None
            self.heap_ranges[gen] = ranges
        return ranges

    def tick(self, now: float, seen: MonitorInput) -> list[Recycle]:
        """Sample what is due; return the workers to replace, most urgent first."""
        for worker in seen.workers:
            if worker.was_ready and worker.pid and not worker.stopping:
                self._sample(worker, now, seen.zygotes)
        alerts = self._memory_alerts(seen)  # the workers' own checks: not one at a time
        if seen.replacing:
            return alerts
        return [*alerts, *self._max_requests(now, seen), *self._memory_recycle(now, seen.workers)]

    def _sample(self, worker: WorkerRecord, now: float, zygotes: Mapping[int, int]) -> None:
        reading = self.readings.get(worker.wid)
        try:
            if (
                reading is not None
                and now < reading.next_at
                and not self._near_limit(worker, reading)
            ):
                return
            sample = read_smaps_rollup(worker.pid)
            ranges = self._heap_ranges(worker.gen, zygotes)
            cow = pagemap_cow(worker.pid, ranges) if ranges else None
        except MemoryProbeError:
            return
        self.readings[worker.wid] = _Reading(sample, sample.rss, now + self.interval, cow)
        if self.policy is not None:
            self.policy.observe(
                WorkerSample(worker.wid, worker.spawned_at, sample.value(self.metric), now)
            )

    def _memory_alerts(self, seen: MonitorInput) -> list[Recycle]:
        """Apply ``alert_decision`` to each worker that raised a memory alert in its slot."""
        if self.policy is None:
            return []
        out = []
        for worker in seen.workers:
            alert = seen.readings.memory_alert(worker.slot) if worker.pid else 0
            if alert <= 0 or worker.retiring or worker.stopping or not worker.was_ready:
                continue
            stopped = seen.readings.state(worker.slot) == WorkerState.DRAINING
            try:
                sampled: int | None = read_smaps_rollup(worker.pid).value(self.metric)
            except MemoryProbeError:
                sampled = None
            decision = alert_decision(
                self.policy.settings, worker.wid, alert, sampled, stopped=stopped
            )
            if decision is not None:
                why = (
                    f"worker {worker.wid} (pid {worker.pid}) reports {alert / MIB:.1f} MiB, over "
                    f"its limit of {decision.limit / MIB:.1f} MiB "
                    f"({self.metric.value} {'when it stopped' if stopped else 'sampled'}: "
                    f"{decision.value / MIB:.1f} MiB): recycling"
                )
                out.append(Recycle(worker.wid, ExitReason.MEMORY, why, urgent=True))
        return out

    def _near_limit(self, worker: WorkerRecord, reading: _Reading) -> bool:
        if self.limit <= 0:
            return False
        growth = read_statm_rss(worker.pid) - reading.rss_at_sample
        estimate = reading.sample.value(self.metric) + max(0, growth)
        return estimate > self.limit * NEAR_LIMIT

    def _max_requests(self, now: float, seen: MonitorInput) -> list[Recycle]:
        """The first serving worker past its request limit (and old enough), if any."""
        if self.settings.max_requests <= 0:
            return []
        for worker in seen.workers:
            if not worker.serving:
                continue
            served = seen.readings.requests(worker.slot)
            old_enough = now - worker.spawned_at >= self.settings.min_lifetime_s
            if old_enough and max_requests_due(served, worker.requests_limit):
                return [Recycle(worker.wid, ExitReason.MAX_REQUESTS)]
        return []

    def _memory_recycle(self, now: float, workers: Sequence[WorkerRecord]) -> list[Recycle]:
        if self.policy is None:
            return []
        by_wid = {w.wid: w for w in workers}
        out = []
        for decision in self.policy.decide(now):
            worker = by_wid.get(decision.worker_id)
            if worker is None or worker.stopping:
                continue
            why = (
                f"worker {worker.wid} (pid {worker.pid}) uses {decision.value / MIB:.1f} MiB "
                f"{self.metric.value}, over its limit of {decision.limit / MIB:.1f} MiB for "
                f"{decision.streak} samples: recycling"
            )
            out.append(Recycle(worker.wid, ExitReason.MEMORY, why))
        return out
