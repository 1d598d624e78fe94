"""/proc readers: parsers on sample text, readers on live processes, pagemap on a forked child."""

from __future__ import annotations

import ctypes
import logging
import mmap
import os
import resource
import select
import struct
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

from corral.memory.proc import (
    PAGE_SIZE,
    AddressRange,
    CowCounts,
    MemoryProbeError,
    ProcessGone,
    ProcFormatError,
    SampleUnavailable,
    anonymous_ranges,
    count_pagemap_entries,
    pagemap_cow,
    parse_anonymous_ranges,
    parse_smaps_rollup,
    parse_statm_rss,
    read_smaps_rollup,
    read_statm_rss,
)
from corral.memory.recycle import Metric

ROLLUP = """\
55b4ca261000-7ffcdc419000 ---p 00000000 00:00 0                          [rollup]
Rss:              230400 kB
Pss:              120000 kB
Pss_Dirty:        100000 kB
Pss_Anon:         100000 kB
Pss_File:          20000 kB
Pss_Shmem:             0 kB
Shared_Clean:       8000 kB
Shared_Dirty:     190000 kB
Private_Clean:       400 kB
Private_Dirty:     32000 kB
Referenced:       230400 kB
Anonymous:        222000 kB
KSM:                   0 kB
LazyFree:              0 kB
AnonHugePages:         0 kB
Swap:                 12 kB
SwapPss:              12 kB
Locked:                0 kB
"""

MAPS = """\
55e40db29000-55e40db2b000 r--p 00000000 fe:00 260386                     /usr/bin/python3
55e40db35000-55e40db36000 rw-p 0000b000 fe:00 260386                     /usr/bin/python3
55e415275000-55e415296000 rw-p 00000000 00:00 0                          [heap]
7f1facf6e000-7f1facf71000 rw-p 00000000 00:00 0
7f1facf71000-7f1facf72000 rw-s 00000000 00:01 12                         /dev/zero (deleted)
7f1fad146000-7f1fad153000 rw-p 00000000 00:00 0
7f1fad15f000-7f1fad163000 r--p 00000000 00:00 0                          [vvar]
7f1fad165000-7f1fad167000 r-xp 00000000 00:00 0                          [vdso]
7f1fad200000-7f1fad300000 ---p 00000000 00:00 0
7ffcdc3f8000-7ffcdc419000 rw-p 00000000 00:00 0                          [stack]
"""
MAPS += "7f1fad400000-7f1fad401000 rw-p 00000000 00:00 0 \n"  # the kernel pads unnamed lines

KIB = 1024


def test_parse_smaps_rollup() -> None:
    sample = parse_smaps_rollup(ROLLUP, taken_at=12.5)
    assert sample.rss == 230400 * KIB
    assert sample.pss == 120000 * KIB
    assert sample.uss == 32400 * KIB
    assert sample.shared == 198000 * KIB
    assert sample.shared_dirty == 190000 * KIB
    assert sample.swap == 12 * KIB
    assert sample.taken_at == 12.5
    assert sample.value(Metric.USS) == sample.uss
    assert sample.value(Metric.PSS) == sample.pss
    assert sample.value(Metric.RSS) == sample.rss


def test_parse_smaps_rollup_errors() -> None:
    with pytest.raises(ProcessGone):
        parse_smaps_rollup("", taken_at=0.0)  # what a zombie's file reads as
    with pytest.raises(ProcFormatError, match="Private_Dirty"):
        parse_smaps_rollup(ROLLUP.replace("Private_Dirty", "Private_Dirt"), taken_at=0.0)
    with pytest.raises(ProcFormatError):
        parse_smaps_rollup(ROLLUP.replace("32000 kB", "3x000 kB"), taken_at=0.0)


