"""Measurements the master takes of its workers, and the recycling they lead to.

Theory of operation. Every ``memory_sample_s`` the master reads each worker's
``/proc/PID/smaps_rollup`` (rss, pss, uss, shared, swap; ~5 ms for a 230 MB worker). Between those
samples it reads ``statm`` (~10 µs) every tick and estimates the worker's current figure as the
last full sample plus the RSS growth since; once the estimate nears the limit, the worker is
sampled in full on every tick, so a fast leak is seen within a tenth of a second rather than a
sampling period. Faster still, each worker checks itself between requests and raises an alert
in its scoreboard slot (``corral.worker.memguard``); an alerting worker is sampled at once and,
confirmed, replaced without waiting for a streak (``recycle.alert_decision``).
The decisions themselves are the pure policies in ``corral.memory.recycle``
(streak of over-limit samples, minimum lifetime, jitter, one at a time); the arbiter applies
them through its spawn-before-kill ``replace`` path.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

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

if TYPE_CHECKING:
    from corral.master.arbiter import Arbiter, Worker

log = logging.getLogger("corral.master")
MIB = 1024 * 1024
NEAR_LIMIT = 0.85  # estimated figure / limit above which a worker is sampled every tick


@dataclass
class _Reading:
    sample: MemorySample
    rss_at_sample: int
    next_at: float
    cow: CowCounts | None = None


class Monitor:
    def __init__(self, arbiter: Arbiter) -> None:
        self.arbiter = arbiter
        cfg = arbiter.cfg
        self.interval = cfg.memory_sample_s
        self.metric = Metric(cfg.worker_memory_metric)
        self.limit = int(cfg.max_worker_memory_mib * MIB)
        self.policy = (
            RecyclePolicy(
                RecycleSettings(
                    limit_bytes=self.limit,
                    metric=self.metric,
                    consecutive=3,
                    min_lifetime_s=cfg.min_worker_lifetime_s,
                    jitter=0.1,
                    seed=os.getpid(),
                )
            )
            if self.limit > 0
            else None
        )
        self.readings: dict[int, _Reading] = {}
        self.heap_ranges: dict[int, list[AddressRange]] = {}  # generation -> zygote's heap
        self.zygote_memory: MemorySample | None = None

    def forget(self, worker: Worker) -> None:
        self.readings.pop(worker.wid, None)
        if self.policy is not None:
            self.policy.forget(worker.wid)

    def memory(self, wid: int) -> MemorySample | None:
        reading = self.readings.get(wid)
        return reading.sample if reading else None

    def cow(self, wid: int) -> CowCounts | None:
        reading = self.readings.get(wid)
        return reading.cow if reading else None

    def _heap_ranges(self, gen: int) -> list[AddressRange] | None:
        """The zygote's anonymous ranges: the pre-fork heap every worker of ``gen`` maps.
        Read once per generation; the zygote is idle after loading, so they do not change."""
        ranges = self.heap_ranges.get(gen)
        if ranges is None:
            generation = self.arbiter.gens.get(gen)
            if generation is None or not generation.zygote_alive:
                return None
            try:
                ranges = anonymous_ranges(generation.zygote_pid)
                self.zygote_memory = read_smaps_rollup(generation.zygote_pid)
            except MemoryProbeError:
                return None
            self.heap_ranges[gen] = ranges
        return ranges

    def tick(self, now: float) -> None:
        for worker in list(self.arbiter.fleet.workers.values()):
            if worker.ready and worker.pid and not worker.stopping:
                self._sample(worker, now)
        self._memory_alerts(now)  # the workers' own checks; not one-at-a-time (see recycle.py)
        if self.arbiter.replacing():
            return
        if self._max_requests():
            return
        self._memory_recycle(now)

    def _sample(self, worker: Worker, now: float) -> None:
        reading = self.readings.get(worker.wid)
        try:
            if (
                reading is not None
                and now < reading.next_at
                and not self._near_limit(worker, reading)
            ):
                return
            sample = read_smaps_rollup(worker.pid)
            ranges = self._heap_ranges(worker.gen)
            cow = pagemap_cow(worker.pid, ranges) if ranges else None
        except MemoryProbeError:
            return
        self.readings[worker.wid] = _Reading(sample, sample.rss, now + self.interval, cow)
        if self.policy is not None:
            self.policy.observe(
                WorkerSample(worker.wid, worker.spawned_at, sample.value(self.metric), now)
            )

    def _memory_alerts(self, now: float) -> None:
        """Apply ``alert_decision`` to each worker that raised a memory alert in its slot."""
        if self.policy is None:
            return
        board = self.arbiter.scoreboard
        for worker in list(self.arbiter.fleet.workers.values()):
            alert = board.memory_alert(worker.slot) if worker.pid else 0
            if alert <= 0 or worker.retiring or worker.stopping or not worker.ready:
                continue
            stopped = board.state(worker.slot) == WorkerState.DRAINING
            try:
                sampled: int | None = read_smaps_rollup(worker.pid).value(self.metric)
            except MemoryProbeError:
                sampled = None
            decision = alert_decision(
                self.policy.settings, worker.wid, alert, sampled, stopped=stopped
            )
            if decision is not None:
                log.warning(
                    "worker %d (pid %d) reports %.1f MiB, over its limit of %.1f MiB %s "
                    "(%s: %.1f MiB): recycling",
                    worker.wid, worker.pid, alert / MIB, decision.limit / MIB,
                    self.metric.value, "stopped" if stopped else "sampled", decision.value / MIB,
                )  # fmt: skip
                self.arbiter.replace(worker, "memory")

    def _near_limit(self, worker: Worker, reading: _Reading) -> bool:
        if self.limit <= 0:
            return False
        growth = read_statm_rss(worker.pid) - reading.rss_at_sample
        estimate = reading.sample.value(self.metric) + max(0, growth)
        return estimate > self.limit * NEAR_LIMIT

    def _max_requests(self) -> bool:
        arbiter = self.arbiter
        if arbiter.cfg.max_requests <= 0:
            return False
        now_min = arbiter.cfg.min_worker_lifetime_s
        for worker in arbiter.fleet.workers.values():
            if not worker.ready or worker.stopping or worker.retiring:
                continue
            served = arbiter.scoreboard.requests(worker.slot)
            old_enough = arbiter.clock() - worker.spawned_at >= now_min
            if old_enough and max_requests_due(served, worker.requests_limit):
                return arbiter.replace(worker, "max-requests")
        return False

    def _memory_recycle(self, now: float) -> None:
        if self.policy is None:
            return
        for decision in self.policy.decide(now):
            worker = self.arbiter.fleet.workers.get(decision.worker_id)
            if worker is None or worker.stopping:
                continue
            log.warning(
                "worker %d (pid %d) uses %.1f MiB %s, over its limit of %.1f MiB for "
                "%d samples: recycling",
                worker.wid,
                worker.pid,
                decision.value / MIB,
                self.metric.value,
                decision.limit / MIB,
                decision.streak,
            )
            self.arbiter.replace(worker, "memory")
