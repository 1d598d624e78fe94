"""``--plot FILE``: one self-contained HTML page with two inline SVG charts.

No CDN, no script, no plotting library: the page opens offline and can be attached to a
bug report. Chart 1 is latency over time (per-second p50, p99 and max, with errors marked
along the axis so a failure lines up with its time window). Chart 2 is the latency
distribution drawn the HdrHistogram way: percentile on a log scale of ``1 / (1 - q)``, so
the tail (99%, 99.9%, 99.99%) gets as much room as the median.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass

from corral.bench.config import LoadConfig
from corral.bench.result import LoadResult, SecondStats

WIDTH, HEIGHT = 760, 300
LEFT, RIGHT, TOP, BOTTOM = 64, 20, 20, 40
COLOURS = {"p50": "#2b7bba", "p99": "#d9822b", "max": "#b0413e", "errors": "#c0392b"}
TAIL_TICKS = (0.0, 90.0, 99.0, 99.9, 99.99, 99.999)

Point = tuple[float, float]


def to_html(config: LoadConfig, result: LoadResult) -> str:
    """The whole page as a string."""
    title = f"corral bench {html.escape(config.urls[0])}"
    summary = (
        f"{result.requests:,} requests in {result.duration_s:.2f} s "
        f"({result.rps:,.0f} req/s), {result.connections} connections, "
        f"{result.error_total:,} errors; p50 {result.latency_ms(50):.3f} ms, "
        f"p99 {result.latency_ms(99):.3f} ms, max {result.max_latency_ms():.3f} ms"
    )
    return (
        "<!doctype html>\n<html><head><meta charset='utf-8'>"
        f"<title>{title}</title>"
        "<style>body{font:14px sans-serif;margin:2em}svg{background:#fafafa}"
        "text{font:11px sans-serif}</style></head><body>"
        f"<h1>{title}</h1><p>{html.escape(summary)}</p>"
        "<h2>Latency over time (ms)</h2>"
        f"{latency_over_time_svg(result)}"
        "<h2>Latency by percentile (ms)</h2>"
        f"{distribution_svg(result)}"
        "</body></html>\n"
    )


def _scale(lo: float, hi: float, out_lo: float, out_hi: float) -> tuple[float, float]:
    """(a, b) so that ``a * v + b`` maps [lo, hi] onto [out_lo, out_hi]."""
    span = hi - lo if hi > lo else 1.0
    a = (out_hi - out_lo) / span
    return a, out_lo - a * lo


def _polyline(points: Sequence[Point], colour: str) -> str:
    coords = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
    return f"<polyline fill='none' stroke='{colour}' stroke-width='1.5' points='{coords}'/>"


def _axes(x_label: str, y_max: float) -> list[str]:
    bottom, right = HEIGHT - BOTTOM, WIDTH - RIGHT
    parts = [
        f"<line x1='{LEFT}' y1='{bottom}' x2='{right}' y2='{bottom}' stroke='#333'/>",
        f"<line x1='{LEFT}' y1='{TOP}' x2='{LEFT}' y2='{bottom}' stroke='#333'/>",
        f"<text x='{(LEFT + right) / 2}' y='{HEIGHT - 6}' text-anchor='middle'>{x_label}</text>",
    ]
    a, b = _scale(0.0, y_max, bottom, TOP)
    for i in range(5):
        value = y_max * i / 4
        y = a * value + b
        parts.append(
            f"<text x='{LEFT - 6}' y='{y + 4:.1f}' text-anchor='end'>{value:.3g}</text>"
            f"<line x1='{LEFT}' y1='{y:.1f}' x2='{right}' y2='{y:.1f}' stroke='#ddd'/>"
        )
    return parts


def _legend(names: Sequence[str]) -> str:
    items = []
    for i, name in enumerate(names):
        x = LEFT + 10 + i * 70
        items.append(
            f"<rect x='{x}' y='{TOP}' width='10' height='10' fill='{COLOURS[name]}'/>"
            f"<text x='{x + 14}' y='{TOP + 9}'>{name}</text>"
        )
    return "".join(items)


def _svg(parts: list[str]) -> str:
    return (
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{WIDTH}' height='{HEIGHT}' "
        f"viewBox='0 0 {WIDTH} {HEIGHT}'>{''.join(parts)}</svg>"
    )


@dataclass(frozen=True, slots=True)
class Band:
    """A phase of a chaos run, drawn as a shaded band under the latency lines."""

    label: str
    start_s: int
    end_s: int | None  # None: to the end of the run
    ok: bool


def latency_over_time_svg(result: LoadResult) -> str:
    return series_svg(result.series)


def series_svg(series: Sequence[SecondStats], bands: Sequence[Band] = ()) -> str:
    """Per-second p50, p99 and max, errors ticked along the axis, phases as bands."""
    lines = {
        name: [(float(s.second), s.latency_ms(pct)) for s in series if s.requests]
        for name, pct in (("p50", 50.0), ("p99", 99.0), ("max", 100.0))
    }
    y_max = max((y for pts in lines.values() for _, y in pts), default=1.0) or 1.0
    x_max = float(max((s.second for s in series), default=1) or 1)
    ax, bx = _scale(0.0, x_max, LEFT, WIDTH - RIGHT)
    ay, by = _scale(0.0, y_max, HEIGHT - BOTTOM, TOP)
    parts = _axes("seconds since start", y_max)
    for band in bands:
        x0 = ax * band.start_s + bx
        x1 = ax * (x_max + 1 if band.end_s is None else band.end_s) + bx
        fill = "#e8f4e8" if band.ok else "#f8e0e0"
        parts.append(
            f"<rect x='{x0:.1f}' y='{TOP}' width='{max(x1 - x0, 1):.1f}' "
            f"height='{HEIGHT - BOTTOM - TOP}' fill='{fill}' stroke='#bbb'/>"
            f"<text x='{x0 + 3:.1f}' y='{TOP + 24}'>{html.escape(band.label)}</text>"
        )
    for name, pts in lines.items():
        parts.append(_polyline([(ax * x + bx, ay * y + by) for x, y in pts], COLOURS[name]))
    for s in series:  # a red tick under each second that saw errors, with a tooltip
        if s.error_total():
            x = ax * s.second + bx
            parts.append(
                f"<rect x='{x - 1.5:.1f}' y='{HEIGHT - BOTTOM - 8}' width='3' height='8' "
                f"fill='{COLOURS['errors']}'><title>second {s.second}: "
                f"{s.error_total()} errors {html.escape(str(s.errors))}</title></rect>"
            )
    parts.append(_legend(["p50", "p99", "max", "errors"]))
    return _svg(parts)


def phases_page(
    title: str, series: Sequence[SecondStats], bands: Sequence[Band], table: list[list[str]]
) -> str:
    """A chaos run's page: the latency chart with its phases, then the verdict table
    (first row the header; a phase passed is shaded green in the chart, failed red)."""
    head, *rows = table
    cells = "".join(f"<th>{html.escape(c)}</th>" for c in head)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows
    )
    return (
        "<!doctype html>\n<html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title>"
        "<style>body{font:14px sans-serif;margin:2em}svg{background:#fafafa}"
        "text{font:11px sans-serif}td,th{padding:2px 8px;text-align:right}</style>"
        f"</head><body><h1>{html.escape(title)}</h1>"
        "<h2>Latency over time (ms), phases shaded</h2>"
        f"{series_svg(series, bands)}"
        f"<h2>Per-phase verdict</h2><table><tr>{cells}</tr>{body}</table>"
        "</body></html>\n"
    )


def _tail_x(percentile: float) -> float:
    """HdrHistogram's percentile axis: log10 of 1 / (1 - q), capped at 99.999%."""
    q = min(percentile, 99.999) / 100.0
    return math.log10(1.0 / (1.0 - q))


def distribution_svg(result: LoadResult) -> str:
    hist = result.histogram
    if hist.get_total_count() == 0:
        return _svg([*_axes("percentile", 1.0), "<text x='100' y='100'>no data</text>"])
    pcts = [p / 10.0 for p in range(0, 990, 10)] + [99.0 + i * 0.1 for i in range(10)]
    pcts += [99.9 + i * 0.01 for i in range(10)] + [99.99, 99.999]
    pts = [(_tail_x(p), result.latency_ms(p)) for p in pcts]
    y_max = max(y for _, y in pts) or 1.0
    ax, bx = _scale(0.0, _tail_x(99.999), LEFT, WIDTH - RIGHT)
    ay, by = _scale(0.0, y_max, HEIGHT - BOTTOM, TOP)
    parts = _axes("percentile", y_max)
    for tick in TAIL_TICKS:
        x = ax * _tail_x(tick) + bx
        parts.append(
            f"<text x='{x:.1f}' y='{HEIGHT - BOTTOM + 14}' text-anchor='middle'>{tick:g}%</text>"
        )
    parts.append(_polyline([(ax * x + bx, ay * y + by) for x, y in pts], COLOURS["p99"]))
    return _svg(parts)
