"""The session: one load run in a thread on its own clock, phases on whole seconds of that
clock (baseline first, then one per scenario), and the report that attributes the per-second
series to phases and evaluates every expectation, SLA and cross-check.
"""

from __future__ import annotations

import argparse
import math
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from corral.bench.config import LoadConfig
from corral.bench.result import (
    LoadResult,
    Progress,
)
from corral.bench.runner import run_load
from corral.bench.sla import Check, Objective, all_met, evaluate
from corral.chaos.scenarios import RUNNERS, Facts, Session
from corral.chaos.spec import (
    ACT_DELAY_S,
    PROGRESS,
    SETTLE_S,
    SLOWLORIS_P99_FLOOR_MS,
    VERIFY_TIMEOUT_S,
    ChaosError,
    ScenarioSpec,
)
from corral.chaos.target import Target, settled_stats
from corral.chaos.verdicts import (
    Expectation,
    WindowStats,
    cross_checks,
    latency_within,
    phase_ok,
    stats_delta,
    window_stats,
)

# ------------------------------------------------------------------------- load in a thread


class LoadThread:
    """``run_load`` in a thread; ``t0`` (the run's start, monotonic) is learnt from progress."""

    def __init__(self, config: LoadConfig) -> None:
        self.config = config
        self.stop = threading.Event()
        self.started = threading.Event()
        self.t0 = 0.0
        self.result: LoadResult | None = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="chaos-load", daemon=True)

    def _progress(self, p: Progress) -> None:
        if not self.started.is_set():
            self.t0 = time.monotonic() - p.elapsed_s
            self.started.set()

    def _run(self) -> None:
        try:
            self.result = run_load(self.config, stop=self.stop, on_progress=self._progress)
        except BaseException as exc:  # reported by the main thread
            self.error = exc
        finally:
            self.started.set()

    def finish(self, timeout: float) -> LoadResult | None:
        self.stop.set()
        self.thread.join(timeout)
        return self.result


# ------------------------------------------------------------------------------- the session


@dataclass
class Phase:
    """One phase: where it sits in the run (whole seconds from t0) and what its scenario did."""

    label: str
    start_s: int
    end_s: int | None
    facts: Facts
    stats: WindowStats = field(default_factory=WindowStats)
    sla: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return phase_ok(self.stats.error_total, self.facts.allowed, self.facts.checks)


@dataclass
class Report:
    """Everything the session found; rendered as text or JSON."""

    target: str
    workers: int
    connections: int
    rate: float | None
    phases: list[Phase]
    totals: WindowStats
    duration_s: float
    sla: list[Check]
    server: dict[str, Any] | None
    cross: list[Expectation]
    problems: list[str]

    @property
    def ok(self) -> bool:
        return (
            all(p.ok for p in self.phases)
            and all_met(self.sla)
            and all(c.ok for c in self.cross)
            and not self.problems
        )


def run_phases(
    s: Session, load: LoadThread, specs: list[ScenarioSpec], say: PROGRESS
) -> list[Phase]:
    """Baseline, then each scenario, each on whole seconds of the load run's clock."""
    length = max(1, math.ceil(float(s.opts.phase_s)))
    phases = [Phase("baseline", 0, length, Facts(allowed=0))]
    say(f"baseline: seconds 0-{length}")
    for spec in specs:
        start_s = phases[-1].end_s or 0
        if time.monotonic() + length >= s.deadline:
            phases.append(Phase(spec.label, start_s, start_s, Facts(checks=[_skipped()])))
            continue
        s.pause_until(load.t0 + start_s)
        say(f"{spec.label}: from second {start_s}")
        begin = load.t0 + start_s
        facts = _run_one(s, spec, begin + ACT_DELAY_S, begin + length)
        end_s = max(start_s + length, math.ceil(time.monotonic() - load.t0) + SETTLE_S)
        phases.append(Phase(spec.label, start_s, end_s, facts))
        if not s.target.alive():
            facts.checks.append(Expectation("master alive", False, "the master exited"))
            break
    s.pause_until(load.t0 + (phases[-1].end_s or 0))
    phases[-1].end_s = None  # the last phase keeps the tail second the stop leaves
    return phases


