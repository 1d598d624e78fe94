"""Rendering of a ``Report``: the text table a person reads and the ``--json`` document
(its schema is in docs/chaos.md).
"""

from __future__ import annotations

from typing import Any

from corral.bench.result import (
    ERROR_CLASSES,
)
from corral.bench.sla import Check
from corral.chaos.session import Phase, Report
from corral.chaos.verdicts import Expectation, WindowStats

# -------------------------------------------------------------------------------- rendering


def _fmt_ms(v: float) -> str:
    return f"{v:.2f}"


def phase_row(p: Phase) -> list[str]:
    st = p.stats
    window = f"{p.start_s}-{'end' if p.end_s is None else p.end_s}"
    bound = "-" if p.facts.allowed is None else str(p.facts.allowed)
    return [
        p.label,
        window,
        str(st.requests),
        str(st.failed),
        str(st.errors.get("non_2xx", 0)),
        _fmt_ms(st.latency_ms(50)),
        _fmt_ms(st.latency_ms(99)),
        bound,
        "ok" if p.ok else "FAIL",
    ]


def _table(rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        ).rstrip()
        for r in rows
    ]


def render_text(r: Report) -> str:
    """The human report: one row per phase, then details, server view, SLA and verdict."""
    mode = f"rate {r.rate:g}/s" if r.rate else f"-c {r.connections}"
    lines = [f"corral chaos: {r.target} ({r.workers} workers, {mode}, {r.duration_s:.1f} s)", ""]
    head = [
        "phase",
        "seconds",
        "requests",
        "failed",
        "non-2xx",
        "p50 ms",
        "p99 ms",
        "bound",
        "verdict",
    ]
    rows = [head, *(phase_row(p) for p in r.phases)]
    t = r.totals
    rows.append(
        [
            "total",
            "",
            str(t.requests),
            str(t.failed),
            str(t.errors.get("non_2xx", 0)),
            _fmt_ms(t.latency_ms(50)),
            _fmt_ms(t.latency_ms(99)),
            "",
            "",
        ]
    )
    lines += _table(rows)
    lines += ["", *_details(r)]
    lines.append(f"verdict: {'PASS' if r.ok else 'FAIL'}")
    return "\n".join(lines) + "\n"


def _details(r: Report) -> list[str]:
    out = []
    for p in r.phases:
        classes = ", ".join(f"{k} {v}" for k, v in sorted(p.stats.errors.items()) if v)
        parts = p.facts.notes + [
            f"{c.name}: {'ok' if c.ok else 'FAILED'} {c.detail}".rstrip() for c in p.facts.checks
        ]
        if classes:
            parts.append(f"errors: {classes}")
        parts += [f"sla {c.describe()}" for c in p.sla if not c.ok]
        out += [f"{p.label}: {'; '.join(parts)}"] if parts else []
    if r.server is not None:
        rec = ", ".join(f"{k} +{v}" for k, v in r.server["recycles"].items() if v) or "none"
        d = r.server
        out.append(
            f"server view: requests +{d['requests']} (2xx +{d['by_status'].get('2xx', 0)}),"
            f" restarts +{d['restarts']}, recycles {rec}"
        )
    else:
        out.append("server view: unavailable (no --stats)")
    out.append(
        f"client view: {r.totals.ok_responses} 2xx responses, {r.totals.failed} failed attempts"
    )
    out += [f"cross-check {c.name}: {'ok' if c.ok else 'FAILED'} ({c.detail})" for c in r.cross]
    out += [f"SLA {c.describe()}" for c in r.sla]
    out += [f"problem: {p}" for p in r.problems]
    return out


def _stats_dict(st: WindowStats) -> dict[str, Any]:
    m = st.measures()
    return {
        "seconds": st.seconds,
        "requests": st.requests,
        "failed": st.failed,
        "errors": {name: st.errors.get(name, 0) for name in ERROR_CLASSES},
        "error_total": st.error_total,
        "ok_responses": st.ok_responses,
        "rps": round(m.rps, 3),
        "latency_ms": {k: round(v, 3) for k, v in m.latency_ms.items()},
    }


def _check_dict(c: Check) -> dict[str, Any]:
    return {"objective": c.objective.text, "actual": c.actual, "ok": c.ok}


def _expect_dict(e: Expectation) -> dict[str, Any]:
    return {"name": e.name, "ok": e.ok, "detail": e.detail}


def report_dict(r: Report) -> dict[str, Any]:
    """The ``--json`` document (see docs/chaos.md)."""
    return {
        "target": r.target,
        "workers": r.workers,
        "connections": r.connections,
        "rate": r.rate,
        "duration_s": round(r.duration_s, 3),
        "phases": [
            {
                "scenario": p.label,
                "start_s": p.start_s,
                "end_s": p.end_s,
                **_stats_dict(p.stats),
                "allowed_errors": p.facts.allowed,
                "kills": p.facts.kills,
                "checks": [_expect_dict(c) for c in p.facts.checks],
                "notes": p.facts.notes,
                "sla": [_check_dict(c) for c in p.sla],
                "ok": p.ok,
            }
            for p in r.phases
        ],
        "totals": _stats_dict(r.totals),
        "server": r.server,
        "cross_checks": [_expect_dict(c) for c in r.cross],
        "sla": [_check_dict(c) for c in r.sla],
        "problems": r.problems,
        "ok": r.ok,
    }
