"""The memory section of the settings table (``corral.config`` joins the sections)."""

from __future__ import annotations

from corral.memory.gcpolicy import GcPreset
from corral.memory.recycle import Metric
from corral.settings_core import Setting, _non_negative, _positive

S = Setting
ROWS: tuple[Setting, ...] = (
    S(
        "gc",
        GcPreset,
        GcPreset.AUTO,
        "Copy-on-write GC policy: auto, freeze, cpython or instagram (see docs/memory.md).",
        section="memory",
    ),
    S(
        "warmup",
        list,
        [],
        "Request paths to run through the app in the preloading process "
        "before the heap is frozen (repeatable).",
        section="memory",
        metavar="PATH",
    ),
    S(
        "gc_collect_before_freeze",
        bool,
        False,
        "Run gc.collect() before gc.freeze() (frees "
        "garbage but leaves holes every worker then fills).",
        section="memory",
    ),
    S(
        "max_worker_memory_mib",
        float,
        0.0,
        "Recycle a worker whose memory (see "
        "worker_memory_metric) stays above this many MiB (0 = off).",
        validator=_non_negative,
        section="memory",
    ),
    S(
        "worker_memory_metric",
        Metric,
        Metric.USS,
        "Which figure max_worker_memory_mib limits: uss (private), pss or rss.",
        section="memory",
    ),
    S(
        "worker_memory_hard_limit_mib",
        float,
        0.0,
        "A ceiling the kernel enforces (RLIMIT_AS): each worker may map this many MiB more "
        "than it had at fork; past it allocations fail (0 = off; see docs/memory.md).",
        validator=_non_negative,
        section="memory",
    ),
    S(
        "track_writes",
        bool,
        False,
        "Count, per request path, the pre-fork heap pages each request writes (userfaultfd "
        "write-protect + PAGEMAP_SCAN, Linux >= 6.7); a diagnostic costing ~5-10 us per page "
        "written. Reports go to $TMPDIR/corral-writes-PID.json while the worker runs (removed at "
        "exit; the final figures are logged).",
        section="memory",
    ),
    S(
        "memory_sample_s",
        float,
        2.0,
        "Seconds between smaps_rollup samples of each worker.",
        validator=_positive,
        section="memory",
    ),
)