def _run_one(s: Session, spec: ScenarioSpec, start: float, end: float) -> Facts:
    """One scenario; a target that vanished under it fails the phase instead of the session."""
    try:
        return RUNNERS[spec.name](s, spec, start, end)
    except ChaosError as exc:
        return Facts(checks=[Expectation("ran", False, str(exc))])
    finally:
        s.cleanup()


def _skipped() -> Expectation:
    return Expectation("ran", False, "skipped: --max-time-s reached")


def finish_report(
    s: Session,
    phases: list[Phase],
    result: LoadResult,
    objectives: tuple[Objective, ...],
    server: dict[str, Any] | None,
    problems: list[str],
) -> Report:
    """Attribute the series to phases and evaluate every expectation, SLA and cross-check."""
    for phase in phases:
        phase.stats = window_stats(result.series, phase.start_s, phase.end_s)
        phase.sla = evaluate(objectives, phase.stats.measures()) if objectives else []
    _slowloris_latency(phases)
    totals = window_stats(result.series, 0, None)
    kills = sum(p.facts.kills for p in phases)
    hangs = sum(p.facts.hangs for p in phases)
    opts = s.opts
    return Report(
        target=s.target.url,
        workers=s.target.workers,
        connections=int(opts.connections),
        rate=opts.rate,
        phases=phases,
        totals=totals,
        duration_s=result.duration_s,
        sla=evaluate(objectives, totals.measures()) if objectives else [],
        server=server,
        cross=cross_checks(
            totals.ok_responses,
            server,
            kills,
            hangs,
            peak_rps=max((sec.requests for sec in result.series), default=0),
        ),
        problems=problems + [f"load generator: {f}" for f in result.worker_failures],
    )


def _slowloris_latency(phases: list[Phase]) -> None:
    base = phases[0].stats.latency_ms(99)
    for phase in phases[1:]:
        factor = phase.facts.p99_factor
        if factor is not None:
            p99 = phase.stats.latency_ms(99)
            ok = latency_within(p99, base, factor, SLOWLORIS_P99_FLOOR_MS)
            detail = f"{p99:.2f} ms vs baseline {base:.2f} ms (x{factor:g} or +50 ms)"
            phase.facts.checks.append(Expectation("p99 near baseline", ok, detail))


def load_config(target: Target, opts: argparse.Namespace, max_time_s: float) -> LoadConfig:
    path = opts.path if opts.path.startswith("/") else "/" + opts.path
    return LoadConfig(
        urls=(target.url.rstrip("/") + path,),
        connections=opts.connections,
        rate=opts.rate,
        duration_s=max_time_s,
        timeout_s=opts.request_timeout_s,
        max_time_s=max_time_s + 5.0,
    )


def planned_max_time(opts: argparse.Namespace, specs: list[ScenarioSpec]) -> float:
    """The session's hard bound: as given, or the phases plus generous verification time."""
    if opts.max_time_s is not None:
        return float(opts.max_time_s)
    per_phase = float(opts.phase_s) + VERIFY_TIMEOUT_S
    hang = sum(float(opts.hang_wait_s) for spec in specs if spec.name == "hang")
    return float(opts.phase_s) + per_phase * len(specs) + hang + 30.0


def run_session(
    target: Target,
    opts: argparse.Namespace,
    specs: list[ScenarioSpec],
    objectives: tuple[Objective, ...],
    say: PROGRESS,
) -> Report:
    """Load + phases + verdicts against a ready ``target``; always cleans up what it did."""
    max_time = planned_max_time(opts, specs)
    s = Session(target, opts, time.monotonic() + max_time, rng=random.Random(opts.seed))
    before = target.stats()
    load = LoadThread(load_config(target, opts, max_time))
    load.thread.start()
    problems: list[str] = []
    try:
        if not load.started.wait(10.0) or load.error is not None:
            raise ChaosError(f"the load generator did not start: {load.error}")
        phases = run_phases(s, load, specs, say)
    finally:
        s.cleanup()
        result = load.finish(timeout=max_time + 30.0)
    if result is None:
        raise ChaosError(f"the load generator failed: {load.error}")
    if time.monotonic() > s.deadline:
        problems.append(f"session overran --max-time-s {max_time:g}")
    after = settled_stats(target) if before else None
    server = stats_delta(before["totals"], after["totals"]) if before and after else None
    return finish_report(s, phases, result, objectives, server, problems)