def test_read_smaps_rollup_live() -> None:
    before = read_smaps_rollup(os.getpid())
    # A fresh anonymous mapping, every page written: 16 MiB that were surely not resident before
    # (malloc could reuse freed, still-resident heap memory instead).
    block = mmap.mmap(-1, 16 * 1024 * 1024)
    for offset in range(0, len(block), mmap.PAGESIZE):
        block[offset] = 1
    after = read_smaps_rollup(os.getpid())
    assert after.uss - before.uss >= 15 * 1024 * 1024
    assert after.rss >= after.uss > 0
    assert after.rss >= after.pss >= after.uss
    assert after.taken_at >= before.taken_at
    block.close()


def test_statm() -> None:
    assert parse_statm_rss("765 415 387 5 0 123 0\n", page_size=4096) == 415 * 4096
    with pytest.raises(ProcessGone):
        parse_statm_rss("0 0 0 0 0 0 0\n")
    with pytest.raises(ProcFormatError):
        parse_statm_rss("765\n")
    rss = read_statm_rss(os.getpid())
    smaps = read_smaps_rollup(os.getpid())
    assert abs(rss - smaps.rss) < 0.2 * smaps.rss


def _absent_pid() -> int:
    with open("/proc/sys/kernel/pid_max") as f:
        return int(f.read())  # pids are always below pid_max


def test_vanished_process() -> None:
    pid = _absent_pid()
    with pytest.raises(ProcessGone):
        read_smaps_rollup(pid)
    with pytest.raises(ProcessGone):
        read_statm_rss(pid)
    with pytest.raises(ProcessGone):
        pagemap_cow(pid)


def test_parse_anonymous_ranges() -> None:
    ranges = parse_anonymous_ranges(MAPS)
    assert ranges == [
        AddressRange(0x55E415275000, 0x55E415296000),
        AddressRange(0x7F1FACF6E000, 0x7F1FACF71000),
        AddressRange(0x7F1FAD146000, 0x7F1FAD153000),
        AddressRange(0x7F1FAD400000, 0x7F1FAD401000),
    ]
    assert ranges[1].pages == 3


def _entry(*, present: bool, exclusive: bool = False, swapped: bool = False) -> bytes:
    value = (present << 63) | (swapped << 62) | (exclusive << 56) | 0x1234  # a PFN, ignored
    return struct.pack("<Q", value)


def test_count_pagemap_entries() -> None:
    data = (
        _entry(present=True) * 5
        + _entry(present=True, exclusive=True) * 3
        + _entry(present=False) * 7
        + _entry(present=False, swapped=True) * 2
        + _entry(present=False, exclusive=True)  # not present: exclusive bit means nothing
    )
    counts = count_pagemap_entries(data)
    assert counts == CowCounts(5, 3, 2, PAGE_SIZE)
    assert counts.shared_bytes == 5 * PAGE_SIZE
    assert counts.exclusive_bytes == 3 * PAGE_SIZE
    assert counts.shared_fraction == pytest.approx(5 / 8)
    assert CowCounts(0, 0, 0, PAGE_SIZE).shared_fraction == 1.0


class Child:
    """A forked child that holds ``buf`` and, on command, writes one byte into each of the
    first ``n`` pages of it. Steps are acknowledged through a pipe, with a deadline."""

    def __init__(self, buf: bytearray, n: int) -> None:
        self.cmd_r, self.cmd_w = os.pipe()
        self.ack_r, self.ack_w = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:
            self._run(buf, n)

    def _run(self, buf: bytearray, n: int) -> None:
        try:
            os.write(self.ack_w, b"F")
            self._await(self.cmd_r)
            for page in range(n):
                buf[page * PAGE_SIZE] = 0xAB
            os.write(self.ack_w, b"W")
            self._await(self.cmd_r)
        finally:
            os._exit(0)

    @staticmethod
    def _await(fd: int, timeout: float = 30.0) -> bytes:
        ready, _, _ = select.select([fd], [], [], timeout)
        assert ready, "no message within the deadline"
        return os.read(fd, 1)

    def step(self) -> bytes:
        os.write(self.cmd_w, b"g")
        return self._await(self.ack_r)

    def close(self) -> None:
        try:
            os.write(self.cmd_w, b"g")
        except OSError:
            pass
        os.waitpid(self.pid, 0)
        for fd in (self.cmd_r, self.cmd_w, self.ack_r, self.ack_w):
            os.close(fd)


