"""Readers for the kernel's view of a process's memory: smaps_rollup, statm, maps and pagemap.

Theory of operation. A forked worker starts out sharing every page of the preloaded heap with its
parent; each page it writes (a reference count going up and back down is enough) becomes a private
copy. Three views of that, from cheap to exact:

* ``statm`` (~10 µs): resident set size only. Shared pages count in full, so RSS says nothing
  about sharing; use it as a cheap first filter.
* ``smaps_rollup`` (~15 µs per MB resident, a page-table walk): Rss, Pss, and USS
  (``Private_Clean + Private_Dirty``). ``Shared_Dirty`` is the copy-on-write sharing that is still
  intact. psutil's ``shared`` is file-backed pages only and must not be used for this.
* ``pagemap`` bit 56 ("exclusively mapped", readable without privileges): for each present page
  of the pre-fork anonymous ranges, whether this process is its only mapper (copied) or not
  (still shared). A page that the *parent* copies away also turns exclusive in the child, so the
  parent must stay idle for the figure to mean "copied by the worker".

Parsers are pure functions of the file text so they are tested on sample text; the readers only
open, read and translate ``FileNotFoundError``/``ProcessLookupError`` into ``ProcessGone`` and any
other ``OSError`` (``EMFILE`` when the master is out of descriptors, ``ENOMEM``, ``EACCES``) into
``SampleUnavailable``: no sample this time, the process may well be alive. Both are
``MemoryProbeError``s, which the master's sampler skips; the first ``SampleUnavailable`` after a
good read is logged once, so an outage costs one log line rather than one per sample.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from corral.memory.recycle import Metric

__all__ = [
    "PAGE_SIZE",
    "AddressRange",
    "CowCounts",
    "MemoryProbeError",
    "MemorySample",
    "ProcFormatError",
    "ProcessGone",
    "SampleUnavailable",
    "anonymous_ranges",
    "count_pagemap_entries",
    "pagemap_cow",
    "parse_anonymous_ranges",
    "parse_smaps_rollup",
    "parse_statm_rss",
    "read_smaps_rollup",
    "read_statm_rss",
]

log = logging.getLogger("corral.memory")

PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
_PAGEMAP_ENTRY = 8  # bytes per page in /proc/PID/pagemap (Documentation/admin-guide/mm/pagemap.rst)
_PAGEMAP_CHUNK_PAGES = 1 << 16  # 512 KiB of pagemap (256 MiB of address space) per read()


class MemoryProbeError(Exception):
    """Base class for failures to read a process's memory figures."""


class ProcessGone(MemoryProbeError):
    """The process exited (or is a zombie) before or while its /proc files were read."""


class SampleUnavailable(MemoryProbeError):
    """A /proc file could not be read this time (e.g. EMFILE): no sample, try again later."""


class ProcFormatError(MemoryProbeError):
    """A /proc file did not have the expected format (a field missing or not a number)."""


@dataclass(frozen=True, slots=True)
class MemorySample:
    """One smaps_rollup reading, in bytes. ``taken_at`` is ``time.monotonic()``."""

    rss: int
    pss: int
    uss: int  # Private_Clean + Private_Dirty: what exiting the process would free
    shared: int  # Shared_Clean + Shared_Dirty
    shared_dirty: int  # copy-on-write pages still shared with the parent or siblings
    swap: int
    taken_at: float

    def value(self, metric: Metric) -> int:
        """The figure the recycling policy compares with its limit."""
        return {Metric.USS: self.uss, Metric.PSS: self.pss, Metric.RSS: self.rss}[metric]


@dataclass(frozen=True, slots=True)
class AddressRange:
    """A half-open virtual address range ``[start, end)``."""

    start: int
    end: int

    @property
    def pages(self) -> int:
        return (self.end - self.start) // PAGE_SIZE


