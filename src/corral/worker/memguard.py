"""The worker's own memory check: between requests, cheap, and ahead of the master's sampling.

Theory of operation. The master samples each worker's ``smaps_rollup`` from outside, on its
0.1 s tick at best; an app leaking 100 MB/s outruns that by the time a replacement boots. So the
worker checks itself from its loop, between rounds of events (never in the middle of a
response), at most every ``CHECK_EVERY_S`` (10 ms; at 100 MB/s that is 1 MB between checks):

* The figure is an **estimate** of ``worker_memory_metric``: the value ``smaps_rollup`` gave at
  the last *baseline* plus the growth of the resident set since, read from ``/proc/self/statm``
  with one ``pread`` on a descriptor kept open (~2 µs; no file is opened per check). RSS growth
  is new resident pages, which are private, so the estimate never overstates private memory;
  what it misses is pages that were shared and became private (copy-on-write), which is slow.
  The baseline is taken at the first check, and again (at most once a second) whenever the
  estimate passes ``REBASE_AT`` of the limit, so near the limit the figure is exact again.
* **Over the limit**: the worker writes its estimate into its scoreboard slot
  (``set_memory_alert``). The master reads that word every tick, confirms it with its own
  ``smaps_rollup`` sample (USS/PSS: what shared pages mean is the master's call) and starts a
  replacement at once (``corral.memory.recycle.alert_decision``); once the replacement is
  READY the old worker drains as in every spawn-before-kill replacement.
* **Past ``STOP_FACTOR`` x the limit** (1.25) before that happened, the worker stops taking
  requests itself: ``check`` returns True once, the loop drains (stops accepting, answers the
  requests in flight and the one a kept-alive client may already be sending with
  ``Connection: close``) and the worker exits with ``exitcodes.MEMORY_LIMIT``, which the master
  logs as a memory recycle, not a crash, and replaces. 1.25 and not 1.5: the requests still in
  flight and the drain itself add memory, and the goal is that no sample exceeds 1.5x.
* A worker whose first baseline is already over the limit (a limit below what a fresh worker
  needs) turns the check off and says so once: stopping it would only start a replace loop;
  the master's sampling, with its minimum lifetime, still applies.
* ``hard_limit_bytes`` (``--worker-memory-hard-limit-mib``) is enforced by the kernel through
  ``RLIMIT_AS``: the address space may grow by that much beyond what the worker had mapped
  when it started. An allocation past it fails: ``MemoryError`` in the app is a 500 for that
  request; elsewhere the worker dies and is replaced (docs/memory.md).

Nothing here touches sockets or the loop: ``check`` answers, the loop acts.
"""

from __future__ import annotations

import contextlib
import logging
import os
import resource
from collections.abc import Callable

from corral.memory.proc import PAGE_SIZE, MemoryProbeError, read_smaps_rollup
from corral.memory.recycle import Metric
from corral.stats.protocol import SlotWriter

__all__ = ["CHECK_EVERY_S", "REBASE_AT", "STOP_FACTOR", "MemoryGuard", "set_address_space_limit"]

log = logging.getLogger("corral.error")
MIB = 1024 * 1024
CHECK_EVERY_S = 0.010  # between checks; a hello-world worker answers ~300 requests in that time
STOP_FACTOR = 1.25  # stop taking requests past this multiple of the limit (see above)
REBASE_AT = 0.85  # re-read smaps_rollup (exact figure) once the estimate passes this fraction
REBASE_EVERY_S = 1.0  # ... at most this often
MEMORY_LIMIT_EXIT = 5  # = corral.master.exitcodes.MEMORY_LIMIT (kept in step by a unit test)


