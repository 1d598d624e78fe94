"""When to replace a worker: pure policies fed by samples and a clock the caller owns.

Theory of operation. A worker's private memory grows as it copies pages of the shared heap and as
the application leaks; replacing it returns that memory. Replacing too eagerly costs fresh copies
and latency, so the memory policy asks for evidence:

* **Hysteresis**: a worker is due only after ``consecutive`` samples in a row over its limit; one
  sample under the limit resets the streak (a transient peak during a big request is not a leak).
  A single sample ``URGENT_FACTOR`` or more over the limit is due at once: a fast leak must not
  run on while a streak builds up.
* **Minimum lifetime**: a worker younger than ``min_lifetime_s`` is never recycled for memory,
  which stops a replace loop when the limit is below what a fresh worker needs.
* **Jitter**: each worker's limit is lowered by a deterministic fraction (drawn from ``seed`` and
  the worker id) so that workers started together do not all cross the limit together.
* **One at a time**: while any worker of the pool is being replaced, nothing else is decided;
  otherwise the worker furthest over its limit goes first.

A worker also checks itself between requests (``corral.worker.memguard``) and raises an alert
in its scoreboard slot once over the limit; ``alert_decision`` turns that alert, confirmed by
the master's own sample, into a replacement at once: no streak (the worker's check is the
evidence), no minimum lifetime (a worker that starts over its limit never alerts: the replace
loop that minimum prevents cannot start), and not one at a time (two workers leaking at once
must both be replaced before either runs away).

Nothing here reads /proc, a clock or the OS: the master feeds samples with ``observe`` and asks
``decide(now, replacing)``. ``max_requests`` follows gunicorn's ``max_requests`` +
``randint(0, max_requests_jitter)``, with the draw made deterministic per worker.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal

from corral.lifecycle import RecycleReason

__all__ = [
    "Metric",
    "RecycleDecision",
    "RecyclePolicy",
    "RecycleSettings",
    "WorkerSample",
    "alert_decision",
    "jitter_unit",
    "jittered_max_requests",
    "max_requests_due",
]


class Metric(StrEnum):
    """Which memory figure is compared with the limit."""

    USS = "uss"  # private pages: what replacing the worker frees (the default)
    PSS = "pss"  # private + a fair share of shared pages
    RSS = "rss"  # counts shared pages in full: overstates a CoW worker; cheap (statm)


URGENT_FACTOR = 1.15  # a sample this far over the limit is due without waiting for a streak


def jitter_unit(seed: int, worker_id: int) -> float:
    """A deterministic draw in ``[0, 1)`` for one worker. Pass a worker id that is unique per
    process (pid or spawn serial), so that a replacement draws afresh."""
    digest = hashlib.blake2b(f"{seed}:{worker_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


@dataclass(frozen=True, slots=True)
class RecycleSettings:
    """Memory recycling settings.

    ``jitter`` is the largest fraction by which a worker's limit is lowered (0.1 lowers each
    worker's limit by 0-10%), so no worker ever goes past ``limit_bytes`` for lack of a draw.
    ``consecutive`` = 3 at a typical 5 s sampling interval needs 15 s of evidence.
    """

    limit_bytes: int
    metric: Metric = Metric.USS  # which figure the caller samples; the policy only compares
    consecutive: int = 3
    min_lifetime_s: float = 60.0
    jitter: float = 0.1
    seed: int = 0

    def __post_init__(self) -> None:
        if self.limit_bytes <= 0:
            raise ValueError("limit_bytes must be positive")
        if self.consecutive < 1:
            raise ValueError("consecutive must be at least 1")
        if self.min_lifetime_s < 0:
            raise ValueError("min_lifetime_s must not be negative")
        if not 0.0 <= self.jitter < 1.0:
            raise ValueError("jitter must be in [0, 1)")

    def limit_for(self, worker_id: int) -> int:
        """This worker's jittered limit, in ``[limit * (1 - jitter), limit]``."""
        return int(self.limit_bytes * (1.0 - self.jitter * jitter_unit(self.seed, worker_id)))


@dataclass(frozen=True, slots=True)
class WorkerSample:
    """One reading of ``settings.metric`` for one worker; times are the caller's monotonic clock."""

    worker_id: int
    started_at: float
    value: int
    taken_at: float


@dataclass(frozen=True, slots=True)
class RecycleDecision:
    """Replace ``worker_id``: its ``value`` stayed over ``limit`` for ``streak`` samples."""

    worker_id: int
    reason: Literal[RecycleReason.MEMORY]
    value: int
    limit: int
    streak: int