@dataclass(frozen=True, slots=True)
class CowCounts:
    """Present pages of the examined ranges, split by pagemap bit 56."""

    shared_pages: int  # present, mapped by more than one process: still shared
    exclusive_pages: int  # present, mapped only here: copied (or allocated after the fork)
    swapped_pages: int
    page_size: int

    @property
    def shared_bytes(self) -> int:
        return self.shared_pages * self.page_size

    @property
    def exclusive_bytes(self) -> int:
        return self.exclusive_pages * self.page_size

    @property
    def shared_fraction(self) -> float:
        """Share of present pages still shared; 1.0 when nothing is present."""
        present = self.shared_pages + self.exclusive_pages
        return self.shared_pages / present if present else 1.0

    def __add__(self, other: CowCounts) -> CowCounts:
        return CowCounts(
            self.shared_pages + other.shared_pages,
            self.exclusive_pages + other.exclusive_pages,
            self.swapped_pages + other.swapped_pages,
            self.page_size,
        )


# --- smaps_rollup -------------------------------------------------------------------------------

_ROLLUP_FIELDS = (
    "Rss",
    "Pss",
    "Shared_Clean",
    "Shared_Dirty",
    "Private_Clean",
    "Private_Dirty",
    "Swap",
)


def parse_smaps_rollup(text: str, taken_at: float) -> MemorySample:
    """Parse the text of ``/proc/PID/smaps_rollup`` (values in kB) into a sample in bytes.

    Empty text is what a zombie's file reads as: the process is gone.
    """
    kib = _rollup_kib(text)
    missing = [name for name in _ROLLUP_FIELDS if name not in kib]
    if missing:
        if not kib:
            raise ProcessGone("smaps_rollup is empty (process exited)")
        raise ProcFormatError(f"smaps_rollup lacks {', '.join(missing)}")
    return MemorySample(
        rss=kib["Rss"] * 1024,
        pss=kib["Pss"] * 1024,
        uss=(kib["Private_Clean"] + kib["Private_Dirty"]) * 1024,
        shared=(kib["Shared_Clean"] + kib["Shared_Dirty"]) * 1024,
        shared_dirty=kib["Shared_Dirty"] * 1024,
        swap=kib["Swap"] * 1024,
        taken_at=taken_at,
    )


