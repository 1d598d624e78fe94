"""Drive the same traffic at each configuration and collect its figures.

For each configuration: start it, sample every worker at 0 requests, then send the traffic in
``SLICES`` equal slices (``--requests N``: N / SLICES each; ``--duration S``: S / SLICES seconds
each) with ``corral.bench`` (closed model, keep-alive) and sample every worker after each slice,
so the report can plot shared vs private memory *over requests*. After the last slice: the GC
collections and pauses and the pymalloc reports from the stats server's /stats (corral only),
and, unless turned off, a one-shot copy-on-write attribution of one worker (``corral cow
--attribute``: which types and modules sit on the pages it copied). The server is stopped in a
``finally`` whatever happened.

Latency is measured by the client (HdrHistogram over every slice, merged): the same meter for
corral and gunicorn. With a locustfile, locust drives each slice and its CSVs are the meter,
again the same for corral and gunicorn (latency rebuilt from locust's per-second percentiles).
"""

from __future__ import annotations

import contextlib
import math
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from corral.bench import locust
from corral.bench.config import LoadConfig
from corral.bench.result import LoadResult, ProcSummary, new_histogram
from corral.bench.runner import run_load
from corral.experiment import servers
from corral.experiment.traffic import Traffic
from corral.memory import cowcli
from corral.memory.proc import MemoryProbeError

SLICES = 5
CDF_PERCENTILES = (0, 5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95, 98, 99, 99.5, 99.9, 99.99, 100)
ATTRIBUTE_TOP = 8
ATTRIBUTE_TIMEOUT_S = 120.0
LOCUST_MIN_SLICE_S = 3.0  # locust's CSVs of a 1 s run can hold no request at all

Step = Callable[[str, int, int], None]  # (configuration, slices done, slices in all)
Sampled = Callable[[str, dict[str, Any]], None]  # (configuration, the sample just taken)


@dataclass(frozen=True)
class Plan:
    """One experiment: the options every configuration shares, and what to send."""

    opts: servers.Options
    traffic: Traffic
    requests: int | None
    duration_s: float | None
    connections: int
    attribute: bool = True
    log_dir: Path | None = None


def run_config(
    name: str, plan: Plan, on_step: Step | None = None, on_sample: Sampled | None = None
) -> dict[str, Any]:
    """Start ``name``, drive the traffic, collect; always stop it."""
    log_dir = plan.log_dir or Path(tempfile.mkdtemp(prefix="corral-experiment-"))
    log_path = log_dir / f"{name}.log"
    t0 = time.monotonic()
    server = servers.start(name, plan.opts, log_path)
    try:
        boot_s = time.monotonic() - t0
        return _measure(server, plan, boot_s, on_step, on_sample)
    finally:
        server.stop()


def _measure(
    server: servers.Server,
    plan: Plan,
    boot_s: float,
    on_step: Step | None,
    on_sample: Sampled | None,
) -> dict[str, Any]:
    servers.check_workers(server, plan.opts.workers)
    before = server.stats()
    samples = [_sample(server, 0, 0.0, on_sample)]
    samples[0]["gc"] = _gc_delta(before, before)
    results: list[LoadResult] = []
    sent, t_load = 0, time.monotonic()
    for i in range(SLICES):
        if on_step is not None:
            on_step(server.name, i, SLICES)
        result = _drive(server, plan, i)
        results.append(result)
        sent += result.requests
        sample = _sample(server, sent, time.monotonic() - t_load, on_sample)
        sample["slice"] = _slice_figures(result)
        sample["gc"] = _gc_delta(before, server.stats())  # collections so far, over time
        samples.append(sample)
    if on_step is not None:
        on_step(server.name, SLICES, SLICES)
    after = _settled(server, time.monotonic())
    doc: dict[str, Any] = {
        "name": server.name,
        "kind": "gunicorn" if server.name == servers.GUNICORN else "corral",
        "command": server.command,
        "master_pid": server.pid,
        "boot_s": round(boot_s, 3),
        "samples": samples,
        "load": _load_summary(results, "locust" if plan.traffic.kind == "locust" else "client"),
        "gc": _gc_delta(before, after),
        "malloc": [w.get("malloc") for w in (after or {}).get("workers", [])],
        "attribution": _attribute(server, plan) if plan.attribute else None,
    }
    return doc


