"""Rendering of a ``FleetReport``: the text table (one row per phase, the client's figures and
the balancer's side by side, the SLA verdict per phase), the ``--json`` document and the
``--plot`` HTML page (bench/plot.py's latency chart with the phases drawn on it).
"""

from __future__ import annotations

from typing import Any

from corral.bench import plot
from corral.chaos.balancer import Counts
from corral.chaos.fleet_session import FleetPhase, FleetReport
from corral.chaos.report import _check_dict, _expect_dict, _stats_dict, _table


def _sla_cell(p: FleetPhase) -> str:
    if not p.sla:
        return "-"
    return "met" if p.sla_ok else "MISSED"


def _lb(counts: Counts | None, attr: str) -> str:
    return "-" if counts is None else str(getattr(counts, attr))


def phase_row(p: FleetPhase) -> list[str]:
    st = p.stats
    m = st.measures()
    window = f"{p.start_s}-{'end' if p.end_s is None else p.end_s}"
    bound = "-" if p.drill.allowed is None else str(p.drill.allowed)
    return [
        p.label,
        window,
        str(st.requests + st.failed),
        str(st.error_total),
        _lb(p.balancer, "requests"),
        _lb(p.balancer, "errors"),
        f"{st.latency_ms(99):.2f}",
        f"{m.error_percent:.3f}",
        f"{_availability(st.requests + st.failed, st.error_total):.3f}",
        bound,
        _sla_cell(p),
        "ok" if p.ok else "FAIL",
    ]


def _availability(attempts: int, errors: int) -> float:
    """Percent of attempts answered with a 2xx (100 for an empty window)."""
    return 100.0 * (attempts - errors) / attempts if attempts else 100.0


HEAD = [
    "phase",
    "seconds",
    "requests",
    "errors",
    "lb req",
    "lb err",
    "p99 ms",
    "err %",
    "avail %",
    "bound",
    "sla",
    "verdict",
]


def render_fleet_text(r: FleetReport) -> str:
    lines = [
        f"corral chaos --fleet: {r.balancer_url} ({len(r.hosts)} hosts: {', '.join(r.hosts)};"
        f" {r.load}; {r.duration_s:.1f} s)",
        f"balancer counters: {r.balancer_kind or 'none'} ('lb' columns)",
        "",
    ]
    rows = [HEAD, *(phase_row(p) for p in r.phases)]
    t = r.totals
    rows.append(
        [
            "total",
            "",
            str(t.requests + t.failed),
            str(t.error_total),
            _lb(r.balancer_totals, "requests"),
            _lb(r.balancer_totals, "errors"),
            f"{t.latency_ms(99):.2f}",
            f"{t.measures().error_percent:.3f}",
            f"{_availability(t.requests + t.failed, t.error_total):.3f}",
            "",
            "met" if all(c.ok for c in r.sla) and r.sla else ("-" if not r.sla else "MISSED"),
            "",
        ]
    )
    lines += _table(rows)
    lines += ["", *_details(r)]
    lines.append(f"verdict: {'PASS' if r.ok else 'FAIL'}")
    return "\n".join(lines) + "\n"


def _details(r: FleetReport) -> list[str]:
    out = []
    for p in r.phases:
        checks = [*p.drill.checks, *p.agree]
        parts = p.drill.notes + [
            f"{c.name}: {'ok' if c.ok else 'FAILED'} {c.detail}".rstrip() for c in checks
        ]
        classes = ", ".join(f"{k} {v}" for k, v in sorted(p.stats.errors.items()) if v)
        if classes:
            parts.append(f"errors: {classes}")
        if p.blame:
            parts.append("charged to " + ", ".join(f"{h} {n}" for h, n in sorted(p.blame.items())))
        parts += [f"sla {c.describe()}" for c in p.sla if not c.ok]
        out += [f"{p.label}: {'; '.join(parts)}"] if parts else []
    out += [f"agreement (run) {c.name}: {'ok' if c.ok else 'FAILED'} ({c.detail})" for c in r.agree]
    for e in r.endpoints:
        out.append(
            f"endpoint {e['method']} {e['name']}: {e['requests']} requests,"
            f" {e['failures']} failures, p50 {e['p50_ms']} ms, p99 {e['p99_ms']} ms"
        )
    out += [f"SLA {c.describe()}" for c in r.sla]
    out += [f"problem: {p}" for p in r.problems]
    return out


def _counts_dict(c: Counts | None) -> dict[str, Any] | None:
    if c is None:
        return None
    return {"requests": c.requests, "errors": c.errors, "servers": c.servers}


def fleet_report_dict(r: FleetReport) -> dict[str, Any]:
    """The ``--json`` document of a fleet session (see docs/chaos.md)."""
    return {
        "mode": "fleet",
        "balancer_url": r.balancer_url,
        "hosts": r.hosts,
        "load": r.load,
        "balancer_kind": r.balancer_kind,
        "duration_s": round(r.duration_s, 3),
        "phases": [
            {
                "scenario": p.label,
                "start_s": p.start_s,
                "end_s": p.end_s,
                **_stats_dict(p.stats),
                "error_percent": round(p.stats.measures().error_percent, 4),
                "availability_percent": round(
                    _availability(p.stats.requests + p.stats.failed, p.stats.error_total), 4
                ),
                "allowed_errors": p.drill.allowed,
                "hosts_signalled": p.drill.victims,
                "charged_to": p.blame,
                "balancer": _counts_dict(p.balancer),
                "checks": [_expect_dict(c) for c in [*p.drill.checks, *p.agree]],
                "notes": p.drill.notes,
                "sla": [_check_dict(c) for c in p.sla],
                "sla_ok": p.sla_ok,
                "ok": p.ok,
            }
            for p in r.phases
        ],
        "totals": _stats_dict(r.totals),
        "balancer_totals": _counts_dict(r.balancer_totals),
        "agreement": [_expect_dict(c) for c in r.agree],
        "endpoints": r.endpoints,
        "sla": [_check_dict(c) for c in r.sla],
        "problems": r.problems,
        "ok": r.ok,
    }


def fleet_html(r: FleetReport) -> str:
    """The ``--plot`` page: latency over time with the phases as bands, and a verdict table."""
    bands = [plot.Band(p.label, p.start_s, p.end_s, p.ok and p.sla_ok) for p in r.phases]
    title = f"corral chaos --fleet {r.balancer_url}"
    return plot.phases_page(title, r.series, bands, [HEAD, *(phase_row(p) for p in r.phases)])
