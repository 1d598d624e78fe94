"""corral.memory: what the kernel says about a worker's memory, and what to do about it.

* ``proc``: /proc readers (smaps_rollup, statm, maps, pagemap copy-on-write counts).
* ``gcpolicy``: the ``--gc`` presets and the preload/worker/exit lifecycle.
* ``immortal``: making the preloaded heap immortal on CPython 3.12/3.13.
* ``warmup``: requests run through the application in-process before the freeze.
* ``recycle``: pure recycling policies (memory limit with hysteresis, max_requests).
* ``attribution``: which Python objects and modules a worker's copied pages hold.
* ``cowcli``: ``corral cow``, the copy-on-write report of a running server.
* ``writetrack``: ``--track-writes``, pre-fork pages written per request (userfaultfd).
"""

from corral.memory.gcpolicy import (
    PRESET_HELP,
    GcPreset,
    PreloadReport,
    begin_preload,
    fast_exit,
    finish_preload,
    in_worker,
)
from corral.memory.proc import (
    AddressRange,
    CowCounts,
    MemoryProbeError,
    MemorySample,
    ProcessGone,
    ProcFormatError,
    SampleUnavailable,
    anonymous_ranges,
    pagemap_cow,
    read_smaps_rollup,
    read_statm_rss,
)
from corral.memory.recycle import (
    Metric,
    RecycleDecision,
    RecyclePolicy,
    RecycleSettings,
    WorkerSample,
    jittered_max_requests,
    max_requests_due,
)
from corral.memory.warmup import make_warmup

__all__ = [
    "PRESET_HELP",
    "AddressRange",
    "CowCounts",
    "GcPreset",
    "MemoryProbeError",
    "MemorySample",
    "Metric",
    "PreloadReport",
    "ProcFormatError",
    "ProcessGone",
    "RecycleDecision",
    "RecyclePolicy",
    "RecycleSettings",
    "SampleUnavailable",
    "WorkerSample",
    "anonymous_ranges",
    "begin_preload",
    "fast_exit",
    "finish_preload",
    "in_worker",
    "jittered_max_requests",
    "make_warmup",
    "max_requests_due",
    "pagemap_cow",
    "read_smaps_rollup",
    "read_statm_rss",
]
