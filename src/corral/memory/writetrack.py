"""Pages written per request: userfaultfd write-protection read back with ``PAGEMAP_SCAN``.

Theory of operation. ``pagemap`` bit 56 says which pre-fork pages a worker has copied *so far*;
it cannot say which request copied them. Linux 6.7 added the two pieces that can, both usable
without privileges:

* ``userfaultfd(2)`` in *asynchronous write-protect* mode (``UFFD_FEATURE_WP_ASYNC``): the
  worker registers the pre-fork heap ranges (its zygote's anonymous ranges) with
  ``UFFDIO_REGISTER_MODE_WP``. A write to a protected page faults, and the kernel itself lifts
  the protection and lets the write proceed: no handler thread, no message to read. Only the
  page's "protected" bit changes. ``UFFD_FEATURE_WP_UNPOPULATED`` makes protection stick to
  pages not yet populated as well (a first write there counts too). ``UFFD_USER_MODE_ONLY``
  is what lets an unprivileged process open the descriptor when
  ``vm.unprivileged_userfaultfd`` is 0; write faults taken inside the kernel (``recv_into`` a
  pre-fork buffer) are still resolved, because asynchronous mode never delivers a fault.
* ``ioctl(/proc/self/pagemap, PAGEMAP_SCAN)`` with ``category_mask = PAGE_IS_WRITTEN`` and
  ``PM_SCAN_WP_MATCHING``: one call returns the address ranges written since they were last
  protected and protects them again. Calling it after each request gives that request's count.

Counting. ``scan`` asks the kernel for written pages over one span covering every registered
range. Mappings inside the span that were not registered (libraries, the stack, anything the
worker mapped after the fork) are skipped by the kernel, so only the pre-fork heap counts. The
regions also report ``PAGE_IS_PRESENT``: a written page that is no longer present was discarded
(``MADV_DONTNEED``; its protection is dropped with it) and is added to ``dropped_pages`` rather
than to the count. ``PM_SCAN_CHECK_WPASYNC`` (fail with ``EPERM`` on any page not under
asynchronous protection) is used once, over exactly the registered ranges, to prove that
registration took; a steady-state scan leaves it out because the span legitimately holds
unregistered mappings.

Two figures per scan. ``scan()`` returns the pages written since the previous scan: rewrites
of pages this worker had already copied count again, and so does a floor of ~35-50 pages per
scan that the interpreter writes by itself (reference counts and allocator free lists on
pre-fork pages, its own frames). ``first_written`` is the part of them never written before
since ``start``: one byte per tracked page (``FirstWrites``) remembers what was seen. Tracking
starts right after the fork, so a first write is a page un-shared (or populated) by that
request; that is the figure that traces un-sharing to endpoints. Reading never counts.
With ``threads > 1`` requests overlap and what each is credited with is approximate.

Costs (measured on a ~205 MB heap, see docs/memory.md): a scan is a page-table walk that
protects what it returns, ~0.2-0.35 ms when little changed, plus ~1-5 µs per written region
(the ioctl's share and this module's loop over it). Every page written after a scan takes one
extra minor fault the next time it is written, even a page already copied. On an immortal
heap (``--gc auto`` on 3.12/3.13) that added ~0.5 ms per request; on a heap whose reference
counts are written by every request (3.11, ``--gc freeze``) ~1,100 pages per request were
rewritten and it added ~11 ms. That is why the mode is opt-in.

Fallback: ``available()`` returns a one-line reason (no such system call, a seccomp filter,
a kernel without the features, an architecture whose numbers are not verified here) and the
worker runs exactly as without the mode.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import logging
import os
import platform
import struct
import sys
import tempfile
import time
from bisect import bisect_right
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from corral.memory.proc import PAGE_SIZE, AddressRange, MemoryProbeError, anonymous_ranges

__all__ = [
    "BETWEEN_REQUESTS",
    "DEFAULT_MAX_PATHS",
    "OTHER_PATHS",
    "PAGEMAP_SCAN",
    "UFFDIO_API",
    "UFFDIO_REGISTER",
    "FirstWrites",
    "PathCounts",
    "PathStat",
    "RequestWrites",
    "WriteTrackError",
    "WriteTracker",
    "available",
    "errno_reason",
    "features_reason",
    "intersect",
    "is_present",
    "iter_regions",
    "pack_pm_scan_arg",
    "pack_uffdio_api",
    "pack_uffdio_register",
    "report_path",
    "unpack_uffdio_api",
    "unpack_walk_end",
]

log = logging.getLogger("corral.memory")

# --- kernel interface ---------------------------------------------------------------------------
# ioctl numbers follow include/uapi/asm-generic/ioctl.h, which x86_64 and arm64 both use:
# dir (2 bits, _IOC_WRITE = 1, _IOC_READ = 2) << 30 | size (14 bits) << 16 | type << 8 | nr.
_IOC_WRITE, _IOC_READ = 1, 2


def _ioc(direction: int, kind: int, nr: int, size: int) -> int:
    return (direction << 30) | (size << 16) | (kind << 8) | nr


# userfaultfd(2) system call numbers: arch/x86/entry/syscalls/syscall_64.tbl (323, also
# __NR_userfaultfd in asm/unistd_64.h here) and include/uapi/asm-generic/unistd.h (282, arm64).
_SYSCALL_USERFAULTFD = {"x86_64": 323, "aarch64": 282}

# include/uapi/linux/userfaultfd.h (checked against torvalds/linux and linux-mm/linux-mm; the
# Debian 12 headers on this machine are Linux 6.1 and predate WP_ASYNC):
_UFFD_USER_MODE_ONLY = 1  # flag of userfaultfd(2) itself (Linux 5.11)
_UFFD_API = 0xAA
_UFFDIO = 0xAA  # ioctl type
_UFFDIO_REGISTER_NR, _UFFDIO_API_NR = 0x00, 0x3F
_UFFDIO_REGISTER_MODE_WP = 1 << 1
_UFFD_FEATURE_WP_UNPOPULATED = 1 << 13  # Linux 6.4
_UFFD_FEATURE_WP_ASYNC = 1 << 15  # Linux 6.7 (1 << 14 is UFFD_FEATURE_POISON)
_FEATURES = _UFFD_FEATURE_WP_ASYNC | _UFFD_FEATURE_WP_UNPOPULATED
# struct uffdio_api {u64 api; u64 features; u64 ioctls} = 24 bytes;
# struct uffdio_register {struct uffdio_range {u64 start; u64 len}; u64 mode; u64 ioctls} = 32.
_UFFDIO_API_FMT = "=3Q"
_UFFDIO_REGISTER_FMT = "=4Q"
UFFDIO_API = _ioc(_IOC_READ | _IOC_WRITE, _UFFDIO, _UFFDIO_API_NR, 24)  # 0xC018AA3F
UFFDIO_REGISTER = _ioc(_IOC_READ | _IOC_WRITE, _UFFDIO, _UFFDIO_REGISTER_NR, 32)  # 0xC020AA00

# include/uapi/linux/fs.h (torvalds/linux; Linux 6.7), "Pagemap ioctl":
# struct pm_scan_arg {u64 size, flags, start, end, walk_end, vec, vec_len, max_pages,
#                     category_inverted, category_mask, category_anyof_mask, return_mask} = 96;
# struct page_region {u64 start, end, categories} = 24.
_PM_SCAN_ARG_FMT = "=12Q"
_PM_SCAN_ARG_SIZE = 96
_WALK_END_OFFSET = 4 * 8
_PAGE_REGION_SIZE = 24
PAGEMAP_SCAN = _ioc(_IOC_READ | _IOC_WRITE, ord("f"), 16, _PM_SCAN_ARG_SIZE)  # 0xC0606610
_PAGE_IS_WRITTEN = 1 << 1
_PAGE_IS_PRESENT = 1 << 3
_PM_SCAN_WP_MATCHING = 1 << 0  # write-protect the pages matched
_PM_SCAN_CHECK_WPASYNC = 1 << 1  # fail (EPERM) on a page without async write-protection

_VEC_REGIONS = 512  # 12 KiB of page_region per ioctl; a typical request returns a few dozen


def pack_uffdio_api(features: int) -> bytes:
    """``struct uffdio_api`` asking for ``features`` (the kernel fills in the rest)."""
    return struct.pack(_UFFDIO_API_FMT, _UFFD_API, features, 0)


def unpack_uffdio_api(data: bytes | bytearray) -> tuple[int, int, int]:
    """``(api, features, ioctls)`` of a ``struct uffdio_api`` the kernel answered."""
    api, features, ioctls = struct.unpack(_UFFDIO_API_FMT, data)
    return api, features, ioctls


def pack_uffdio_register(start: int, length: int) -> bytes:
    """``struct uffdio_register`` for write-protect mode over ``[start, start + length)``."""
    return struct.pack(_UFFDIO_REGISTER_FMT, start, length, _UFFDIO_REGISTER_MODE_WP, 0)


def pack_pm_scan_arg(start: int, end: int, vec: int, vec_len: int, flags: int) -> bytes:
    """``struct pm_scan_arg`` selecting written pages of ``[start, end)``, reporting whether
    each returned region is present, into ``vec_len`` regions at address ``vec``."""
    return struct.pack(
        _PM_SCAN_ARG_FMT,
        _PM_SCAN_ARG_SIZE,
        flags,
        start,
        end,
        0,  # walk_end: written by the kernel
        vec,
        vec_len,
        0,  # max_pages: no limit
        0,  # category_inverted
        _PAGE_IS_WRITTEN,  # category_mask: every page returned was written
        0,  # category_anyof_mask
        _PAGE_IS_WRITTEN | _PAGE_IS_PRESENT,  # return_mask: regions split by presence
    )


def unpack_walk_end(data: bytes | bytearray) -> int:
    """Where the kernel stopped (``end`` once the whole range was walked)."""
    value: int = struct.unpack_from("=Q", data, _WALK_END_OFFSET)[0]
    return value


def iter_regions(data: bytes | bytearray | memoryview, count: int) -> Iterator[tuple[int, ...]]:
    """``(start, end, categories)`` of the first ``count`` ``struct page_region``s."""
    return struct.iter_unpack("=3Q", memoryview(data)[: count * _PAGE_REGION_SIZE])


def is_present(categories: int) -> bool:
    """A returned region still backed by memory (else written, then discarded)."""
    return bool(categories & _PAGE_IS_PRESENT)


# --- probing ------------------------------------------------------------------------------------


class WriteTrackError(MemoryProbeError):
    """Write tracking could not be started or a scan failed."""


_libc: ctypes.CDLL | None = None


def _userfaultfd(flags: int) -> int:
    """The raw system call (glibc has no wrapper); raises ``OSError`` with its errno."""
    global _libc
    number = _SYSCALL_USERFAULTFD.get(platform.machine())
    if number is None:
        raise OSError(errno.ENOSYS, f"userfaultfd number not verified on {platform.machine()}")
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
        _libc.syscall.restype = ctypes.c_long
    fd = int(_libc.syscall(ctypes.c_long(number), ctypes.c_long(flags)))
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return fd


def _open_uffd(features: int) -> tuple[int, int]:
    """A user-mode-only, non-blocking userfaultfd after the API handshake asking for
    ``features``; returns it with the features the kernel says it supports."""
    fd = _userfaultfd(os.O_CLOEXEC | os.O_NONBLOCK | _UFFD_USER_MODE_ONLY)
    try:
        buf = bytearray(pack_uffdio_api(features))
        fcntl.ioctl(fd, UFFDIO_API, buf, True)
    except BaseException:
        os.close(fd)
        raise
    return fd, unpack_uffdio_api(buf)[1]


def errno_reason(err: int) -> str:
    """Why ``userfaultfd(2)`` failed, in one line."""
    if err == errno.ENOSYS:
        return "userfaultfd(2) is missing (kernel without CONFIG_USERFAULTFD, or an unverified CPU)"
    if err == errno.EPERM:
        return (
            "userfaultfd(2) refused (EPERM): blocked by a seccomp filter (container runtimes "
            "often do), or vm.unprivileged_userfaultfd=0 on a kernel before 5.11"
        )
    if err == errno.EINVAL:
        return "userfaultfd(2) rejected UFFD_USER_MODE_ONLY (Linux >= 5.11 needed)"
    return f"userfaultfd(2) failed: {errno.errorcode.get(err, err)}"


def features_reason(features: int) -> str | None:
    """None when the kernel's ``uffdio_api.features`` include what tracking needs."""
    if not features & _UFFD_FEATURE_WP_UNPOPULATED:
        return "the kernel lacks UFFD_FEATURE_WP_UNPOPULATED (Linux >= 6.4 needed)"
    if not features & _UFFD_FEATURE_WP_ASYNC:
        return "the kernel lacks UFFD_FEATURE_WP_ASYNC (Linux >= 6.7 needed)"
    return None


