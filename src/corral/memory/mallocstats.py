"""pymalloc's own view of a worker's heap: arenas, pools and blocks, from ``sys._debugmallocstats``.

Theory of operation. CPython's small-object allocator (objects up to 512 bytes) carves 1 MiB
arenas (256 KiB before 3.10) into 16 KiB pools, each pool into blocks of one size class. A
forked worker inherits the zygote's arenas *with their free blocks and unused pools*: the first
objects it allocates go into those holes, which writes to shared pages and copies them, before
any new arena is mapped. ``sys._debugmallocstats()`` is the only interface that says how many
there are; it writes a report to the C ``stderr`` (fd 2), so ``snapshot`` points fd 2 at a
temporary file for the duration of the call (``os.dup2`` and back; nothing else in a worker
writes to fd 2 from another thread at that moment except the logging of app threads, whose
lines would land in the report and be ignored by the parser) and parses it.

Cost: a C walk over every pool (~1 ms for a 300 MB heap) plus the parse; never on the request
path. The worker calls ``MallocReporter.maybe_dump`` from its housekeeping tick when
``--malloc-stats-s`` is set: the first report (taken when the worker starts serving, i.e. the
zygote's state as inherited) is kept as ``at_fork`` and every later one is ``now``; both go to
``report_path(pid)``, renamed into place, which the master's /stats reads (``read_report``).

Derived figures (``derive``): arenas mapped and freed since the fork, and how many of the
inherited free blocks and unused pools the worker has filled since (each such block lives on a
page the worker shares until it writes there).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["MallocReporter", "derive", "parse", "read_report", "report_path", "snapshot"]

_CLASS_ROW = re.compile(r"^\s*(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s*$")
_UNUSED_POOLS = re.compile(r"^\s*([\d,]+) unused pools \*")
_COUNTERS = {
    "arenas allocated total": "arenas_allocated_total",
    "arenas reclaimed": "arenas_reclaimed",
    "arenas highwater mark": "arenas_highwater",
    "arenas allocated current": "arenas_current",
    "bytes in allocated blocks": "bytes_in_use",
    "bytes in available blocks": "bytes_available",
}


def parse(text: str) -> dict[str, int]:
    """The counters of one ``_debugmallocstats`` report (zero where a line is absent)."""
    out = dict.fromkeys(
        ("pools_used", "pools_unused", "blocks_in_use", "blocks_available", *_COUNTERS.values()), 0
    )
    for line in text.splitlines():
        row = _CLASS_ROW.match(line)
        if row:
            out["pools_used"] += int(row.group(3))
            out["blocks_in_use"] += int(row.group(4))
            out["blocks_available"] += int(row.group(5))
            continue
        unused = _UNUSED_POOLS.match(line)
        if unused:
            out["pools_unused"] = int(unused.group(1).replace(",", ""))
            continue
        name, sep, value = line.lstrip("# ").partition("=")
        key = _COUNTERS.get(name.strip())
        if sep and key is not None:
            with contextlib.suppress(ValueError):
                out[key] = int(value.strip().replace(",", ""))
    return out


def snapshot() -> dict[str, int]:
    """Run ``sys._debugmallocstats`` with fd 2 pointed at a temporary file; parse the report."""
    with tempfile.TemporaryFile() as tmp:
        sys.stderr.flush()
        saved = os.dup(2)
        try:
            os.dup2(tmp.fileno(), 2)
            sys._debugmallocstats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        tmp.seek(0)
        return parse(tmp.read().decode("ascii", "replace"))


def derive(at_fork: Mapping[str, int], now: Mapping[str, int]) -> dict[str, int]:
    """What changed since the worker started: arenas mapped/freed, inherited holes filled."""
    return {
        "arenas_allocated_since_fork": now["arenas_allocated_total"]
        - at_fork["arenas_allocated_total"],
        "arenas_freed_since_fork": now["arenas_reclaimed"] - at_fork["arenas_reclaimed"],
        "blocks_in_use_since_fork": now["blocks_in_use"] - at_fork["blocks_in_use"],
        "inherited_free_blocks_filled": max(
            0, at_fork["blocks_available"] - now["blocks_available"]
        ),
        "inherited_free_blocks": at_fork["blocks_available"],
        "inherited_unused_pools_taken": max(0, at_fork["pools_unused"] - now["pools_unused"]),
        "inherited_unused_pools": at_fork["pools_unused"],
    }


def report_path(pid: int) -> Path:
    return Path(tempfile.gettempdir()) / f"corral-malloc-{pid}.json"


def read_report(pid: int) -> dict[str, Any] | None:
    """The worker's last report with ``derived`` figures, or None (off, not yet, unreadable)."""
    try:
        with open(report_path(pid), encoding="utf-8") as f:
            doc: dict[str, Any] = json.load(f)
        doc["derived"] = derive(doc["at_fork"], doc["now"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return doc


class MallocReporter:
    """Every ``interval_s`` (from the worker's tick): snapshot and write the report file."""

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self.due = 0.0
        self.at_fork: dict[str, int] | None = None
        self.path = report_path(os.getpid())

    def maybe_dump(self, now: float) -> None:
        if now < self.due:
            return
        self.due = now + self.interval_s
        t0 = time.perf_counter()
        current = snapshot()
        if self.at_fork is None:
            self.at_fork = current
        doc = {"t": now, "took_ms": round((time.perf_counter() - t0) * 1000, 3)}
        tmp = self.path.with_suffix(".tmp")
        with contextlib.suppress(OSError):
            tmp.write_text(json.dumps({**doc, "at_fork": self.at_fork, "now": current}))
            os.replace(tmp, self.path)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.path.unlink()