def _sample(
    server: servers.Server, requests: int, t: float, on_sample: Sampled | None
) -> dict[str, Any]:
    workers = []
    for pid, parent in server.workers():
        with contextlib.suppress(MemoryProbeError, PermissionError):
            workers.append(servers.sample_worker(server, pid, parent))
    sample = {
        "requests": requests,
        "t": round(t, 3),
        "workers": workers,
        "fleet_pss": servers.fleet_pss(server.pid),
    }
    if on_sample is not None:
        on_sample(server.name, sample)
    return sample


# --- traffic ------------------------------------------------------------------------------------


def _drive(server: servers.Server, plan: Plan, index: int) -> LoadResult:
    if plan.traffic.kind == "locust":
        return _run_locust(server, plan)
    urls = tuple(server.url + p for p in _rotated(plan.traffic.paths, index))
    requests = None if plan.requests is None else max(1, plan.requests // SLICES)
    duration = None if plan.duration_s is None else plan.duration_s / SLICES
    config = LoadConfig(urls=urls, connections=plan.connections, requests=requests)
    if duration is not None:
        config = LoadConfig(urls=urls, connections=plan.connections, duration_s=duration)
    return run_load(config)


def _rotated(paths: tuple[str, ...], index: int) -> tuple[str, ...]:
    """Each slice starts further along the log, so a short slice still sees all of it."""
    if len(paths) <= 1:
        return paths
    k = (index * len(paths) // SLICES) % len(paths)
    return paths[k:] + paths[:k]


def _run_locust(server: servers.Server, plan: Plan) -> LoadResult:
    """One slice driven by locust (``--connections`` users for ``--duration`` / 5 seconds, at
    least ``LOCUST_MIN_SLICE_S``), its CSVs read back as a LoadResult: the same client-side
    meter for corral and gunicorn. The
    latency histogram is rebuilt from locust's per-second percentiles, so it is approximate;
    locust's failures (no response, or a status >= 400) count as ``locust_failures``."""
    seconds = max(LOCUST_MIN_SLICE_S, (plan.duration_s or 10.0 * SLICES) / SLICES)
    with tempfile.TemporaryDirectory(prefix="corral-experiment-locust-") as work:
        try:
            outcome = locust.run_bench(
                plan.traffic.locustfile,
                server.url,
                plan.connections,
                float(plan.connections),
                seconds,
                Path(work),
            )
        except locust.LocustError as exc:
            raise servers.ServerError(f"locust: {servers.why_failed(str(exc))}") from None
    agg = outcome.aggregated
    requests, failed = (agg.requests, agg.failures) if agg is not None else (0, 0)
    hist = new_histogram()
    for second in outcome.series:
        for us, n in second.latency_us.items():
            hist.record_value(max(1, us), n)
    errors = {"locust_failures": failed} if failed else {}
    return LoadResult(
        summary=ProcSummary(requests=requests, errors=errors),
        series=outcome.series,
        started=0.0,
        duration_s=requests / agg.rps if agg is not None and agg.rps else outcome.duration_s,
        connections=plan.connections,
        procs=1,
        rate=None,
        histogram=hist,
        connect_histogram=new_histogram(),
    )


# --- figures ------------------------------------------------------------------------------------


def _settled(
    server: servers.Server, load_end: float, timeout_s: float = 2.0
) -> dict[str, Any] | None:
    """/stats once its request total holds still (workers publish within ~5 ms) and every
    worker's pymalloc report was taken after the load (``t`` is the system-wide monotonic
    clock); the last read at the deadline."""
    deadline = time.monotonic() + timeout_s + servers.MALLOC_STATS_S
    doc = server.stats()
    while doc is not None and time.monotonic() < deadline:
        time.sleep(0.05)
        again = server.stats()
        if again is None:
            break
        fresh = all((w.get("malloc") or {}).get("t", 0) >= load_end for w in again["workers"])
        if again["totals"]["requests"] == doc["totals"]["requests"] and fresh:
            return again
        doc = again
    return doc


def _slice_figures(result: LoadResult) -> dict[str, Any]:
    """One slice's throughput and latency, as the client measured them."""
    return {
        "requests": result.requests,
        "rps": round(result.rps, 1),
        "p50_ms": round(result.latency_ms(50), 3),
        "p99_ms": round(result.latency_ms(99), 3),
    }


def _statuses(results: list[LoadResult]) -> tuple[dict[str, int], dict[str, int]]:
    """Responses by status, and attempts by error class, over every slice."""
    statuses: dict[str, int] = {}
    errors: dict[str, int] = {}
    for r in results:
        for status, n in r.summary.statuses.items():
            statuses[str(status)] = statuses.get(str(status), 0) + n
        for name, n in {**r.errors, **r.summary.errors}.items():  # locust's class too
            errors[name] = errors.get(name, 0) + n
    return statuses, errors


def failures(load: dict[str, Any]) -> int:
    """Requests that measured no page of the app: no complete response, or a 4xx/5xx. A 3xx
    (a replayed redirect) is an answer like any other."""
    classes = load.get("error_classes") or {}
    bad = sum(n for name, n in classes.items() if name != "non_2xx")
    statuses = load.get("statuses") or {}
    return int(bad) + sum(int(n) for status, n in statuses.items() if int(status) >= 400)


def _load_summary(results: list[LoadResult], source: str) -> dict[str, Any]:
    """Every slice merged; ``source`` is ``client`` (corral's meter) or ``locust``."""
    hist = new_histogram()
    for r in results:
        hist.add(r.histogram)
    requests = sum(r.requests for r in results)
    seconds = sum(r.duration_s for r in results)
    errors = sum(r.error_total for r in results)

    def ms(pct: float) -> float:
        return round(hist.get_value_at_percentile(pct) / 1000.0, 3) if requests else 0.0

    statuses, classes = _statuses(results)
    return {
        "source": source,
        "requests": requests,
        "errors": errors,
        "statuses": statuses,
        "error_classes": classes,
        "duration_s": round(seconds, 3),
        "rps": round(requests / seconds, 1) if seconds else 0.0,
        "p50_ms": ms(50),
        "p90_ms": ms(90),
        "p99_ms": ms(99),
        "p999_ms": ms(99.9),
        "max_ms": round(hist.get_max_value() / 1000.0, 3),
        "cdf": [[ms(p), p] for p in CDF_PERCENTILES],
    }


def _gc_delta(before: dict[str, Any] | None, after: dict[str, Any] | None) -> dict[str, Any] | None:
    if before is None or after is None:
        return None
    b, a = before["totals"]["gc"], after["totals"]["gc"]
    collections = [x - y for x, y in zip(a["collections"], b["collections"], strict=True)]
    pauses = [round(x - y, 6) for x, y in zip(a["pause_s"], b["pause_s"], strict=True)]
    total = sum(collections)
    mean_ms = 1000 * sum(pauses) / total if total else 0.0
    return {"collections": collections, "pause_s": pauses, "mean_pause_ms": round(mean_ms, 3)}


def _attribute(server: servers.Server, plan: Plan) -> dict[str, Any] | None:
    """The one-shot attribution of the first worker (corral only), or the reason it failed."""
    doc = server.stats()
    if doc is None or not doc["workers"]:
        return None
    try:
        report = cowcli.request_report(doc["workers"][0], ATTRIBUTE_TIMEOUT_S)
    except cowcli.CowError as exc:
        return {"error": str(exc)}
    keep = ("pid", "copied_bytes", "attributed_bytes", "objects_on_copied_pages", "walk_s")
    out = {k: report.get(k) for k in keep}
    out["types"] = report.get("types", [])[:ATTRIBUTE_TOP]
    out["modules"] = report.get("modules", [])[:ATTRIBUTE_TOP]
    return out


def fit(budget_bytes: int, baseline: float, worker_uss: float) -> int:
    """Workers that fit in ``budget_bytes`` when each added one costs ``worker_uss``."""
    if worker_uss <= 0:
        return 0
    return max(0, math.floor((budget_bytes - baseline) / worker_uss))
