"""locust as a load engine: ``corral bench --locustfile`` and ``corral chaos --locustfile``.

Complex scenarios (logins, several endpoints with weights, think time, distributed load
across machines) are what locust is for; corral's own generator stays the tool for one URL
at a known concurrency or rate. corral runs locust headless as a subprocess in its own
session (corral.launch)::

    python -m locust -f FILE --headless -u USERS -r SPAWN_RATE -t SECONDS --host URL \\
        --csv PREFIX --csv-full-history --only-summary

and reads what it wrote:

* ``PREFIX_stats.csv``: one row per endpoint (``Type``, ``Name``, counts, response-time
  percentiles in ms) and an ``Aggregated`` row. These are locust's whole-run figures and
  become the per-endpoint table and SLA verdicts of the report, exactly as locust computed
  them.
* ``PREFIX_stats_history.csv``: a row a second (``Timestamp`` in Unix seconds) with running
  totals and the *current* percentiles (locust's rolling window). chaos turns the
  ``Aggregated`` rows into corral's per-second series -- requests and failures are the
  differences of the running totals, so they split exactly; the latency of a second is
  rebuilt from its percentiles, so a phase's p99 is locust's rolling figure, not exact.
  Whatever locust counted after its last history row (at most a second) is added to the
  last second from the final stats, so the totals match locust's.

locust counts a request as failed for a connection error *or* an HTTP status >= 400 and does
not tell them apart per second; corral counts every locust failure as a ``non_2xx`` error of
a completed request (so "errors" and "error %" are locust's failures over its requests).
SIGTERM makes locust stop and write its final CSV; corral sends it when a chaos session ends.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from corral.bench.config import DEFAULT_DURATION_S, parse_duration
from corral.bench.result import SecondStats, bucket_us
from corral.bench.sla import Check, Measures, Objective, evaluate
from corral.launch import Launched, spawn

# locust's history percentile columns and the share of a second's requests each one stands
# for when the second's latency histogram is rebuilt (the shares add up to 1)
PERCENTILES = (
    ("50%", 0.50),
    ("66%", 0.66),
    ("75%", 0.75),
    ("80%", 0.80),
    ("90%", 0.90),
    ("95%", 0.95),
    ("98%", 0.98),
    ("99%", 0.99),
    ("99.9%", 0.999),
    ("99.99%", 0.9999),
    ("100%", 1.0),
)
STOP_GRACE_S = 10.0


class LocustError(Exception):
    """locust could not run or wrote nothing usable; one line for the user."""


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One row of ``PREFIX_stats.csv`` (times in ms, as locust writes them)."""

    method: str
    name: str
    requests: int
    failures: int
    median_ms: float
    average_ms: float
    max_ms: float
    rps: float
    percentiles_ms: dict[str, float] = field(default_factory=dict)

    def measures(self) -> Measures:
        p = self.percentiles_ms
        latency = {
            "p50": p.get("50%", self.median_ms),
            "p90": p.get("90%", 0.0),
            "p99": p.get("99%", 0.0),
            "p999": p.get("99.9%", 0.0),
            "max": self.max_ms,
        }
        return Measures(self.requests, 0, self.failures, latency, self.rps)

    def as_dict(self) -> dict[str, object]:
        return {
            "method": self.method,
            "name": self.name,
            "requests": self.requests,
            "failures": self.failures,
            "rps": round(self.rps, 3),
            "p50_ms": self.percentiles_ms.get("50%", self.median_ms),
            "p90_ms": self.percentiles_ms.get("90%", 0.0),
            "p99_ms": self.percentiles_ms.get("99%", 0.0),
            "max_ms": round(self.max_ms, 3),
            "average_ms": round(self.average_ms, 3),
        }


def _num(text: str | None) -> float:
    try:
        return float(text or "")
    except ValueError:
        return 0.0  # "N/A" before the first response


def parse_stats(text: str) -> list[Endpoint]:
    """``PREFIX_stats.csv`` -> endpoints, the ``Aggregated`` row last."""
    out = []
    for row in csv.DictReader(io.StringIO(text)):
        out.append(
            Endpoint(
                method=row.get("Type") or "",
                name=row.get("Name") or "",
                requests=int(_num(row.get("Request Count"))),
                failures=int(_num(row.get("Failure Count"))),
                median_ms=_num(row.get("Median Response Time")),
                average_ms=_num(row.get("Average Response Time")),
                max_ms=_num(row.get("Max Response Time")),
                rps=_num(row.get("Requests/s")),
                percentiles_ms={col: _num(row.get(col)) for col, _ in PERCENTILES},
            )
        )
    return out