@dataclass(slots=True)
class _Track:
    started_at: float
    last_taken_at: float
    last_value: int
    streak: int = 0


@dataclass
class RecyclePolicy:
    """The memory recycling policy with its state made explicit (one instance per pool)."""

    settings: RecycleSettings
    _tracks: dict[int, _Track] = field(default_factory=dict, init=False)

    def observe(self, sample: WorkerSample) -> None:
        """Record one sample. A sample not newer than the last one for its worker is ignored, so
        feeding the same sample twice does not lengthen a streak."""
        track = self._tracks.get(sample.worker_id)
        if track is not None and sample.taken_at <= track.last_taken_at:
            return
        if track is None or track.started_at != sample.started_at:
            track = _Track(sample.started_at, sample.taken_at, sample.value)
            self._tracks[sample.worker_id] = track
        over = sample.value > self.settings.limit_for(sample.worker_id)
        track.streak = track.streak + 1 if over else 0
        track.last_taken_at, track.last_value = sample.taken_at, sample.value

    def observe_all(self, samples: Iterable[WorkerSample]) -> None:
        for sample in samples:
            self.observe(sample)

    def forget(self, worker_id: int) -> None:
        """Drop a worker that exited."""
        self._tracks.pop(worker_id, None)

    def streak(self, worker_id: int) -> int:
        track = self._tracks.get(worker_id)
        return track.streak if track else 0

    def decide(self, now: float, replacing: Collection[int] = ()) -> list[RecycleDecision]:
        """At most one decision: none while ``replacing`` is non-empty, else the due worker
        furthest over its limit (lowest id on a tie). Does not change state: the caller adds the
        worker to ``replacing`` once it acts, and ``forget``s it when it has exited."""
        if replacing:
            return []
        due = [d for wid, t in self._tracks.items() if (d := self._due(wid, t, now)) is not None]
        if not due:
            return []
        return [min(due, key=lambda d: (-d.value / d.limit, d.worker_id))]

    def _due(self, worker_id: int, track: _Track, now: float) -> RecycleDecision | None:
        limit = self.settings.limit_for(worker_id)
        # Far over the limit, one sample is evidence enough: waiting for a streak while a fast
        # leak runs would let the worker grow well past the limit (hysteresis is for marginal
        # overs, which is where flapping happens).
        urgent = track.streak >= 1 and track.last_value >= limit * URGENT_FACTOR
        if track.streak < self.settings.consecutive and not urgent:
            return None
        if now - track.started_at < self.settings.min_lifetime_s:
            return None
        return RecycleDecision(
            worker_id, RecycleReason.MEMORY, track.last_value, limit, track.streak
        )


def alert_decision(
    settings: RecycleSettings,
    worker_id: int,
    alert: int,
    sampled: int | None,
    *,
    stopped: bool = False,
) -> RecycleDecision | None:
    """The worker ``worker_id`` reported ``alert`` bytes (0: no alert); ``sampled`` is the
    master's own reading of ``settings.metric`` for it right now (None: none to be had).

    Replace it when the master's sample confirms it is over its (jittered) limit, or without a
    confirmation when the worker has already stopped taking requests (``stopped``): it will
    exit whatever the master thinks, and the pool needs its replacement. A worker whose alert
    the sample contradicts (its estimate counted pages the master's metric shares out) serves
    on, and is judged by the sampled policy as any other."""
    if alert <= 0:
        return None
    limit = settings.limit_for(worker_id)
    if stopped:
        return RecycleDecision(worker_id, RecycleReason.MEMORY, sampled or alert, limit, 1)
    if sampled is None or sampled <= limit:
        return None
    return RecycleDecision(worker_id, RecycleReason.MEMORY, sampled, limit, 1)


def jittered_max_requests(max_requests: int, jitter: int, *, seed: int, worker_id: int) -> int:
    """A worker's request limit: ``max_requests + draw`` with draw in ``[0, jitter]`` (gunicorn's
    ``max_requests_jitter``). 0 means no limit and stays 0."""
    if max_requests <= 0:
        return 0
    if jitter <= 0:
        return max_requests
    return max_requests + int(jitter_unit(seed, worker_id) * (jitter + 1))


def max_requests_due(request_count: int, limit: int) -> bool:
    """Whether a worker that has served ``request_count`` requests should be replaced."""
    return limit > 0 and request_count >= limit
