"""The allocator section of the settings table: pymalloc statistics (corral.memory.mallocstats)."""

from __future__ import annotations

from corral.settings_core import Setting, _non_negative

ROWS: tuple[Setting, ...] = (
    Setting(
        "malloc_stats_s",
        float,
        0.0,
        "Seconds between each worker's pymalloc arena/pool reports (sys._debugmallocstats, ~1 ms "
        "for a 300 MB heap, from the worker's housekeeping tick, never a request), shown on "
        "/stats and the dashboard as 'malloc' (0 = off).",
        validator=_non_negative,
        section="memory",
    ),
)