@contextmanager
def forked_writer(buf: bytearray, n: int) -> Iterator[Child]:
    child = Child(buf, n)
    try:
        assert Child._await(child.ack_r) == b"F"
        yield child
    finally:
        child.close()


def _buffer_range(buf: bytearray) -> AddressRange:
    address = ctypes.addressof((ctypes.c_char * len(buf)).from_buffer(buf))
    start = -(-address // PAGE_SIZE) * PAGE_SIZE
    end = (address + len(buf)) // PAGE_SIZE * PAGE_SIZE
    return AddressRange(start, end)


def test_pagemap_counts_the_pages_a_forked_child_writes() -> None:
    buf = bytearray(b"\x01" * (8 * 1024 * 1024))  # resident in the parent before the fork
    rng = _buffer_range(buf)
    written = 300
    with forked_writer(buf, written) as child:
        before = pagemap_cow(child.pid, [rng])
        assert before.exclusive_pages == 0
        assert before.shared_pages == rng.pages
        whole_before = pagemap_cow(child.pid)  # default: the child's anonymous ranges
        assert child.step() == b"W"
        after = pagemap_cow(child.pid, [rng])
        whole_after = pagemap_cow(child.pid)
    # The first page of the range may hold no written byte when the buffer is not page-aligned.
    assert written - 1 <= after.exclusive_pages <= written
    assert after.shared_pages + after.exclusive_pages == rng.pages
    assert whole_after.exclusive_pages - whole_before.exclusive_pages >= written - 1


def test_anonymous_ranges_live() -> None:
    buf = bytearray(4 * 1024 * 1024)
    address = ctypes.addressof((ctypes.c_char * len(buf)).from_buffer(buf))
    ranges = anonymous_ranges(os.getpid())
    assert any(r.start <= address < r.end for r in ranges)


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def _fill_fds() -> list[int]:
    """Open descriptors until EMFILE (the caller lowered RLIMIT_NOFILE)."""
    fds: list[int] = []
    try:
        while len(fds) < 100_000:
            fds.append(os.open("/dev/null", os.O_RDONLY))
    except OSError:
        pass
    return fds


def _in_child_with_few_fds(body: Callable[[], str]) -> str:
    """Run ``body`` in a forked child whose RLIMIT_NOFILE is lowered; its result, or the
    exception it raised, as text (the test process keeps its own limits)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        os.close(r)
        try:
            _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
            resource.setrlimit(resource.RLIMIT_NOFILE, (64, hard))
            out = body()
        except BaseException as exc:  # report it, never return into pytest
            out = f"child raised {exc!r}"
        os.write(w, out.encode())
        os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        out = f.read().decode()
    os.waitpid(pid, 0)
    return out


def test_emfile_is_no_sample_this_time_logged_once() -> None:
    """issue 16: EMFILE opening smaps_rollup crashed the master (only FileNotFoundError and
    ProcessLookupError were caught). It is a MemoryProbeError now, logged once per outage."""

    def body() -> str:
        handler = _Records()
        records = handler.records
        logging.getLogger("corral.memory").addHandler(handler)
        fds = _fill_fds()
        results = []
        for read in (read_smaps_rollup, read_statm_rss, read_smaps_rollup):
            try:
                read(os.getpid())
                results.append("read")
            except SampleUnavailable:
                results.append("unavailable")
        for fd in fds:
            os.close(fd)
        results.append(type(read_smaps_rollup(os.getpid())).__name__)
        fds = _fill_fds()
        try:
            read_smaps_rollup(os.getpid())
        except MemoryProbeError:
            results.append("unavailable again")
        for fd in fds:
            os.close(fd)
        return f"{results} {len(records)}"

    out = _in_child_with_few_fds(body)
    assert (
        out
        == "['unavailable', 'unavailable', 'unavailable', 'MemorySample', 'unavailable again'] 2"
    )