def statm_reader(path: str = "/proc/self/statm") -> Callable[[], int]:
    """A function returning this process's resident bytes: one ``pread`` on a kept descriptor.

    Open it in the process it is about (``/proc/self`` is resolved at open time)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    pread = os.pread

    def rss() -> int:
        return int(pread(fd, 128, 0).split(None, 2)[1]) * PAGE_SIZE

    return rss


class MemoryGuard:
    """The check itself. The loop runs ``if now >= guard.due and guard.check(now): drain``."""

    __slots__ = (
        "_alert", "_base_rss", "_base_value", "_limit", "_next_rebase", "_read_rss",
        "_read_value", "_slot", "due", "exit_code",
    )  # fmt: skip

    def __init__(
        self,
        limit_bytes: int,
        slot: SlotWriter,
        read_rss: Callable[[], int],
        read_value: Callable[[], int],
    ) -> None:
        self._limit = limit_bytes
        self._slot = slot
        self._read_rss = read_rss
        self._read_value = read_value  # the exact figure (smaps_rollup); costs a page walk
        self._base_value = self._base_rss = -1  # no baseline yet
        self._next_rebase = 0.0
        self._alert = 0
        self.due = 0.0 if limit_bytes > 0 else float("inf")  # the loop compares with this
        self.exit_code = 0  # what the worker exits with: MEMORY_LIMIT_EXIT once it stopped

    @classmethod
    def for_worker(
        cls, limit_bytes: int, metric: str, hard_limit_bytes: int, slot: SlotWriter
    ) -> MemoryGuard:
        """The guard of this (freshly forked) worker; sets the hard limit too, if any."""
        if hard_limit_bytes > 0:
            set_address_space_limit(hard_limit_bytes)
        if limit_bytes <= 0:
            return cls(0, slot, lambda: 0, lambda: 0)
        which = Metric(metric)
        pid = os.getpid()
        return cls(limit_bytes, slot, statm_reader(), lambda: read_smaps_rollup(pid).value(which))

    def check(self, now: float) -> bool:
        """Check once (the loop calls this when ``now >= due``). True exactly once: when the
        worker should stop taking new requests."""
        self.due = now + CHECK_EVERY_S
        try:
            rss = self._read_rss()
            if self._rebase_due(now, rss) and not self._rebase(now, rss):
                return False
            estimate = self._base_value + rss - self._base_rss
        except (OSError, ValueError, IndexError, MemoryProbeError):
            return False  # /proc unreadable: leave it to the master's sampling
        return self._judge(estimate)

    def _rebase_due(self, now: float, rss: int) -> bool:
        if self._base_rss < 0:
            return True
        near = self._base_value + rss - self._base_rss > self._limit * REBASE_AT
        return near and now >= self._next_rebase

    def _rebase(self, now: float, rss: int) -> bool:
        first = self._base_rss < 0
        self._base_value, self._base_rss = self._read_value(), rss
        # the first baseline leaves the next one free: approaching the limit re-reads at once
        self._next_rebase = 0.0 if first else now + REBASE_EVERY_S
        if first and self._base_value >= self._limit:
            log.warning(
                "worker %d starts at %.1f MiB, over its memory limit of %.1f MiB: its own check "
                "is off (the master's sampling still applies)",
                os.getpid(), self._base_value / MIB, self._limit / MIB,
            )  # fmt: skip
            self.due = float("inf")
            return False
        return True

    def _judge(self, estimate: int) -> bool:
        limit = self._limit
        if estimate <= limit:
            if self._alert:
                self._alert = 0
                self._slot.set_memory_alert(0)
            return False
        if not self._alert:
            log.warning(
                "worker %d uses about %.1f MiB, over its memory limit of %.1f MiB: asking for "
                "a replacement",
                os.getpid(), estimate / MIB, limit / MIB,
            )  # fmt: skip
        self._alert = estimate
        self._slot.set_memory_alert(estimate)
        if estimate <= limit * STOP_FACTOR or self.exit_code:
            return False
        log.warning(
            "worker %d uses about %.1f MiB, %.2fx its memory limit, before its replacement was "
            "ready: it stops taking requests",
            os.getpid(), estimate / MIB, STOP_FACTOR,
        )  # fmt: skip
        self.exit_code = MEMORY_LIMIT_EXIT
        self.due = float("inf")
        return True


def vm_size() -> int:
    """This process's mapped address space in bytes (``VmSize``, the first field of statm)."""
    with open("/proc/self/statm", "rb") as f:
        return int(f.read().split(None, 1)[0]) * PAGE_SIZE


def set_address_space_limit(headroom_bytes: int) -> int:
    """``RLIMIT_AS`` = the address space mapped now + ``headroom_bytes`` (never above the hard
    limit already set). Returns the limit set, 0 when it could not be set."""
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = vm_size() + headroom_bytes
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
        return limit
    log.warning("could not set RLIMIT_AS to %d bytes", limit)
    return 0
