"""A fleet session: load through the balancer, one phase per drill on the load's own clock,
the balancer's counters snapshotted at every phase boundary, and the per-phase verdict.

Phases are whole seconds of the load generator's clock, as in a one-host session (see
session.py), so the per-second series splits exactly into phases. At each boundary chaos
reads HAProxy's ``show stat`` (nginx's log is split by its own timestamps afterwards), so each
phase carries the balancer's view of the same window.

Attribution. A failed request belongs to the phase whose window holds the second it failed
in (a phase lasts until its drill has verified itself, plus a settling second), and within the
phase to a host: the balancer's per-server error counters when it has them (``eresp``, 5xx
by server, or nginx's ``$upstream_addr``), else the host(s) the drill signalled. Failures left
once the balancer's per-server counts are used up (a cut HAProxy passed on, a client-side
timeout) go to the signalled host(s) too, so a phase's charges add up to at least its failed
requests: every failure has a phase and a host. The check "failures on signalled hosts" fails
when the balancer blames a host the drill never touched.

Agreement. Per phase and for the run, the client's errors (failed attempts + non-2xx) and the
balancer's (4xx + 5xx answered) must agree within ``AGREE_SLACK`` (an error completing on one
side of a boundary snapshot and counted on the other), and the client's attempts and the
balancer's requests within the requests in flight at the two boundaries (``-c`` each).
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from corral.bench.config import LoadConfig
from corral.bench.result import SecondStats
from corral.bench.sla import Check, Objective, all_met, evaluate
from corral.chaos.balancer import (
    Balancer,
    BalancerError,
    Counts,
    server_failures,
    windows_from_log,
)
from corral.chaos.fleet import DRILLS, Drill, HostFleet
from corral.chaos.session import LoadThread
from corral.chaos.spec import ACT_DELAY_S, PROGRESS, SETTLE_S, ChaosError, ScenarioSpec
from corral.chaos.verdicts import Expectation, WindowStats, phase_ok, window_stats

AGREE_SLACK = 2  # errors: one in flight across each of a phase's two boundary snapshots


class Load(Protocol):
    """The load engine of a session: corral's own (``BuiltinLoad``) or locust's."""

    t0: float  # monotonic time of the load's second 0

    def begin(self, timeout_s: float) -> None: ...  # started, t0 known; ChaosError otherwise

    def end(self, timeout_s: float) -> tuple[list[SecondStats], float]: ...  # series, seconds


@dataclass
class FleetPhase:
    """One drill's window: the client's figures, the balancer's, and the verdict."""

    label: str
    start_s: int
    end_s: int | None
    drill: Drill
    stats: WindowStats = field(default_factory=WindowStats)
    sla: list[Check] = field(default_factory=list)
    balancer: Counts | None = None
    agree: list[Expectation] = field(default_factory=list)
    blame: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        checks = [*self.drill.checks, *self.agree]
        return phase_ok(self.stats.error_total, self.drill.allowed, checks)

    @property
    def sla_ok(self) -> bool:
        return all_met(self.sla)


@dataclass
class FleetReport:
    balancer_url: str
    hosts: list[str]
    load: str  # "-c 8", "rate 500/s", "locust -u 10"
    balancer_kind: str | None
    phases: list[FleetPhase]
    totals: WindowStats
    balancer_totals: Counts | None
    agree: list[Expectation]
    sla: list[Check]
    series: list[SecondStats]
    duration_s: float
    problems: list[str]
    endpoints: list[dict[str, object]] = field(default_factory=list)  # locust's, per endpoint

    @property
    def ok(self) -> bool:
        return (
            all(p.ok for p in self.phases)
            and all(c.ok for c in self.agree)
            and all_met(self.sla)
            and not self.problems
        )


def _snapshot(balancer: Balancer | None, problems: list[str]) -> Counts | None:
    if balancer is None or balancer.kind != "haproxy":
        return None
    try:
        return balancer.snapshot()
    except BalancerError as exc:
        problems.append(str(exc))
        return None


