"""``--html FILE``: the report as one self-contained page, in the dashboard's style.

No CDN, no script: the stylesheet is the dashboard's own (``stats/assets/dashboard.css``,
inlined) and every chart is inline SVG drawn here, so the page opens offline and can be
attached to a ticket. Charts: shared and private memory of each worker over requests, one per
configuration; the latency CDF of every configuration on one log-scaled axis; workers that fit
in the host budget, one bar per configuration; requests/s of each slice and the workers' GC
collections so far, over requests, one line per configuration. Then the figures table, the
pymalloc lines, the copy-on-write attribution, the recommendation and the notes.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from importlib import resources
from typing import Any

from corral.experiment.render import malloc_summary
from corral.experiment.run import failures

W, H = 520, 220
L, R, T, B = 58, 14, 12, 34
MIB = 1 << 20
PALETTE = ("#5fb3ff", "#7bd88f", "#f0a35e", "#b48cff", "#ff6b6b", "#e6c14f", "#49c27c")
EXTRA_CSS = """
.grid2 { display: grid; grid-template-columns: repeat(auto-fit, minmax(460px, 1fr)); gap: 18px; }
.chart { height: 220px; }
.chart .l-shared { stroke: var(--shared); fill: none; stroke-width: 2; }
.chart .l-private { stroke: var(--private); fill: none; stroke-width: 2; stroke-dasharray: 5 3; }
.chart .bar { opacity: .85; }
.rec { font-size: 15px; line-height: 1.6; }
.rec code { background: var(--panel-2); padding: 2px 6px; border-radius: 4px; }
table.figs { border-collapse: collapse; width: 100%; }
table.figs th, table.figs td { padding: 4px 8px; border-bottom: 1px solid var(--line); }
table.figs th { color: var(--muted); font-weight: 500; text-align: right; }
table.figs td.num { text-align: right; }
"""


def _esc(value: object) -> str:
    return html.escape(str(value))


def _css() -> str:
    base = resources.files("corral.stats").joinpath("assets/dashboard.css").read_text("utf-8")
    return base + EXTRA_CSS


def _axes(xmax: float, ymax: float, xlabel: str, ylabel: str, xlog: bool = False) -> list[str]:
    """Grid and labels; with ``xlog``, ``xmax`` is ``log10(10 * ms)`` (0.1 ms at the origin)."""
    out = []
    for i in range(5):
        y = T + (H - T - B) * i / 4
        out.append(f"<line class='grid' x1='{L}' x2='{W - R}' y1='{y:.1f}' y2='{y:.1f}'/>")
        value = ymax * (4 - i) / 4
        out.append(
            f"<text class='axis' x='{L - 6}' y='{y + 4:.1f}' text-anchor='end'>"
            f"{_tick(value)}</text>"
        )
    for i in range(5):
        x = L + (W - L - R) * i / 4
        value = 10 ** (xmax * i / 4) / 10 if xlog else xmax * i / 4
        out.append(
            f"<text class='axis' x='{x:.1f}' y='{H - B + 16}' text-anchor='middle'>"
            f"{_tick(value)}</text>"
        )
    out.append(
        f"<text class='axis' x='{(L + W - R) / 2}' y='{H - 4}' text-anchor='middle'>"
        f"{_esc(xlabel)}</text>"
    )
    out.append(f"<text class='axis' x='4' y='{T - 2}'>{_esc(ylabel)}</text>")
    return out


def _tick(value: float) -> str:
    return f"{value:,.0f}" if value >= 1000 else f"{value:.3g}"


def _svg(parts: Sequence[str], label: str) -> str:
    body = "".join(parts)
    box = f"viewBox='0 0 {W} {H}' role='img' aria-label='{_esc(label)}'"
    return f"<svg class='chart' {box}>{body}</svg>"


def _xy(x: float, y: float, xmax: float, ymax: float) -> tuple[float, float]:
    px = L + (W - L - R) * (x / xmax if xmax else 0)
    py = H - B - (H - T - B) * (y / ymax if ymax else 0)
    return px, py


def _line(points: Sequence[tuple[float, float]], css: str = "", colour: str = "") -> str:
    pts = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
    style = f" stroke='{colour}' fill='none' stroke-width='2'" if colour else ""
    return f"<polyline class='{css}' points='{pts}'{style}/>"


def memory_svg(config: dict[str, Any]) -> str:
    """Shared (solid) and private (dashed) MiB of each worker against requests served."""
    samples = config["samples"]
    xmax = max(s["requests"] for s in samples) or 1
    ymax = max((max(w["shared"], w["uss"]) for s in samples for w in s["workers"]), default=0)
    ymax = (ymax / MIB) * 1.1 or 1.0
    parts = _axes(xmax, ymax, "requests", "MiB")
    pids = sorted({w["pid"] for s in samples for w in s["workers"]})
    for pid in pids:
        for key, css in (("shared", "l-shared"), ("uss", "l-private")):
            pts = [
                _xy(s["requests"], w[key] / MIB, xmax, ymax)
                for s in samples
                for w in s["workers"]
                if w["pid"] == pid
            ]
            parts.append(_line(pts, css))
    return _svg(parts, f"{config['name']}: shared and private memory per worker over requests")


def cdf_svg(configs: Sequence[dict[str, Any]]) -> str:
    """Percentile (y) against latency (x, log scale) for every configuration."""
    curves = [(c["name"], c["load"].get("cdf") or []) for c in configs]
    xmax = max((ms for _, cdf in curves for ms, _ in cdf), default=1.0) or 1.0
    lmax = math.log10(max(xmax, 1.0001) * 10)  # x axis: log10(10 * ms), 0.1 ms at the origin
    parts = _axes(lmax, 100, "latency ms (log)", "percentile", xlog=True)
    for i, (_, cdf) in enumerate(curves):
        pts = [_xy(math.log10(max(ms, 0.1) * 10), pct, lmax, 100) for ms, pct in cdf]
        parts.append(_line(pts, colour=PALETTE[i % len(PALETTE)]))
    return _svg(parts, "latency CDF per configuration")


def over_requests_svg(configs: Sequence[dict[str, Any]], what: str) -> str:
    """Per configuration, against requests served: ``rps`` (each slice's requests/s, client
    side) or ``gc`` (the workers' collections so far, all generations, from /stats)."""
    series = []
    for c in configs:
        pts = []
        for s in c["samples"]:
            if what == "rps" and s.get("slice"):
                pts.append((s["requests"], float(s["slice"]["rps"])))
            elif what == "gc" and s.get("gc"):
                pts.append((s["requests"], float(sum(s["gc"]["collections"]))))
        series.append(pts)
    xmax = max((x for pts in series for x, _ in pts), default=0) or 1
    ymax = max((y for pts in series for _, y in pts), default=0) * 1.1 or 1.0
    label = "requests/s in each slice" if what == "rps" else "GC collections so far"
    parts = _axes(xmax, ymax, "requests", "req/s" if what == "rps" else "GCs")
    for i, pts in enumerate(series):
        if pts:
            scaled = [_xy(x, y, xmax, ymax) for x, y in pts]
            parts.append(_line(scaled, colour=PALETTE[i % len(PALETTE)]))
    return _svg(parts, f"{label} per configuration over requests")


def capacity_svg(configs: Sequence[dict[str, Any]]) -> str:
    """Workers that fit in the host budget, one bar per configuration."""
    xmax = max((c["summary"]["fit_workers"] for c in configs), default=1) or 1
    row = (H - T - B) / max(len(configs), 1)
    parts = []
    for i, c in enumerate(configs):
        n = c["summary"]["fit_workers"]
        y = T + i * row
        width = (W - L - R - 40) * n / xmax
        colour = PALETTE[i % len(PALETTE)]
        parts.append(
            f"<rect class='bar' x='{L + 30}' y='{y + 3:.1f}' width='{width:.1f}' "
            f"height='{row - 6:.1f}' fill='{colour}'/>"
            f"<text class='axis' x='{L + 26}' y='{y + row / 2 + 4:.1f}' text-anchor='end'>"
            f"{_esc(c['name'])}</text>"
            f"<text class='axis' x='{L + 34 + width:.1f}' y='{y + row / 2 + 4:.1f}'>{n}</text>"
        )
    budget = configs[0]["summary"]["budget_gib"] if configs else 0
    parts.append(
        f"<text class='axis' x='{(L + W - R) / 2}' y='{H - 4}' text-anchor='middle'>"
        f"workers that fit in {budget:g} GiB</text>"
    )
    return _svg(parts, "capacity per host")


def _legend(configs: Sequence[dict[str, Any]]) -> str:
    items = [
        f"<i class='sw' style='background:{PALETTE[i % len(PALETTE)]}'></i>{_esc(c['name'])}"
        for i, c in enumerate(configs)
    ]
    return f"<span class='legend'>{' '.join(items)}</span>"


def _table(configs: Sequence[dict[str, Any]]) -> str:
    head = (
        "config",
        "shared %",
        "USS MiB",
        "RSS MiB",
        "baseline MiB",
        "fit",
        "req/s",
        "failed",
        "p50 ms",
        "p99 ms",
        "GCs",
        "mean pause ms",
        "arenas +/- since fork",
        "zygote free pools taken",
    )
    rows = ["<tr>" + "".join(f"<th>{_esc(h)}</th>" for h in head) + "</tr>"]
    for c in configs:
        s, load, gc = c["summary"], c["load"], c.get("gc") or {}
        m = malloc_summary(c)
        cells = [
            s["shared_pct"],
            s["worker_uss_mib"],
            s["worker_rss_mib"],
            s["baseline_mib"],
            s["fit_workers"],
            load.get("rps"),
            failures(load),
            load.get("p50_ms"),
            load.get("p99_ms"),
            sum(gc["collections"]) if gc else "-",
            gc.get("mean_pause_ms", "-"),
            f"+{m['arenas_allocated_since_fork']}/-{m['arenas_freed_since_fork']}" if m else "-",
            _holes(m) if m else "-",
        ]
        tds = "".join(f"<td class='num'>{_esc(v)}</td>" for v in cells)
        rows.append(f"<tr><td>{_esc(c['name'])}</td>{tds}</tr>")
    return f"<div class='table-wrap'><table class='figs'>{''.join(rows)}</table></div>"


def _holes(m: dict[str, Any]) -> str:
    return (
        f"{m['inherited_unused_pools_taken']:,} of {m['inherited_unused_pools']:,} "
        f"({m['pools_taken_pct']}%); {m['blocks_in_use_since_fork']:+,} blocks in use"
    )


def _attribution(configs: Sequence[dict[str, Any]]) -> str:
    out = []
    for c in configs:
        att = c.get("attribution")
        if not att or "error" in att:
            continue
        items = ", ".join(
            f"{_esc(t['name'])} {t['bytes'] / MIB:.2f} MiB" for t in att.get("types", [])
        )
        out.append(
            f"<p><b>{_esc(c['name'])}</b> (worker {att['pid']}, "
            f"{(att['copied_bytes'] or 0) / MIB:.1f} MiB copied): "
            f"{items or 'nothing attributed'}</p>"
        )
    return "".join(out) or "<p class='mem-absent'>no attribution</p>"


def _group(group: dict[str, Any]) -> str:
    configs = group["configs"]
    rec = group["recommendation"]
    mem = "".join(
        f"<figure class='card'><figcaption>{_esc(c['name'])}: memory per worker over requests "
        "<span class='legend'><i class='sw sw-shared'></i>shared <i class='sw sw-private'></i>"
        f"private</span></figcaption>{memory_svg(c)}</figure>"
        for c in configs
    )
    return (
        f"<section class='card rec'><h2>Python {_esc(group['version'])}: recommendation</h2>"
        f"<p>{_esc(rec['text'])}</p><p>run in production: <code>{_esc(rec['command'])}</code></p>"
        "</section>"
        f"<section class='grid2'>{mem}</section>"
        "<section class='grid2'>"
        f"<figure class='card'><figcaption>Latency CDF {_legend(configs)}</figcaption>"
        f"{cdf_svg(configs)}</figure>"
        f"<figure class='card'><figcaption>Capacity per host</figcaption>"
        f"{capacity_svg(configs)}</figure>"
        f"<figure class='card'><figcaption>Requests/s over requests {_legend(configs)}"
        f"</figcaption>{over_requests_svg(configs, 'rps')}</figure>"
        f"<figure class='card'><figcaption>GC collections over requests {_legend(configs)}"
        f"</figcaption>{over_requests_svg(configs, 'gc')}</figure></section>"
        f"<section class='card'><h2>Figures</h2>{_table(configs)}</section>"
        f"<section class='card'><h2>Objects that still lose sharing</h2>{_attribution(configs)}"
        "</section>"
    )


def to_html(report: dict[str, Any]) -> str:
    """The whole page as a string."""
    title = f"corral experiment · {report['app']}"
    traffic = _esc(report["traffic"])
    body = "".join(_group(g) for g in report["pythons"])
    notes = "".join(f"<p>{_esc(n)}</p>" for n in report.get("notes", []))
    if notes:
        body += f"<section class='card'><h2>Notes</h2>{notes}</section>"
    return (
        "<!doctype html>\n<html lang='en'><head><meta charset='utf-8'>"
        "<meta name='color-scheme' content='dark light'>"
        f"<title>{_esc(title)}</title><style>{_css()}</style></head><body>"
        f"<header class='top'><div class='brand'><span class='logo'>◎</span> {_esc(title)}</div>"
        f"<div class='meta'><span class='meta-item'>{report['workers']} workers</span>"
        f"<span class='meta-item'>{traffic}</span></div></header>"
        f"<main>{body}</main></body></html>\n"
    )