def _rollup_kib(text: str) -> dict[str, int]:
    """``Name:   123 kB`` lines -> {Name: 123}; the header line (an address range) is skipped."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        name, sep, rest = line.partition(":")
        parts = rest.split()
        if not sep or len(parts) != 2 or parts[1] != "kB":
            continue
        try:
            out[name] = int(parts[0])
        except ValueError as exc:
            raise ProcFormatError(f"smaps_rollup: bad number in {line!r}") from exc
    return out


def read_smaps_rollup(pid: int) -> MemorySample:
    """Read ``/proc/PID/smaps_rollup``. Costs a page-table walk: ~4-5 ms for a 230 MB process."""
    text = _read_proc_text(pid, "smaps_rollup")
    return parse_smaps_rollup(text, time.monotonic())


# --- statm --------------------------------------------------------------------------------------


def parse_statm_rss(text: str, page_size: int = PAGE_SIZE) -> int:
    """Resident bytes from ``/proc/PID/statm`` (``size resident shared text lib data dt``)."""
    fields = text.split()
    if len(fields) < 2:
        raise ProcFormatError(f"statm: expected 7 fields, got {text!r}")
    try:
        size, resident = int(fields[0]), int(fields[1])
    except ValueError as exc:
        raise ProcFormatError(f"statm: bad number in {text!r}") from exc
    if size == 0:  # a zombie (or kernel thread) has no address space
        raise ProcessGone("statm is all zeros (process exited)")
    return resident * page_size


def read_statm_rss(pid: int) -> int:
    """Resident set size in bytes, from ``/proc/PID/statm`` (~10 µs)."""
    return parse_statm_rss(_read_proc_text(pid, "statm"))


# --- maps and pagemap ---------------------------------------------------------------------------


def parse_anonymous_ranges(text: str) -> list[AddressRange]:
    """Private, writable, anonymous mappings (``[heap]`` and unnamed) from ``/proc/PID/maps``.

    This is where CPython's object allocator (arenas: mmap) and malloc (brk heap, mmap) put the
    heap. The stack, ``[vvar]``/``[vdso]`` and file mappings are left out.
    """
    ranges: list[AddressRange] = []
    for line in text.splitlines():
        fields = line.split(maxsplit=5)
        if len(fields) < 5:
            continue
        name = fields[5].strip() if len(fields) == 6 else ""
        perms = fields[1]
        if perms[:2] != "rw" or perms[3] != "p" or name not in ("", "[heap]"):
            continue
        start, _, end = fields[0].partition("-")
        ranges.append(AddressRange(int(start, 16), int(end, 16)))
    return ranges


def anonymous_ranges(pid: int) -> list[AddressRange]:
    """The heap ranges of a process. Take the parent's just before forking and pass them to
    ``pagemap_cow`` so that mappings a worker creates later are not counted as copies."""
    return parse_anonymous_ranges(_read_proc_text(pid, "maps"))


def count_pagemap_entries(data: bytes) -> CowCounts:
    """Classify little-endian 64-bit pagemap entries without a per-page Python loop.

    Bits 56-63 of each entry are its last byte: bit 63 present (0x80), bit 62 swapped (0x40),
    bit 56 exclusively mapped (0x01). ``data[7::8]`` gathers those bytes in C and
    ``bytes.translate`` maps each to a class letter that ``bytes.count`` then counts.
    """
    flags = data[7::8]
    classes = flags.translate(_FLAG_CLASSES)
    return CowCounts(
        shared_pages=classes.count(b"S"),
        exclusive_pages=classes.count(b"E"),
        swapped_pages=classes.count(b"W"),
        page_size=PAGE_SIZE,
    )


def _flag_class(byte: int) -> int:
    if byte & 0x80:
        return ord("E") if byte & 0x01 else ord("S")
    return ord("W") if byte & 0x40 else ord(".")


_FLAG_CLASSES = bytes(_flag_class(b) for b in range(256))


def pagemap_cow(pid: int, ranges: Sequence[AddressRange] | None = None) -> CowCounts:
    """Count shared vs exclusive present pages of ``ranges`` (default: the process's current
    anonymous ranges) in ``/proc/PID/pagemap``. Reads 512 KiB per system call: ~10 ms for a
    220 MB worker. Works unprivileged for a process of the same user (PFNs read as zero)."""
    if ranges is None:
        ranges = anonymous_ranges(pid)
    try:
        fd = os.open(f"/proc/{pid}/pagemap", os.O_RDONLY)
    except (FileNotFoundError, ProcessLookupError) as exc:
        raise ProcessGone(f"process {pid} is gone") from exc
    except OSError as exc:
        raise _unavailable(pid, "pagemap", exc) from exc
    try:
        return _count_ranges(fd, ranges)
    finally:
        os.close(fd)


def _count_ranges(fd: int, ranges: Iterable[AddressRange]) -> CowCounts:
    total = CowCounts(0, 0, 0, PAGE_SIZE)
    for rng in ranges:
        first, last = rng.start // PAGE_SIZE, rng.end // PAGE_SIZE
        for page in range(first, last, _PAGEMAP_CHUNK_PAGES):
            count = min(_PAGEMAP_CHUNK_PAGES, last - page)
            data = _pread_pagemap(fd, page, count)
            total = total + count_pagemap_entries(data)
    return total


def _pread_pagemap(fd: int, page: int, count: int) -> bytes:
    try:
        return os.pread(fd, count * _PAGEMAP_ENTRY, page * _PAGEMAP_ENTRY)
    except ProcessLookupError as exc:  # ESRCH: the process exited between open and read
        raise ProcessGone("process exited while its pagemap was read") from exc
    except OSError as exc:
        raise _unavailable(0, "pagemap", exc) from exc


# --- common -------------------------------------------------------------------------------------


_outage = False  # a SampleUnavailable was logged and no read has worked since


def _read_proc_text(pid: int, name: str) -> str:
    global _outage
    try:
        with open(f"/proc/{pid}/{name}", encoding="utf-8", errors="replace") as f:
            text = f.read()
    except (FileNotFoundError, ProcessLookupError) as exc:
        raise ProcessGone(f"process {pid} is gone") from exc
    except OSError as exc:
        raise _unavailable(pid, name, exc) from exc
    _outage = False
    return text


def _unavailable(pid: int, name: str, exc: OSError) -> SampleUnavailable:
    """The error to raise for an unreadable /proc file; logs the first of an outage."""
    global _outage
    if not _outage:
        _outage = True
        log.warning(
            "cannot read /proc/%s/%s (%s): no memory sample until reads work again (logged once)",
            pid or "PID",
            name,
            exc,
        )
    return SampleUnavailable(f"/proc/{pid}/{name}: {exc}")