def second_latency(n: int, row: dict[str, str]) -> dict[int, int]:
    """A second's bucketed latency rebuilt from locust's percentiles for ``n`` requests."""
    out: dict[int, int] = {}
    placed = 0
    for col, q in PERCENTILES:
        upto = round(q * n)
        count, placed = upto - placed, max(upto, placed)
        if count > 0:
            key = bucket_us(max(int(_num(row.get(col)) * 1000), 1))
            out[key] = out.get(key, 0) + count
    return out


def parse_history(text: str, t0_wall: float) -> list[SecondStats]:
    """``PREFIX_stats_history.csv`` -> corral's per-second series from the Aggregated rows
    (second ``s`` holds what locust counted between its rows at s and s + 1 from ``t0_wall``)."""
    rows = [r for r in csv.DictReader(io.StringIO(text)) if r.get("Name") == "Aggregated"]
    seconds: dict[int, SecondStats] = {}
    prev_req = prev_fail = 0
    for row in rows:
        total, fails = int(_num(row["Total Request Count"])), int(_num(row["Total Failure Count"]))
        n, f = total - prev_req, fails - prev_fail
        prev_req, prev_fail = max(total, prev_req), max(fails, prev_fail)
        if n <= 0:
            continue
        sec = max(int(_num(row["Timestamp"]) - t0_wall) - 1, 0)
        stats = seconds.setdefault(sec, SecondStats(sec))
        stats.merge(SecondStats(sec, n, 0, {"non_2xx": f} if f else {}, second_latency(n, row)))
    return [seconds[s] for s in sorted(seconds)]


def top_up(series: list[SecondStats], aggregated: Endpoint | None) -> None:
    """Add what locust counted after its last history row to the last second."""
    if aggregated is None or not series:
        return
    n = aggregated.requests - sum(s.requests for s in series)
    f = aggregated.failures - sum(s.errors.get("non_2xx", 0) for s in series)
    last = series[-1]
    if n > 0:
        median = bucket_us(max(int(aggregated.percentiles_ms.get("50%", 0) * 1000), 1))
        last.merge(SecondStats(last.second, n, 0, {"non_2xx": max(f, 0)}, {median: n}))


def locust_command(
    locustfile: str,
    host: str,
    users: int,
    spawn_rate: float,
    duration_s: float,
    prefix: Path,
    python: str = sys.executable,
) -> list[str]:
    return [
        python,
        "-m",
        "locust",
        "-f",
        str(Path(locustfile).resolve()),  # locust runs in its own work directory
        "--headless",
        "-u",
        str(users),
        "-r",
        f"{spawn_rate:g}",
        "-t",
        f"{max(1, round(duration_s))}s",
        "--host",
        host.rstrip("/"),
        "--csv",
        str(prefix),
        "--csv-full-history",
        "--only-summary",
    ]


@dataclass
class LocustOutcome:
    endpoints: list[Endpoint]
    series: list[SecondStats]
    duration_s: float
    status: int | None
    log: str

    @property
    def aggregated(self) -> Endpoint | None:
        rows = [e for e in self.endpoints if e.name == "Aggregated"]
        return rows[0] if rows else None

    @property
    def per_endpoint(self) -> list[Endpoint]:
        return [e for e in self.endpoints if e.name != "Aggregated"]


class LocustRun:
    """One locust subprocess; usable as a chaos ``Load`` (``begin``/``end``, ``t0``)."""

    def __init__(self, argv: list[str], workdir: Path) -> None:
        self.argv = argv
        self.prefix = Path(argv[argv.index("--csv") + 1])
        self.workdir = workdir
        self.log = workdir / "locust.log"
        self.launched: Launched | None = None
        self.t0 = 0.0
        self.t0_wall = 0.0
        self.outcome: LocustOutcome | None = None

    def begin(self, timeout_s: float = 10.0) -> None:
        try:
            self.launched = spawn(self.argv, log_path=self.log, cwd=self.workdir, ready_pipe=False)
        except OSError as exc:
            raise LocustError(f"cannot start locust: {exc}") from None
        self.t0, self.t0_wall = time.monotonic(), time.time()

    def wait(self, timeout_s: float) -> LocustOutcome:
        """Let locust finish its own ``-t`` run (TERM at the deadline), then read its CSVs."""
        assert self.launched is not None
        try:
            self.launched.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            pass
        return self._collect()

    def end(self, timeout_s: float) -> tuple[list[SecondStats], float]:
        """Stop now (SIGTERM: locust writes its final CSV), and return the series."""
        assert self.launched is not None
        if self.launched.proc.poll() is None:
            self.launched.proc.send_signal(signal.SIGTERM)
        outcome = self.wait(min(timeout_s, STOP_GRACE_S))
        return outcome.series, outcome.duration_s

    def _collect(self) -> LocustOutcome:
        assert self.launched is not None
        duration = time.monotonic() - self.t0
        status = self.launched.stop(STOP_GRACE_S, term_group=True)
        log = self.launched.log_tail(20)
        try:
            stats = Path(f"{self.prefix}_stats.csv").read_text()
            history = Path(f"{self.prefix}_stats_history.csv").read_text()
        except OSError:
            raise LocustError(f"locust wrote no statistics (status {status}):\n{log}") from None
        endpoints = parse_stats(stats)
        series = parse_history(history, self.t0_wall)
        self.outcome = LocustOutcome(endpoints, series, duration, status, log)
        top_up(series, self.outcome.aggregated)
        return self.outcome


