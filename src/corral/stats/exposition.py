"""Render a ``FleetSnapshot`` as Prometheus text (``/metrics``) and as JSON (``/stats``).

Prometheus: text exposition format 0.0.4 (one ``# HELP`` and ``# TYPE`` per family, samples
``name{label="value"} number``, label values escaped for ``\\``, ``"`` and newline). Names follow
the Prometheus conventions: base units (seconds, bytes), ``_total`` on counters. Every counter is
retired + live, so it never goes backwards when a worker is replaced. Label choices:

* ``worker`` is the worker's position: its scoreboard slot index, a bounded set reused across
  replacements (uWSGI's exporter labels by worker position the same way), never a pid or a
  worker id that grows with each replacement; /stats maps slot ``index`` to ``id`` and ``pid``.
  ``status`` is the status class (``1xx``..``5xx``), not the exact code, to bound cardinality
  (gunicorn's statsd ``gunicorn.request.status.<code>`` does not).
* ``corral_request_duration_seconds`` is fleet-wide with one ``le`` per power of two from 50 µs
  to ~52 s: each edge is an exact edge of the scoreboard's 8-per-octave buckets, so cumulative
  counts are exact, not interpolated.
* ``corral_gc_pause_seconds`` is a summary without quantiles (``_sum``/``_count`` per generation).
* ``corral_worker_restarts_total`` counts unplanned replacements (crash, timeout);
  ``corral_worker_recycles_total{reason}`` counts every replacement by reason (a worker stopped
  because the master is stopping was not replaced and is not counted).

JSON (``/stats``): ``snapshot_dict`` documents the schema field by field; times are seconds,
latencies milliseconds, memory bytes, absent figures ``null``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from typing import Any

from corral.memory import mallocstats
from corral.stats import histogram
from corral.stats.fleet import (
    MEMORY_KINDS,
    Counters,
    FleetSnapshot,
    Window,
    WorkerView,
    state_name,
)
from corral.stats.protocol import WorkerState
from corral.stats.scoreboard import STATUS_CLASSES

CONTENT_TYPE_PROMETHEUS = "text/plain; version=0.0.4; charset=utf-8"
CONTENT_TYPE_JSON = "application/json"
SCHEMA_VERSION = 1
_EXPORTED_STATES = (WorkerState.BOOTING, WorkerState.READY, WorkerState.DRAINING)

Labels = Mapping[str, str]
Sample = tuple[str, Labels, float | int]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _num(v: float | int) -> str:
    if isinstance(v, int):
        return str(v)
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    if math.isnan(v):
        return "NaN"
    return repr(v)


def _sample(name: str, labels: Labels, value: float | int) -> str:
    if not labels:
        return f"{name} {_num(value)}"
    inner = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
    return f"{name}{{{inner}}} {_num(value)}"


def _family(name: str, kind: str, help_text: str, samples: Iterable[Sample]) -> list[str]:
    lines = [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
    lines += [_sample(n, labels, v) for n, labels, v in samples]
    return lines


def _requests(snap: FleetSnapshot) -> list[Sample]:
    out: list[Sample] = []
    for index in sorted(snap.by_slot):
        c = snap.by_slot[index]
        for cls, n in zip(STATUS_CLASSES, c.by_status, strict=True):
            out.append(("corral_requests_total", {"worker": str(index), "status": cls}, n))
    return out


def _duration(c: Counters) -> list[Sample]:
    name = "corral_request_duration_seconds"
    out: list[Sample] = []
    cumulative = 0
    upto = 0
    for index, edge in histogram.octave_bounds():
        cumulative += sum(c.histogram[upto : index + 1])
        upto = index + 1
        out.append((f"{name}_bucket", {"le": _num(edge)}, cumulative))
    count = sum(c.histogram)
    out.append((f"{name}_bucket", {"le": "+Inf"}, count))
    out.append((f"{name}_sum", {}, c.duration_sum_s))
    out.append((f"{name}_count", {}, count))
    return out


def _per_worker(snap: FleetSnapshot, name: str, attr: str) -> list[Sample]:
    return [(name, {"worker": str(w.slot.index)}, getattr(w.slot, attr)) for w in snap.workers]


def _memory(snap: FleetSnapshot) -> list[Sample]:
    out: list[Sample] = []
    for w in snap.workers:
        for kind in MEMORY_KINDS:
            if w.memory is not None and kind in w.memory:
                labels = {"worker": str(w.slot.index), "kind": kind}
                out.append(("corral_worker_memory_bytes", labels, w.memory[kind]))
    return out


def _heartbeat_age(snap: FleetSnapshot) -> list[Sample]:
    name = "corral_worker_heartbeat_age_seconds"
    return [
        (name, {"worker": str(w.slot.index)}, max(0.0, snap.now - w.slot.heartbeat))
        for w in snap.workers
    ]


def _states(snap: FleetSnapshot) -> list[Sample]:
    counts = dict.fromkeys(_EXPORTED_STATES, 0)
    for w in snap.workers:
        counts[w.slot.state] = counts.get(w.slot.state, 0) + 1
    return [("corral_workers", {"state": state_name(s)}, n) for s, n in counts.items()]


def _gc(c: Counters) -> tuple[list[Sample], list[Sample]]:
    counts: list[Sample] = []
    pauses: list[Sample] = []
    for g in range(3):
        label = {"generation": str(g)}
        counts.append(("corral_gc_collections_total", label, c.gc_collections[g]))
        pauses.append(("corral_gc_pause_seconds_sum", label, c.gc_pause_s[g]))
        pauses.append(("corral_gc_pause_seconds_count", label, c.gc_collections[g]))
    return counts, pauses


def render_prometheus(snap: FleetSnapshot) -> str:
    """The /metrics body (text format 0.0.4), newline-terminated."""
    t = snap.totals
    gc_counts, gc_pauses = _gc(t)
    recycles = [
        ("corral_worker_recycles_total", {"reason": r}, n) for r, n in snap.recycles.items()
    ]
    lines = [
        *_family("corral_up", "gauge", "1 while the master is serving.", [("corral_up", {}, 1)]),
        *_family(
            "corral_uptime_seconds",
            "gauge",
            "Seconds since the master started.",
            [("corral_uptime_seconds", {}, max(0.0, snap.now - snap.started_at))],
        ),
        *_family(
            "corral_requests",
            "counter",
            "Requests answered, by worker id and status class (retired workers included).",
            _requests(snap),
        ),
        *_family(
            "corral_request_duration_seconds",
            "histogram",
            "Time from request head to last response byte, fleet-wide.",
            _duration(t),
        ),
        *_family(
            "corral_requests_in_flight",
            "gauge",
            "Requests being served now.",
            _per_worker(snap, "corral_requests_in_flight", "in_flight"),
        ),
        *_family(
            "corral_connections_open",
            "gauge",
            "Client connections held open now.",
            _per_worker(snap, "corral_connections_open", "connections"),
        ),
        *_family(
            "corral_websockets_open",
            "gauge",
            "WebSocket connections open now (ASGI workers).",
            _per_worker(snap, "corral_websockets_open", "websockets"),
        ),
        *_family(
            "corral_worker_heartbeat_age_seconds",
            "gauge",
            "Seconds since the worker's loop last wrote its heartbeat.",
            _heartbeat_age(snap),
        ),
        *_family(
            "corral_worker_memory_bytes",
            "gauge",
            "Worker memory from /proc smaps_rollup, by kind.",
            _memory(snap),
        ),
        *_family("corral_worker_recycles", "counter", "Workers replaced, by reason.", recycles),
        *_family(
            "corral_worker_restarts",
            "counter",
            "Unplanned worker replacements (crash or timeout).",
            [("corral_worker_restarts_total", {}, snap.restarts)],
        ),
        *_family("corral_workers", "gauge", "Live workers by state.", _states(snap)),
        *_family(
            "corral_gc_collections",
            "counter",
            "Garbage collections in workers, by generation.",
            gc_counts,
        ),
        *_family(
            "corral_gc_pause_seconds",
            "summary",
            "Time workers spent paused in garbage collection, by generation.",
            gc_pauses,
        ),
        *_family(
            "corral_bytes_received",
            "counter",
            "Request bytes read from clients.",
            [("corral_bytes_received_total", {}, t.bytes_in)],
        ),
        *_family(
            "corral_bytes_sent",
            "counter",
            "Response bytes written to clients.",
            [("corral_bytes_sent_total", {}, t.bytes_out)],
        ),
    ]
    return "\n".join(lines) + "\n"


def _ms(s: float | None) -> float | None:
    return None if s is None else round(s * 1000.0, 4)


def _window_dict(w: Window) -> dict[str, float | None]:
    return {
        "rps": round(w.rps, 3),
        "errors_4xx_per_s": round(w.errors_4xx_per_s, 3),
        "errors_5xx_per_s": round(w.errors_5xx_per_s, 3),
        "p50_ms": _ms(w.p50_s),
        "p90_ms": _ms(w.p90_s),
        "p99_ms": _ms(w.p99_s),
        "p999_ms": _ms(w.p999_s),
    }


def _gc_dict(collections: Iterable[int], pauses: Iterable[float]) -> dict[str, list[Any]]:
    return {"collections": list(collections), "pause_s": [round(p, 6) for p in pauses]}


def shared_ratio(memory: Mapping[str, int] | None, cow: Mapping[str, int] | None) -> float | None:
    """Fraction of the worker's pages still shared: CoW page counts if given, else shared/rss."""
    if cow and "cow_shared_pages" in cow and "cow_copied_pages" in cow:
        total = cow["cow_shared_pages"] + cow["cow_copied_pages"]
        return cow["cow_shared_pages"] / total if total else None
    if memory and memory.get("rss") and "shared" in memory:
        return memory["shared"] / memory["rss"]
    return None