def _probe() -> str | None:
    if not sys.platform.startswith("linux"):
        return f"userfaultfd is Linux-only (this is {sys.platform})"
    if platform.machine() not in _SYSCALL_USERFAULTFD:
        return f"system call and ioctl numbers not verified on {platform.machine()}"
    try:
        fd, features = _open_uffd(0)  # features 0: the kernel answers with all it supports
    except OSError as exc:
        return errno_reason(exc.errno or 0)
    os.close(fd)
    reason = features_reason(features)
    if reason is not None:
        return reason
    return _probe_pagemap_scan()


def _probe_pagemap_scan() -> str | None:
    try:
        fd = os.open("/proc/self/pagemap", os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        return f"/proc/self/pagemap cannot be opened: {exc.strerror}"
    try:
        arg = bytearray(pack_pm_scan_arg(PAGE_SIZE, PAGE_SIZE, 0, 0, 0))  # an empty range
        fcntl.ioctl(fd, PAGEMAP_SCAN, arg, True)
    except OSError as exc:
        name = errno.errorcode.get(exc.errno or 0, str(exc.errno))
        return f"the PAGEMAP_SCAN ioctl failed ({name}; Linux >= 6.7 needed)"
    finally:
        os.close(fd)
    return None


_PROBED: list[str | None] = []


def available() -> str | None:
    """None when per-request write tracking works here, else one line saying why not.

    Probed once per process (a throw-away userfaultfd and an empty ``PAGEMAP_SCAN``, ~50 µs);
    the answer is inherited by forked workers."""
    if not _PROBED:
        _PROBED.append(_probe())
    return _PROBED[0]


# --- the tracker --------------------------------------------------------------------------------


def intersect(
    ranges: Sequence[AddressRange], current: Sequence[AddressRange]
) -> list[AddressRange]:
    """The parts of ``ranges`` still mapped as anonymous memory in ``current``, sorted.

    Registering a range that is no longer (wholly) mapped fails, and the pre-fork ranges come
    from another process (the zygote): intersecting with this process's own map first keeps
    registration to what both have."""
    out: list[AddressRange] = []
    for a in sorted(ranges, key=lambda r: r.start):
        for b in current:
            start, end = max(a.start, b.start), min(a.end, b.end)
            if start < end:
                out.append(AddressRange(start, end))
    return sorted(out, key=lambda r: r.start)


class FirstWrites:
    """Which tracked pages were ever written: one byte per page of each range (8 KiB per
    32 MiB tracked), so a page's first write is told from a rewrite of a page already copied.
    Slicing and ``bytearray.count`` keep the work per region in C."""

    def __init__(self, ranges: Sequence[AddressRange], page_size: int) -> None:
        ordered = sorted(ranges, key=lambda r: r.start)
        self._firsts = [r.start // page_size for r in ordered]
        self._lasts = [r.end // page_size for r in ordered]
        self._maps = [bytearray((r.end - r.start) // page_size) for r in ordered]
        longest = max((len(m) for m in self._maps), default=0)
        self._ones = memoryview(b"\x01" * longest)
        self.pages = 0  # pages ever written

    def mark(self, first: int, last: int) -> int:
        """Mark pages ``[first, last)`` written; return how many were not marked before."""
        new = 0
        i = max(bisect_right(self._firsts, first) - 1, 0)
        while i < len(self._firsts) and self._firsts[i] < last:
            lo, hi = max(first, self._firsts[i]), min(last, self._lasts[i])
            if lo < hi:
                seen_map, a, b = self._maps[i], lo - self._firsts[i], hi - self._firsts[i]
                fresh = (b - a) - seen_map.count(1, a, b)
                if fresh:
                    seen_map[a:b] = self._ones[: b - a]
                    new += fresh
            i += 1
        self.pages += new
        return new


class WriteTracker:
    """Counts pages of registered ranges written between two ``scan`` calls.

    ``start(ranges)`` once (in the worker, after the fork), then ``scan()`` as often as wanted,
    then ``close()``. Not thread-safe: call it from one thread."""

    available = staticmethod(available)

    def __init__(self) -> None:
        self._uffd = -1
        self._pagemap = -1
        self._vec = ctypes.create_string_buffer(_VEC_REGIONS * _PAGE_REGION_SIZE)
        self._vec_view = memoryview(self._vec).cast("B")  # read in place, no copy
        self._vec_addr = ctypes.addressof(self._vec)
        self._span = (0, 0)
        self._arg: bytearray | None = None  # the steady-state PAGEMAP_SCAN argument
        self.registered: list[AddressRange] = []
        self.dropped_pages = 0  # written, then discarded (MADV_DONTNEED) before a scan
        self.scans = 0
        self.first_written = 0  # of the pages the last scan counted, those never written before
        self._seen: FirstWrites | None = None
        self._shift = PAGE_SIZE.bit_length() - 1

    @property
    def registered_bytes(self) -> int:
        return sum(r.end - r.start for r in self.registered)

    def start(self, ranges: Sequence[AddressRange]) -> None:
        """Write-protect ``ranges`` (e.g. the zygote's anonymous ranges) in this process.

        Raises ``WriteTrackError`` when the kernel refuses or nothing could be registered."""
        if self._uffd >= 0:
            raise WriteTrackError("write tracking already started")
        reason = available()
        if reason is not None:
            raise WriteTrackError(reason)
        try:
            self._uffd, _ = _open_uffd(_FEATURES)
            self._pagemap = os.open("/proc/self/pagemap", os.O_RDONLY | os.O_CLOEXEC)
            self._register(intersect(ranges, anonymous_ranges(os.getpid())))
            for rng in self.registered:  # proves registration, protects everything once
                self._scan_range(rng.start, rng.end, _PM_SCAN_WP_MATCHING | _PM_SCAN_CHECK_WPASYNC)
        except (OSError, MemoryProbeError) as exc:
            self.close()
            raise WriteTrackError(f"could not start write tracking: {exc}") from exc
        self.dropped_pages = 0
        self._seen = FirstWrites(self.registered, PAGE_SIZE)  # from now on, writes count

    def _register(self, ranges: Sequence[AddressRange]) -> None:
        refused = 0
        for rng in ranges:
            try:
                arg = bytearray(pack_uffdio_register(rng.start, rng.end - rng.start))
                fcntl.ioctl(self._uffd, UFFDIO_REGISTER, arg, True)
            except OSError:  # a mapping that cannot be registered (locked, special): skip it
                refused += 1
                continue
            self.registered.append(rng)
        if not self.registered:
            raise WriteTrackError(f"no range could be registered ({refused} refused)")
        if refused:
            log.info(
                "write tracking: %d of %d ranges could not be registered", refused, len(ranges)
            )
        self._span = (self.registered[0].start, max(r.end for r in self.registered))
        self._arg = bytearray(
            pack_pm_scan_arg(*self._span, self._vec_addr, _VEC_REGIONS, _PM_SCAN_WP_MATCHING)
        )

    def scan(self) -> int:
        """Pages written since the previous scan (or ``start``), protecting them again.

        The common case is one ``ioctl`` on an argument built once in ``start``: this code's
        own writes to pre-fork pages (reference counts of the objects it uses, on a heap
        that is not immortal) are counted by the next scan, so it touches as few as it can."""
        arg = self._arg
        if arg is None:
            raise WriteTrackError("write tracking is not started")
        self.scans += 1
        self.first_written = 0
        count = fcntl.ioctl(self._pagemap, PAGEMAP_SCAN, arg, True)
        if not count:
            return 0
        written = self._credit(count)
        if count == _VEC_REGIONS:  # the vector filled up: the kernel stopped at walk_end
            written += self._scan_range(unpack_walk_end(arg), self._span[1], _PM_SCAN_WP_MATCHING)
        return written

    def _scan_range(self, start: int, end: int, flags: int) -> int:
        written = 0
        while start < end:
            arg = bytearray(pack_pm_scan_arg(start, end, self._vec_addr, _VEC_REGIONS, flags))
            count = fcntl.ioctl(self._pagemap, PAGEMAP_SCAN, arg, True)
            written += self._credit(count)
            walk_end = unpack_walk_end(arg)
            if walk_end <= start:  # no progress: never loop forever on a surprising answer
                break
            start = walk_end
        return written

    def _credit(self, count: int) -> int:
        """Present pages in the returned regions; first writes and discarded pages noted."""
        seen, shift, present, new = self._seen, self._shift, 0, 0
        for start, end, categories in iter_regions(self._vec_view, count):
            first, last = start >> shift, end >> shift
            if not categories & _PAGE_IS_PRESENT:  # is_present(), inlined: once per region
                self.dropped_pages += last - first
                continue
            present += last - first
            if seen is not None:
                new += seen.mark(first, last)
        self.first_written += new
        return present

    @property
    def first_written_total(self) -> int:
        """Pages written at least once since ``start``: what this process has un-shared."""
        return self._seen.pages if self._seen is not None else 0

    def close(self) -> None:
        """Closing the userfaultfd unregisters every range; pages keep no protection."""
        for fd in (self._uffd, self._pagemap):
            if fd >= 0:
                os.close(fd)
        self._uffd = self._pagemap = -1
        self._arg = None


# --- per-path aggregation -----------------------------------------------------------------------

DEFAULT_MAX_PATHS = 200  # distinct paths kept; a bound like a Prometheus label-cardinality cap
_MAX_PATH_CHARS = 200
OTHER_PATHS = "(other)"  # real request paths start with "/" or are "*": no clash
BETWEEN_REQUESTS = "(between requests)"


@dataclass(slots=True)
class PathStat:
    """Pages written by the requests of one path. ``new_pages``: of those, pages written for
    the first time since tracking started (what these requests un-shared)."""

    requests: int = 0
    pages: int = 0
    new_pages: int = 0
    max_pages: int = 0

    def add(self, pages: int, new_pages: int) -> None:
        self.requests += 1
        self.pages += pages
        self.new_pages += new_pages
        if pages > self.max_pages:
            self.max_pages = pages

    def as_json(self, path: str) -> dict[str, Any]:
        return {
            "path": path,
            "requests": self.requests,
            "pages": self.pages,
            "new_pages": self.new_pages,
            "max_pages": self.max_pages,
        }


class PathCounts:
    """Pages written per request path, at most ``max_paths`` distinct paths, then
    ``OTHER_PATHS``. Names in parentheses (``BETWEEN_REQUESTS``) do not count to the bound."""

    def __init__(self, max_paths: int = DEFAULT_MAX_PATHS) -> None:
        if max_paths < 1:
            raise ValueError("max_paths must be >= 1")
        self.max_paths = max_paths
        self.stats: dict[str, PathStat] = {}
        self._paths = 0
        self._names: dict[bytes, str] = {}

    def record(self, path: bytes | str, pages: int, new_pages: int = 0) -> None:
        """Credit one request of ``path`` with ``pages`` written, ``new_pages`` first writes."""
        self._stat(self._name(path) if isinstance(path, bytes) else path).add(pages, new_pages)

    def _name(self, path: bytes) -> str:
        name = self._names.get(path)
        if name is None:
            name = path[:_MAX_PATH_CHARS].decode("utf-8", "backslashreplace")
            if len(self._names) < 4 * self.max_paths:  # a bounded decode cache
                self._names[path] = name
        return name

    def _stat(self, name: str) -> PathStat:
        stat = self.stats.get(name)
        if stat is not None:
            return stat
        if not name.startswith("("):
            name = name[:_MAX_PATH_CHARS]
            if self._paths >= self.max_paths:
                return self._stat(OTHER_PATHS)
            self._paths += 1
        stat = self.stats[name] = PathStat()
        return stat

    @property
    def total_pages(self) -> int:
        return sum(s.pages for s in self.stats.values())

    @property
    def total_new_pages(self) -> int:
        return sum(s.new_pages for s in self.stats.values())

    def top(self, n: int, key: str = "pages") -> list[tuple[str, PathStat]]:
        """The ``n`` paths with the most ``key`` (``pages`` or ``new_pages``); ties by name."""
        if key not in ("pages", "new_pages"):
            raise ValueError(f"key must be 'pages' or 'new_pages', not {key!r}")
        ranked = sorted(self.stats.items(), key=lambda kv: (-getattr(kv[1], key), kv[0]))
        return ranked[:n]

    def as_json(self, n: int, key: str = "pages") -> list[dict[str, Any]]:
        return [stat.as_json(name) for name, stat in self.top(n, key)]


# --- the worker loop's hook ---------------------------------------------------------------------

DUMP_INTERVAL_S = 10.0
REPORT_TOP = 50
SUMMARY_TOP = 10  # paths in the final log line


def report_path(pid: int) -> Path:
    """Where worker ``pid`` keeps its per-path report (``corral-writes-PID.json``)."""
    return Path(tempfile.gettempdir()) / f"corral-writes-{pid}.json"


class RequestWrites:
    """One worker's per-request write counting. ``RequestWrites.start()`` returns None (after
    one log line) when the mode cannot run; otherwise the loop calls ``before_request()`` as a
    request is handed to the app, ``after_request(path)`` when its response is done,
    ``maybe_dump(now)`` from its tick, and ``close()`` on the way out."""

    def __init__(self, tracker: WriteTracker, counts: PathCounts, ranges_from: str) -> None:
        self.tracker = tracker
        self.counts = counts
        self.ranges_from = ranges_from
        self.scan_s = 0.0
        self._dumped_at = 0.0
        self._dirty = False
        self.failed = False

    @classmethod
    def start(
        cls, ranges: Sequence[AddressRange] | None = None, max_paths: int = DEFAULT_MAX_PATHS
    ) -> RequestWrites | None:
        """Track this worker's pre-fork ranges (default: its zygote's anonymous ranges)."""
        reason = available()
        if reason is not None:
            log.warning("per-request write tracking is off: %s", reason)
            return None
        source = "given"
        if ranges is None:
            from corral.memory.attribution import prefork_ranges

            ranges, source = prefork_ranges(os.getpid())
        tracker = WriteTracker()
        try:
            tracker.start(ranges)
        except WriteTrackError as exc:
            log.warning("per-request write tracking is off: %s", exc)
            return None
        return cls(tracker, PathCounts(max_paths), source)

    def before_request(self) -> None:
        """Credit what the loop wrote since the last request to ``BETWEEN_REQUESTS``."""
        self._record(BETWEEN_REQUESTS)

    def after_request(self, path: bytes | str) -> int:
        """Credit the pages written since ``before_request`` to ``path``; returns them."""
        return self._record(path)

    def _record(self, path: bytes | str) -> int:
        if self.failed:
            return 0
        t0 = time.perf_counter()
        try:
            pages = self.tracker.scan()
        except (OSError, WriteTrackError):  # never let the diagnostic break the worker
            log.exception("per-request write tracking failed; turning it off in this worker")
            self.failed = True
            self.tracker.close()
            return 0
        self.scan_s += time.perf_counter() - t0
        self.counts.record(path, pages, self.tracker.first_written)
        self._dirty = True
        return pages

    def report(self, top: int = REPORT_TOP) -> dict[str, Any]:
        scans = self.tracker.scans
        return {
            "pid": os.getpid(),
            "page_size": PAGE_SIZE,
            "ranges_from": self.ranges_from,
            "tracked_bytes": self.tracker.registered_bytes,
            "scans": scans,
            "scan_ms_mean": round(1000 * self.scan_s / scans, 4) if scans else 0.0,
            "total_pages": self.counts.total_pages,
            "total_new_pages": self.counts.total_new_pages,
            "dropped_pages": self.tracker.dropped_pages,
            "failed": self.failed,
            "by_pages": self.counts.as_json(top, "pages"),
            "by_new_pages": self.counts.as_json(top, "new_pages"),
        }

    def maybe_dump(self, now: float, interval_s: float = DUMP_INTERVAL_S) -> None:
        """Write the report to ``report_path`` at most every ``interval_s`` when it changed."""
        if self._dirty and now - self._dumped_at >= interval_s:
            self._dumped_at = now
            self.dump()

    def dump(self) -> None:
        from corral.memory.attribution import write_report

        self._dirty = False
        try:
            write_report(self.report(), report_path(os.getpid()))
        except OSError:
            log.exception("could not write the per-request writes report")

    def close(self) -> None:
        """Stop tracking: final figures to the log, and no ``corral-writes-PID.json`` left in
        the temporary directory (one per worker that ever ran)."""
        self.tracker.close()
        log.info("%s", self.summary())
        with contextlib.suppress(OSError):
            report_path(os.getpid()).unlink(missing_ok=True)

    def summary(self, top: int = SUMMARY_TOP) -> str:
        """One log line: totals and the paths that un-shared the most pages."""
        rows = ", ".join(
            f"{name} {stat.new_pages}" for name, stat in self.counts.top(top, "new_pages")
        )
        return (
            f"per-request writes, final (pid {os.getpid()}): "
            f"{self.counts.total_pages} pages written, {self.counts.total_new_pages} new; "
            f"new pages by path: {rows or '-'}"
        )
