"""The report as terminal text (a rich table and the recommendation) and as JSON."""

from __future__ import annotations

import json
from typing import Any

from corral.experiment.run import failures

MIB = 1 << 20


def malloc_summary(config: dict[str, Any]) -> dict[str, Any] | None:
    """pymalloc across the workers at the end (sums over workers): arenas mapped/freed since the
    fork, and how many of the zygote's unused pools the workers have taken. A pool taken from
    an inherited arena is written on a page shared until then; only when those run out does a
    worker map arenas of its own (private from the start, copying nothing)."""
    docs = [m for m in config.get("malloc") or [] if m]
    if not docs:
        return None
    keys = (
        "arenas_allocated_since_fork",
        "arenas_freed_since_fork",
        "blocks_in_use_since_fork",
        "inherited_free_blocks_filled",
        "inherited_free_blocks",
        "inherited_unused_pools_taken",
        "inherited_unused_pools",
    )
    out: dict[str, Any] = {k: sum(int(m["derived"][k]) for m in docs) for k in keys}
    out["arenas_current"] = [int(m["now"]["arenas_current"]) for m in docs]
    pools = out["inherited_unused_pools"]
    taken = out["inherited_unused_pools_taken"]
    out["pools_taken_pct"] = round(100 * taken / pools, 1) if pools else 0.0
    return out


def to_json(report: dict[str, Any]) -> str:
    return json.dumps(report, indent=2, allow_nan=False) + "\n"


def _cell(value: Any, fmt: str = "") -> str:
    if value is None:
        return "-"
    return format(value, fmt) if fmt else str(value)


def _tables(report: dict[str, Any], group: dict[str, Any]) -> tuple[Any, Any]:
    from rich.table import Table

    title = f"{report['app']}, Python {group['version']}"
    mem = Table(title=f"{title}: memory per worker at the end (MiB)")
    for col in ("config", "shared %", "private", "RSS", "baseline", "fit", "arenas +/-", "pools"):
        mem.add_column(col, justify="left" if col == "config" else "right", no_wrap=True)
    speed = Table(title=f"{title}: traffic (ms)")
    for col in ("config", "requests", "failed", "req/s", "p50", "p99", "max", "GCs", "pause"):
        speed.add_column(col, justify="left" if col == "config" else "right", no_wrap=True)
    for c in group["configs"]:
        s, load, gc = c["summary"], c["load"], c.get("gc") or {}
        m = c.get("malloc_summary") or {}
        mem.add_row(
            c["name"],
            _cell(s["shared_pct"], ".1f"),
            _cell(s["worker_uss_mib"], ".1f"),
            _cell(s["worker_rss_mib"], ".1f"),
            _cell(s["baseline_mib"], ".1f"),
            str(s["fit_workers"]),
            f"+{m['arenas_allocated_since_fork']}/-{m['arenas_freed_since_fork']}" if m else "-",
            f"{m['inherited_unused_pools_taken']}/{m['inherited_unused_pools']}" if m else "-",
        )
        speed.add_row(
            c["name"],
            _cell(load.get("requests")),
            str(failures(load)),
            _cell(load.get("rps"), ",.0f"),
            _cell(load.get("p50_ms"), ".2f"),
            _cell(load.get("p99_ms"), ".2f"),
            _cell(load.get("max_ms"), ".1f"),
            _cell(sum(gc["collections"]) if gc else None),
            _cell(gc.get("mean_pause_ms"), ".2f"),
        )
    return mem, speed


def print_text(report: dict[str, Any], console: Any) -> None:
    """The figures, the allocator columns and the recommendation, on ``console`` (rich)."""
    for group in report["pythons"]:
        for table in _tables(report, group):
            console.print(table)
        rec = group["recommendation"]
        console.print(f"[bold]recommendation[/bold]: {rec['text']}")
        if rec["command"]:
            console.print(f"[bold]run in production[/bold]: {rec['command']}")
    for note in report.get("notes", []):
        console.print(f"note: {note}")