def _worker_dict(now: float, w: WorkerView) -> dict[str, Any]:
    s = w.slot
    current = None
    if s.request_start:
        current = {"request": s.request_line, "age_s": round(max(0.0, now - s.request_start), 3)}
    return {
        "index": s.index,
        "id": s.worker_id,
        "pid": s.pid,
        "generation": s.generation,
        "state": state_name(s.state),
        "uptime_s": round(max(0.0, now - s.started_at), 3),
        "heartbeat_age_s": round(max(0.0, now - s.heartbeat), 3),
        "requests": s.requests,
        "by_status": dict(zip(STATUS_CLASSES, s.by_status, strict=True)),
        "in_flight": s.in_flight,
        "connections": s.connections,
        "websockets": s.websockets,
        "bytes_in": s.bytes_in,
        "bytes_out": s.bytes_out,
        **_window_dict(w.window),
        "memory": None if w.memory is None else dict(w.memory),
        "cow": None if w.cow is None else dict(w.cow),
        "shared_ratio": shared_ratio(w.memory, w.cow),
        "memory_history": [[round(t, 3), sh, pr] for t, sh, pr in w.memory_history],
        "gc": _gc_dict(s.gc_collections, s.gc_pause_s),
        "malloc": mallocstats.read_report(s.pid) if s.pid else None,  # --malloc-stats-s
        "current": current,
    }