def run_fleet_phases(
    fleet: HostFleet,
    load: Load,
    specs: list[ScenarioSpec],
    say: PROGRESS,
    problems: list[str],
) -> tuple[list[FleetPhase], list[Counts | None]]:
    """Baseline, then each drill; a balancer snapshot at the start of every phase."""
    length = max(1, math.ceil(fleet.phase_s))
    phases = [FleetPhase("baseline", 0, length, Drill(allowed=0))]
    snaps: list[Counts | None] = []
    say(f"baseline: seconds 0-{length}")
    for spec in specs:
        start_s = phases[-1].end_s or 0
        fleet.pause_until(load.t0 + start_s)
        snaps.append(_snapshot(fleet.balancer, problems))
        if time.monotonic() + length >= fleet.deadline:
            skipped = Drill(checks=[Expectation("ran", False, "skipped: --max-time-s reached")])
            phases.append(FleetPhase(spec.label, start_s, start_s, skipped))
            continue
        say(f"{spec.label}: from second {start_s}")
        begin = load.t0 + start_s
        drill = _run_drill(fleet, spec, begin + ACT_DELAY_S, begin + length)
        end_s = max(start_s + length, math.ceil(time.monotonic() - load.t0) + SETTLE_S)
        phases.append(FleetPhase(spec.label, start_s, end_s, drill))
    fleet.pause_until(load.t0 + (phases[-1].end_s or 0))
    phases[-1].end_s = None
    return phases, snaps


def _run_drill(fleet: HostFleet, spec: ScenarioSpec, start: float, end: float) -> Drill:
    try:
        return DRILLS[spec.name](fleet, spec, start, end)
    except ChaosError as exc:
        return Drill(checks=[Expectation("ran", False, str(exc))])
    finally:
        fleet.cleanup()


def balancer_windows(
    fleet: HostFleet,
    phases: list[FleetPhase],
    snaps: list[Counts | None],
    t0_wall: float,
    problems: list[str],
    end_s: float = math.inf,
) -> tuple[list[Counts | None], Counts | None]:
    """Per-phase and whole-run balancer counts: snapshot deltas (HAProxy) or the log split by
    the phases' wall-clock windows (nginx)."""
    b = fleet.balancer
    if b is None:
        return [None] * len(phases), None
    if b.kind == "nginx":
        try:
            lines = b.nginx_lines()
        except BalancerError as exc:
            problems.append(str(exc))
            return [None] * len(phases), None
        # the last phase ends when the load is told to stop: a request it abandons then is
        # logged 499 once nginx notices, later, and was never the client's to count
        ends = [float(p.end_s) if p.end_s is not None else end_s for p in phases]
        bounds = [(t0_wall + p.start_s, t0_wall + e) for p, e in zip(phases, ends, strict=True)]
        bounds[0] = (-math.inf, bounds[0][1])
        got = windows_from_log(lines, bounds)
        total = Counts()
        for c in got:
            total.add(c)
        return list(got), total
    if any(s is None for s in snaps):
        return [None] * len(phases), None
    full = [s for s in snaps if s is not None]
    windows: list[Counts | None] = [b.minus(a) for a, b in itertools.pairwise(full)]
    return windows, full[-1].minus(full[0])


def agreement(st: WindowStats, counts: Counts, inflight: int, boundaries: int) -> list[Expectation]:
    """The client's errors and attempts against the balancer's (see the module doc)."""
    client_attempts = st.requests + st.failed
    slack = max(AGREE_SLACK, math.ceil(0.02 * st.error_total))
    err_ok = abs(st.error_total - counts.errors) <= slack
    req_slack = inflight * boundaries
    req_ok = abs(client_attempts - counts.requests) <= req_slack
    return [
        Expectation(
            "errors agree with balancer",
            err_ok,
            f"client {st.error_total}, balancer {counts.errors} (within {slack})",
        ),
        Expectation(
            "requests agree with balancer",
            req_ok,
            f"client {client_attempts}, balancer {counts.requests} (within {req_slack})",
        ),
    ]