# ------------------------------------------------------------------- corral bench --locustfile


def run_bench(
    locustfile: str, host: str, users: int, spawn_rate: float, duration_s: float, workdir: Path
) -> LocustOutcome:
    """One bounded headless locust run (its own ``-t``, then TERM at ``-t`` + 15 s)."""
    argv = locust_command(locustfile, host, users, spawn_rate, duration_s, workdir / "locust")
    run = LocustRun(argv, workdir)
    run.begin()
    return run.wait(duration_s + 15.0)


def endpoint_checks(outcome: LocustOutcome, objectives: tuple[Objective, ...]) -> list[Check]:
    """The SLA on the Aggregated row (the verdict) -- per endpoint checks are in the JSON."""
    agg = outcome.aggregated
    return evaluate(objectives, agg.measures()) if agg is not None and objectives else []


def bench_dict(outcome: LocustOutcome, objectives: tuple[Objective, ...]) -> dict[str, Any]:
    """``corral bench --locustfile --json``."""
    agg = outcome.aggregated

    def checks(e: Endpoint) -> list[dict[str, Any]]:
        return [
            {"objective": c.objective.text, "actual": c.actual, "ok": c.ok}
            for c in evaluate(objectives, e.measures())
        ]

    return {
        "engine": "locust",
        "duration_s": round(outcome.duration_s, 3),
        "locust_status": outcome.status,
        "endpoints": [{**e.as_dict(), "sla": checks(e)} for e in outcome.per_endpoint],
        "aggregated": None if agg is None else {**agg.as_dict(), "sla": checks(agg)},
        "series": [
            {"second": s.second, "requests": s.requests, "failures": s.error_total()}
            for s in outcome.series
        ],
        "sla_ok": all(c.ok for c in endpoint_checks(outcome, objectives)),
    }


def bench_text(outcome: LocustOutcome, objectives: tuple[Objective, ...]) -> str:
    """``corral bench --locustfile``: a row per endpoint as locust measured it, then the SLA."""
    head = ["method", "name", "requests", "failures", "rps", "p50 ms", "p90 ms", "p99 ms", "max ms"]
    rows = [head]
    for e in outcome.endpoints:
        d = e.as_dict()
        rows.append(
            [
                e.method,
                e.name,
                str(e.requests),
                str(e.failures),
                f"{e.rps:.1f}",
                *(f"{float(str(d[k])):g}" for k in ("p50_ms", "p90_ms", "p99_ms")),
                f"{e.max_ms:.1f}",
            ]
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = [f"corral bench (locust, {outcome.duration_s:.1f} s)", ""]
    lines += [
        "  ".join(
            c.ljust(w) if i < 2 else c.rjust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        )
        for r in rows
    ]
    lines += [f"SLA {c.describe()}" for c in endpoint_checks(outcome, objectives)]
    return "\n".join(lines) + "\n"


def bench_main(args: argparse.Namespace, objectives: tuple[Objective, ...]) -> int:
    """``corral bench --locustfile FILE URL``: exit 0 when requests completed and the SLA (on
    the Aggregated row) was met, 1 otherwise, 2 for bad usage."""
    duration = parse_duration(args.duration) if args.duration else DEFAULT_DURATION_S
    if not args.url:
        print("corral bench: --locustfile needs the URL of the host to load", file=sys.stderr)
        return 2
    if not Path(args.locustfile).is_file():
        print(f"corral bench: --locustfile {args.locustfile}: no such file", file=sys.stderr)
        return 2
    users = int(args.connections)
    with tempfile.TemporaryDirectory(prefix="corral-locust-") as tmp:
        try:
            outcome = run_bench(
                args.locustfile, args.url, users, args.spawn_rate or users, duration, Path(tmp)
            )
        except LocustError as exc:
            print(f"corral bench: {exc}", file=sys.stderr)
            return 1
    if args.json:
        sys.stdout.write(json.dumps(bench_dict(outcome, objectives), indent=2) + "\n")
    else:
        sys.stdout.write(bench_text(outcome, objectives))
    agg = outcome.aggregated
    ok = agg is not None and agg.requests > 0
    return 0 if ok and all(c.ok for c in endpoint_checks(outcome, objectives)) else 1