def _totals_dict(snap: FleetSnapshot) -> dict[str, Any]:
    t = snap.totals
    states = {state_name(s): 0 for s in _EXPORTED_STATES}
    for w in snap.workers:
        states[state_name(w.slot.state)] += 1
    return {
        "requests": t.requests,
        "by_status": dict(zip(STATUS_CLASSES, t.by_status, strict=True)),
        "in_flight": snap.in_flight,
        "websockets": sum(w.slot.websockets for w in snap.workers),
        "bytes_in": t.bytes_in,
        "bytes_out": t.bytes_out,
        **_window_dict(snap.window),
        "lifetime_p50_ms": _ms(histogram.quantile(t.histogram, 0.5)),
        "lifetime_p99_ms": _ms(histogram.quantile(t.histogram, 0.99)),
        "gc": _gc_dict(t.gc_collections, t.gc_pause_s),
        "restarts": snap.restarts,
        "recycles": dict(snap.recycles),
        "workers": states,
    }


def snapshot_dict(snap: FleetSnapshot) -> dict[str, Any]:
    """The /stats document.

    ``workers``: one object per live worker (index, id, pid, generation, state, uptime_s,
    heartbeat_age_s, requests, by_status{1xx..5xx}, in_flight, connections, websockets,
    bytes_in/out, rps,
    errors_4xx/5xx_per_s, p50/p90/p99/p999_ms over the last window, memory{rss,pss,uss,shared,
    swap} or null, cow{cow_shared_pages,cow_copied_pages} or null, shared_ratio, memory_history
    [[t, shared, private], ...] (bytes, private = USS), gc{collections,
    pause_s} per generation, malloc{t, took_ms, at_fork, now, derived} (pymalloc counters,
    ``--malloc-stats-s``) or null, current{request, age_s} or null). ``totals``: the same counters
    fleet-wide including retired workers, plus restarts, recycles{reason} and workers{state}.
    ``series``: points {t, rps, p50_ms, p99_ms, errors_4xx/5xx_per_s}; ``events``: {t, kind,
    worker, detail}. ``t`` values are on the master's monotonic clock, like ``now``.
    """
    return {
        "version": SCHEMA_VERSION,
        "now": snap.now,
        "uptime_s": round(max(0.0, snap.now - snap.started_at), 3),
        "window_s": snap.window_s,
        "workers": [_worker_dict(snap.now, w) for w in snap.workers],
        "totals": _totals_dict(snap),
        "master": {"memory": None if snap.master_memory is None else dict(snap.master_memory)},
        "series": snap.series,
        "events": [
            {"t": e.t, "kind": e.kind, "worker": e.worker, "detail": e.detail} for e in snap.events
        ],
    }


def render_json(snap: FleetSnapshot) -> str:
    """The /stats body."""
    return json.dumps(snapshot_dict(snap), separators=(",", ":"), allow_nan=False)
