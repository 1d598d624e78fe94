"""Verdicts, pure: the per-second series folded over a phase's window, the expectations a
scenario states, the error bound of a phase, the slowloris latency rule, and the cross-checks
of the client's view against the server's /stats deltas.

A worker publishes what it served every ``PUBLISH_AFTER_S``; one killed by a signal it cannot
handle loses its last batch, which the 2xx cross-check allows for.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from corral.bench.result import (
    FAILURE_CLASSES,
    SecondStats,
    add_counts,
    bucket_top_us,
    percentile_us,
)
from corral.bench.sla import Measures
from corral.stats.scoreboard import PUBLISH_AFTER_S

# ----------------------------------------------------------- phase windows and verdicts (pure)


@dataclass(slots=True)
class WindowStats:
    """The per-second series folded over one window of seconds."""

    seconds: int = 0
    requests: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    latency_us: dict[int, int] = field(default_factory=dict)

    def add(self, second: SecondStats) -> None:
        self.seconds += 1
        self.requests += second.requests
        for name, count in second.errors.items():
            self.errors[name] = self.errors.get(name, 0) + count
        add_counts(self.latency_us, second.latency_us)

    @property
    def failed(self) -> int:
        return sum(self.errors.get(name, 0) for name in FAILURE_CLASSES)

    @property
    def error_total(self) -> int:
        return sum(self.errors.values())

    @property
    def ok_responses(self) -> int:
        """Complete 2xx responses: complete responses less the non-2xx ones."""
        return self.requests - self.errors.get("non_2xx", 0)

    def latency_ms(self, percentile: float) -> float:
        return percentile_us(self.latency_us, percentile) / 1000.0

    def max_ms(self) -> float:
        return bucket_top_us(max(self.latency_us)) / 1000.0 if self.latency_us else 0.0

    def measures(self) -> Measures:
        latency = {
            "p50": self.latency_ms(50),
            "p90": self.latency_ms(90),
            "p99": self.latency_ms(99),
            "p999": self.latency_ms(99.9),
            "max": self.max_ms(),
        }
        rps = self.requests / self.seconds if self.seconds else 0.0
        return Measures(self.requests, self.failed, self.error_total, latency, rps)


def window_stats(series: Sequence[SecondStats], start: int, end: int | None) -> WindowStats:
    """Fold the seconds ``start <= s < end`` (``end`` None: to the end of the run)."""
    out = WindowStats()
    for second in series:
        if second.second >= start and (end is None or second.second < end):
            out.add(second)
    return out


@dataclass(frozen=True, slots=True)
class Expectation:
    """A named check a scenario makes about the server's behaviour."""

    name: str
    ok: bool
    detail: str = ""


def phase_ok(errors: int, allowed: int | None, checks: Sequence[Expectation]) -> bool:
    """A phase passes when its errors are within bound (None: unbounded) and every check holds."""
    return (allowed is None or errors <= allowed) and all(c.ok for c in checks)


def latency_within(phase_p99: float, baseline_p99: float, factor: float, floor_ms: float) -> bool:
    """Whether a phase's p99 stayed within ``factor`` x the baseline's, or ``floor_ms`` above it."""
    return phase_p99 <= max(baseline_p99 * factor, baseline_p99 + floor_ms)


def cross_checks(
    client_ok: int,
    server: dict[str, Any] | None,
    kills: int,
    hangs: int,
    peak_rps: float = 0.0,
) -> list[Expectation]:
    """The client's view against the server's /stats deltas (``None``: stats unavailable).

    A worker publishes what it served every ``PUBLISH_AFTER_S``; one killed by a signal it
    cannot handle loses its last batch, so each kill and hang may hide up to that long of the
    fleet's peak rate (``peak_rps``) from the server's count."""
    if server is None:
        return []
    server_2xx = int(server["by_status"].get("2xx", 0))
    restarts = int(server["restarts"])
    lost = math.ceil((kills + hangs) * peak_rps * PUBLISH_AFTER_S)
    slack = f" (+ up to {lost} unpublished by killed workers)" if lost else ""
    return [
        Expectation(
            "client 2xx <= server 2xx",
            client_ok <= server_2xx + lost,
            f"client {client_ok}, server +{server_2xx}{slack}",
        ),
        Expectation(
            "server restarts >= kills + hangs",
            restarts >= kills + hangs,
            f"restarts +{restarts}, kills {kills}, hangs {hangs}",
        ),
    ]


def stats_delta(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """``after - before`` of the /stats totals chaos reports: requests, by_status, restarts,
    recycles by reason."""

    def sub(key: str) -> dict[str, int]:
        return {k: int(v) - int(before[key].get(k, 0)) for k, v in after[key].items()}

    return {
        "requests": int(after["requests"]) - int(before["requests"]),
        "by_status": sub("by_status"),
        "restarts": int(after["restarts"]) - int(before["restarts"]),
        "recycles": sub("recycles"),
    }