def blame(phase: FleetPhase) -> tuple[dict[str, int], list[Expectation]]:
    """Which host each failure of the phase is charged to, and whether the balancer's blame
    falls on a host the drill signalled."""
    errors = phase.stats.error_total
    if errors == 0:
        return {}, []
    counts = phase.balancer
    by_server = {}
    if counts is not None:
        by_server = {
            name: server_failures(row)
            for name, row in counts.servers.items()
            if not name.endswith("/BACKEND")
        }
        by_server = {k: v for k, v in by_server.items() if v}
    victims = phase.drill.victims
    signalled = "/".join(victims) or "no host signalled"
    if not by_server:
        return {signalled: errors}, []
    strays = sorted(set(by_server) - set(victims) - {"-"})
    check = Expectation(
        "failures on signalled hosts",
        not strays,
        f"balancer blames {', '.join(strays)}" if strays else ", ".join(sorted(by_server)),
    )
    rest = errors - sum(by_server.values())
    if rest > 0:  # failures no server counter names: charged to the drill's hosts
        by_server[signalled] = by_server.get(signalled, 0) + rest
    return by_server, [check]


def finish_fleet(
    phases: list[FleetPhase],
    windows: list[Counts | None],
    total_counts: Counts | None,
    series: list[SecondStats],
    objectives: tuple[Objective, ...],
    inflight: int,
) -> tuple[WindowStats, list[Expectation], list[Check]]:
    """Fold the series into phases; SLA, attribution and agreement per phase and overall."""
    for phase, counts in zip(phases, windows, strict=True):
        phase.stats = window_stats(series, phase.start_s, phase.end_s)
        phase.sla = evaluate(objectives, phase.stats.measures()) if objectives else []
        phase.balancer = counts
        if counts is not None:
            phase.agree = agreement(phase.stats, counts, inflight, 2)
        phase.blame, checks = blame(phase)
        phase.agree += checks
    totals = window_stats(series, 0, None)
    agree = agreement(totals, total_counts, inflight, 1) if total_counts is not None else []
    sla = evaluate(objectives, totals.measures()) if objectives else []
    return totals, agree, sla


def run_fleet_session(
    fleet: HostFleet,
    load: Load,
    specs: list[ScenarioSpec],
    objectives: tuple[Objective, ...],
    say: PROGRESS,
    describe: Callable[[], tuple[str, str, int]],
    max_time_s: float,
) -> FleetReport:
    """Load + drills + verdicts; ``describe()`` gives (balancer URL, load label, in flight)."""
    problems: list[str] = []
    if fleet.balancer is not None:
        try:
            fleet.balancer.mark()
        except BalancerError as exc:
            problems.append(str(exc))
    first = _snapshot(fleet.balancer, problems)  # before the load's first request
    load.begin(10.0)
    t0_wall = time.time() - (time.monotonic() - load.t0)
    try:
        phases, snaps = run_fleet_phases(fleet, load, specs, say, problems)
        snaps.insert(0, first)
    finally:
        fleet.cleanup()
        stop_s = time.monotonic() - load.t0  # what the load answered is logged before this
        series, duration = load.end(max_time_s + 30.0)
    snaps.append(_snapshot(fleet.balancer, problems))
    if time.monotonic() > fleet.deadline:
        problems.append(f"session overran --max-time-s {max_time_s:g}")
    windows, total_counts = balancer_windows(fleet, phases, snaps, t0_wall, problems, stop_s)
    url, label, inflight = describe()
    totals, agree, sla = finish_fleet(phases, windows, total_counts, series, objectives, inflight)
    return FleetReport(
        balancer_url=url,
        hosts=[h.addr for h in fleet.hosts],
        load=label,
        balancer_kind=fleet.balancer.kind if fleet.balancer else None,
        phases=phases,
        totals=totals,
        balancer_totals=total_counts,
        agree=agree,
        sla=sla,
        series=series,
        duration_s=duration,
        problems=problems,
    )


class BuiltinLoad:
    """corral's own load generator (``-c`` closed loop or ``--rate``) as a session's ``Load``."""

    def __init__(self, config: LoadConfig) -> None:
        self.thread = LoadThread(config)
        self.t0 = 0.0

    def begin(self, timeout_s: float) -> None:
        self.thread.thread.start()
        if not self.thread.started.wait(timeout_s) or self.thread.error is not None:
            raise ChaosError(f"the load generator did not start: {self.thread.error}")
        self.t0 = self.thread.t0

    def end(self, timeout_s: float) -> tuple[list[SecondStats], float]:
        result = self.thread.finish(timeout_s)
        if result is None:
            raise ChaosError(f"the load generator failed: {self.thread.error}")
        return result.series, result.duration_s
