"""``corral top``: a terminal view of a running master's /stats, refreshed in place.

Theory of operation: fetch ``/stats`` (the JSON the dashboard uses) with urllib every
``--interval`` seconds and redraw one ``rich`` table: a header line with fleet figures, one row
per live worker, a totals row. ``--once`` prints a single frame and exits, which is what scripts
and tests want. An address that does not answer is one line on stderr and exit status 1, the
way ``curl`` reports it, not a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.error
import urllib.request
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

FETCH_TIMEOUT_S = 3.0
DEFAULT_INTERVAL_S = 1.0


def stats_url(address: str) -> str:
    """``127.0.0.1:9100``, ``:9100``, ``9100`` or ``http://host:port[/stats]`` -> the /stats URL."""
    if "://" not in address:
        if address.isdigit():
            address = f"127.0.0.1:{address}"
        elif address.startswith(":"):
            address = f"127.0.0.1{address}"
        address = f"http://{address}"
    base = address.rstrip("/")
    return base if base.endswith("/stats") else base + "/stats"


def fetch(url: str, timeout: float = FETCH_TIMEOUT_S) -> dict[str, Any]:
    """GET and decode one /stats document (raises OSError or ValueError)."""
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        doc: dict[str, Any] = json.load(resp)
    return doc


def _bytes(n: int | None) -> str:
    if n is None:
        return "-"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f} ms" if v < 10 else f"{v:.0f} ms"


def _duration(s: float) -> str:
    s = int(s)
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


def _pct(ratio: float | None) -> str:
    return "-" if ratio is None else f"{ratio * 100:.0f}%"


def header(doc: dict[str, Any]) -> Text:
    """One line: uptime, workers, rps, latency, errors, memory."""
    t = doc["totals"]
    private = [w["memory"].get("uss") for w in doc["workers"] if w.get("memory")]
    mem = _bytes(sum(p for p in private if p)) if any(private) else "-"
    text = Text()
    for label, value in (
        ("up", _duration(doc["uptime_s"])),
        ("workers", str(len(doc["workers"]))),
        ("rps", f"{t['rps']:.1f}"),
        ("p50", _ms(t["p50_ms"])),
        ("p99", _ms(t["p99_ms"])),
        ("4xx/s", f"{t['errors_4xx_per_s']:.1f}"),
        ("5xx/s", f"{t['errors_5xx_per_s']:.1f}"),
        ("restarts", str(t["restarts"])),
        ("private mem", mem),
    ):
        text.append(f"{label} ", style="dim")
        text.append(f"{value}   ", style="bold")
    return text


_COLUMNS = (
    "id",
    "pid",
    "state",
    "requests",
    "in flight",
    "rps",
    "p50",
    "p99",
    "rss",
    "uss",
    "shared",
    "now serving",
)


def table(doc: dict[str, Any]) -> Table:
    """One row per worker plus a totals row."""
    tbl = Table(expand=False, show_edge=False, pad_edge=False, header_style="bold")
    for name in _COLUMNS:
        left = name in ("state", "now serving")
        tbl.add_column(name, justify="left" if left else "right", no_wrap=True, overflow="ellipsis")
    for w in doc["workers"]:
        tbl.add_row(*_worker_row(w))
    t = doc["totals"]
    tbl.add_section()
    tbl.add_row(
        "all",
        "",
        "",
        str(t["requests"]),
        str(t["in_flight"]),
        f"{t['rps']:.1f}",
        _ms(t["p50_ms"]),
        _ms(t["p99_ms"]),
        "",
        "",
        "",
        "",
        style="bold",
    )
    return tbl


def _worker_row(w: dict[str, Any]) -> tuple[str, ...]:
    mem = w.get("memory") or {}
    current = w.get("current") or {}
    state_style = {"ready": "green", "draining": "yellow", "booting": "cyan"}.get(w["state"], "")
    return (
        str(w["id"]),
        str(w["pid"]),
        f"[{state_style}]{w['state']}[/]" if state_style else w["state"],
        str(w["requests"]),
        str(w["in_flight"]),
        f"{w['rps']:.1f}",
        _ms(w["p50_ms"]),
        _ms(w["p99_ms"]),
        _bytes(mem.get("rss")),
        _bytes(mem.get("uss")),
        _pct(w.get("shared_ratio")),
        str(current.get("request", "")),
    )


def frame(doc: dict[str, Any], url: str) -> Group:
    """Everything drawn for one refresh."""
    title = Text(f"corral top  {url}", style="bold")
    return Group(title, header(doc), table(doc))


def _parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="corral top", description="Live view of a corral master.")
    p.add_argument("address", help="stats address: 127.0.0.1:9100, :9100 or http://host:port")
    p.add_argument(
        "--interval",
        type=float,
        default=DEFAULT_INTERVAL_S,
        help="seconds between refreshes (default 1)",
    )
    p.add_argument("--once", action="store_true", help="print one frame and exit")
    p.add_argument("--count", type=int, default=0, help="stop after this many frames (0: never)")
    args = p.parse_args(argv)
    if args.interval <= 0:
        p.error("--interval must be positive")
    return args


def main(argv: list[str]) -> int:
    """Entry point for ``corral top``; returns the exit status."""
    args = _parse(argv)
    url = stats_url(args.address)
    try:
        doc = fetch(url)
    except (OSError, ValueError) as exc:
        print(f"corral top: cannot read {url}: {_reason(exc)}", file=sys.stderr)
        return 1
    if args.once:
        Console().print(frame(doc, url))
        return 0
    return _live(url, doc, args.interval, args.count)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.URLError) and not isinstance(exc, urllib.error.HTTPError):
        return str(exc.reason)
    return str(exc)


def _live(url: str, doc: dict[str, Any], interval: float, count: int) -> int:
    frames = 1
    try:
        with Live(frame(doc, url), refresh_per_second=4, screen=False) as live:
            while count <= 0 or frames < count:
                time.sleep(interval)
                frames += 1
                try:
                    live.update(frame(fetch(url), url))
                except (OSError, ValueError) as exc:
                    live.update(Text(f"corral top: cannot read {url}: {_reason(exc)}", "red"))
    except KeyboardInterrupt:
        pass
    return 0
