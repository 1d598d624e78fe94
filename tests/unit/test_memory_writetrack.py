"""Per-request write tracking, the pure parts: ioctl numbers and struct layouts against bytes
computed by hand from the kernel UAPI headers, the reasons given when the kernel says no,
range intersection, first-write bookkeeping, the per-path table and the loop hook's crediting
(with a stand-in tracker)."""

from __future__ import annotations

import errno
import json
import os
import tempfile
from pathlib import Path
from typing import cast

import pytest

from corral.memory import writetrack
from corral.memory.proc import AddressRange
from corral.memory.writetrack import (
    BETWEEN_REQUESTS,
    OTHER_PATHS,
    PAGEMAP_SCAN,
    UFFDIO_API,
    UFFDIO_REGISTER,
    FirstWrites,
    PathCounts,
    RequestWrites,
    WriteTracker,
    errno_reason,
    features_reason,
    intersect,
    is_present,
    iter_regions,
    pack_pm_scan_arg,
    pack_uffdio_api,
    pack_uffdio_register,
    unpack_uffdio_api,
    unpack_walk_end,
)


def le64(value: int) -> bytes:
    """One little-endian __u64, written out byte by byte."""
    return bytes((value >> (8 * i)) & 0xFF for i in range(8))


# --- ioctl numbers and structs ------------------------------------------------------------------


def test_ioctl_numbers_match_asm_generic_encoding() -> None:
    # _IOWR = (READ|WRITE = 3) << 30 | sizeof << 16 | type << 8 | nr
    assert UFFDIO_API == 0xC018AA3F  # sizeof(struct uffdio_api) = 24 = 0x18, type 0xAA, nr 0x3F
    assert UFFDIO_REGISTER == 0xC020AA00  # sizeof(struct uffdio_register) = 32 = 0x20, nr 0
    assert PAGEMAP_SCAN == 0xC0606610  # sizeof(struct pm_scan_arg) = 96 = 0x60, 'f' = 0x66, 16


def test_uffdio_api_layout() -> None:
    wanted = (1 << 15) | (1 << 13)  # WP_ASYNC | WP_UNPOPULATED
    raw = pack_uffdio_api(wanted)
    assert raw == b"\xaa" + bytes(7) + b"\x00\xa0" + bytes(6) + bytes(8)
    answer = le64(0xAA) + le64(0x1FFFF) + le64(0x8000000000000003)  # what 6.18 answered
    assert unpack_uffdio_api(answer) == (0xAA, 0x1FFFF, 0x8000000000000003)


def test_uffdio_register_layout() -> None:
    raw = pack_uffdio_register(0x7F0000001000, 0x3000)
    assert len(raw) == 32
    assert raw == le64(0x7F0000001000) + le64(0x3000) + le64(2) + le64(0)  # MODE_WP = 1 << 1


def test_pm_scan_arg_layout() -> None:
    raw = pack_pm_scan_arg(0x1000, 0x9000, 0xDEAD000, 512, 1)
    assert len(raw) == 96
    fields = [int.from_bytes(raw[i : i + 8], "little") for i in range(0, 96, 8)]
    assert fields == [
        96,  # size
        1,  # flags: PM_SCAN_WP_MATCHING
        0x1000,  # start
        0x9000,  # end
        0,  # walk_end (kernel output)
        0xDEAD000,  # vec
        512,  # vec_len
        0,  # max_pages
        0,  # category_inverted
        2,  # category_mask: PAGE_IS_WRITTEN
        0,  # category_anyof_mask
        2 | 8,  # return_mask: PAGE_IS_WRITTEN | PAGE_IS_PRESENT
    ]


def test_walk_end_is_the_fifth_field() -> None:
    raw = bytearray(96)
    raw[32:40] = le64(0x7FFF12345000)
    assert unpack_walk_end(raw) == 0x7FFF12345000


def test_page_regions_unpack_and_presence() -> None:
    data = le64(0x1000) + le64(0x4000) + le64(2 | 8) + le64(0x8000) + le64(0x9000) + le64(2)
    data += bytes(24)  # a stale region past ``count`` is ignored
    regions = list(iter_regions(data, 2))
    assert regions == [(0x1000, 0x4000, 10), (0x8000, 0x9000, 2)]
    assert [is_present(c) for _, _, c in regions] == [True, False]
    assert list(iter_regions(data, 0)) == []


# --- reasons ------------------------------------------------------------------------------------


def test_features_reason_names_what_is_missing() -> None:
    assert features_reason(0x1FFFF) is None
    assert features_reason((1 << 15) | (1 << 13)) is None
    missing_async = features_reason(1 << 13)
    assert missing_async is not None and "WP_ASYNC" in missing_async and "6.7" in missing_async
    missing_unpop = features_reason(1 << 15)
    assert missing_unpop is not None and "WP_UNPOPULATED" in missing_unpop


@pytest.mark.parametrize(
    ("err", "words"),
    [
        (errno.ENOSYS, "CONFIG_USERFAULTFD"),
        (errno.EPERM, "seccomp"),
        (errno.EINVAL, "UFFD_USER_MODE_ONLY"),
        (errno.ENOMEM, "ENOMEM"),
    ],
)
def test_errno_reason_is_one_line(err: int, words: str) -> None:
    reason = errno_reason(err)
    assert words in reason and "\n" not in reason


@pytest.fixture
def fresh_probe(monkeypatch: pytest.MonkeyPatch) -> None:
    """Forget the cached probe (and restore it afterwards)."""
    monkeypatch.setattr(writetrack, "_PROBED", [])


def refuse(err: int) -> None:
    raise OSError(err, "refused")


@pytest.mark.usefixtures("fresh_probe")
def test_refused_syscall_gives_a_reason_and_changes_nothing(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(writetrack, "_userfaultfd", lambda flags: refuse(errno.EPERM))
    reason = writetrack.available()
    assert reason is not None and "seccomp" in reason
    with pytest.raises(writetrack.WriteTrackError, match="seccomp"):
        WriteTracker().start([AddressRange(0x1000, 0x2000)])
    assert RequestWrites.start([AddressRange(0x1000, 0x2000)]) is None
    assert "write tracking is off" in caplog.text and "seccomp" in caplog.text


@pytest.mark.usefixtures("fresh_probe")
def test_old_kernel_features_give_a_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    def old_kernel(features: int) -> tuple[int, int]:
        return os.open(os.devnull, os.O_RDONLY), 0x1FFF  # up to WP_HUGETLBFS_SHMEM: Linux 6.1

    monkeypatch.setattr(writetrack, "_open_uffd", old_kernel)
    reason = writetrack.available()
    assert reason is not None and "WP_UNPOPULATED" in reason


# --- ranges and first writes --------------------------------------------------------------------


def test_intersect_keeps_what_both_map() -> None:
    prefork = [AddressRange(0x5000, 0x9000), AddressRange(0x1000, 0x3000)]
    current = [AddressRange(0x2000, 0x6000), AddressRange(0x8000, 0xA000)]
    assert intersect(prefork, current) == [
        AddressRange(0x2000, 0x3000),
        AddressRange(0x5000, 0x6000),
        AddressRange(0x8000, 0x9000),
    ]
    assert intersect(prefork, []) == []


def test_first_writes_counts_each_page_once() -> None:
    ps = 4096
    seen = FirstWrites([AddressRange(20 * ps, 30 * ps), AddressRange(10 * ps, 15 * ps)], ps)
    assert seen.mark(11, 13) == 2
    assert seen.mark(10, 14) == 2  # 11 and 12 were already written
    assert seen.mark(14, 22) == 3  # 14, then 20 and 21: 15-19 are not tracked
    assert seen.mark(0, 5) == 0 and seen.mark(40, 50) == 0
    assert seen.mark(0, 100) == 10 - 2  # the first range is full; 8 left in the second
    assert seen.pages == 5 + 10


def test_first_writes_across_adjacent_ranges() -> None:
    seen = FirstWrites([AddressRange(0, 8192), AddressRange(8192, 16384)], 4096)
    assert seen.mark(1, 3) == 2
    assert seen.mark(0, 4) == 2


# --- per-path table -----------------------------------------------------------------------------


def test_path_counts_records_and_ranks() -> None:
    counts = PathCounts()
    counts.record(b"/a", 10, 4)
    counts.record("/a", 30, 0)
    counts.record(b"/b", 40, 1)
    counts.record(b"/c", 40, 9)
    a = counts.stats["/a"]
    assert (a.requests, a.pages, a.new_pages, a.max_pages) == (2, 40, 4, 30)
    assert [name for name, _ in counts.top(10)] == ["/a", "/b", "/c"]  # ties by name
    assert [name for name, _ in counts.top(2, "new_pages")] == ["/c", "/a"]
    assert counts.total_pages == 120 and counts.total_new_pages == 14
    assert counts.as_json(1) == [
        {"path": "/a", "requests": 2, "pages": 40, "new_pages": 4, "max_pages": 30}
    ]
    with pytest.raises(ValueError):
        counts.top(1, "requests")


def test_path_counts_bound_then_other() -> None:
    counts = PathCounts(max_paths=3)
    for i in range(10):
        counts.record(f"/item/{i}".encode(), 1)
    counts.record(BETWEEN_REQUESTS, 5)  # synthetic names do not use up the bound
    counts.record(b"/item/0", 1)  # a known path still lands on its own row
    assert set(counts.stats) == {"/item/0", "/item/1", "/item/2", OTHER_PATHS, BETWEEN_REQUESTS}
    assert counts.stats[OTHER_PATHS].requests == 7
    assert counts.stats["/item/0"].requests == 2


def test_path_counts_bounds_names() -> None:
    counts = PathCounts()
    counts.record(b"/" + b"x" * 1000, 1)
    counts.record(b"/\xff\xfe", 1)  # not UTF-8: kept visible, never an exception
    assert max(len(name) for name in counts.stats) == 200
    assert "/\\xff\\xfe" in counts.stats
    with pytest.raises(ValueError):
        PathCounts(max_paths=0)


# --- the loop hook, with a stand-in tracker -----------------------------------------------------


class FakeTracker:
    """Answers scans from a script; ``first_written`` follows each answer."""

    def __init__(self, answers: list[tuple[int, int]]) -> None:
        self.answers = answers
        self.scans = 0
        self.first_written = 0
        self.registered_bytes = 1 << 20
        self.dropped_pages = 0
        self.closed = False

    def scan(self) -> int:
        if not self.answers:
            raise OSError(errno.EBADF, "gone")
        pages, self.first_written = self.answers.pop(0)
        self.scans += 1
        return pages

    def close(self) -> None:
        self.closed = True


def hook(answers: list[tuple[int, int]]) -> tuple[RequestWrites, FakeTracker]:
    fake = FakeTracker(answers)
    return RequestWrites(cast(WriteTracker, fake), PathCounts(), "given"), fake


def test_hook_credits_loop_work_and_requests_apart() -> None:
    writes, _ = hook([(3, 0), (120, 100), (2, 0), (7, 1)])
    writes.before_request()
    assert writes.after_request(b"/upload") == 120
    writes.before_request()
    writes.after_request(b"/health")
    report = writes.report()
    rows = {row["path"]: row for row in report["by_pages"]}
    assert rows[BETWEEN_REQUESTS]["pages"] == 5 and rows[BETWEEN_REQUESTS]["requests"] == 2
    assert rows["/upload"]["new_pages"] == 100 and rows["/health"]["pages"] == 7
    assert report["by_new_pages"][0]["path"] == "/upload"
    assert report["total_pages"] == 132 and report["scans"] == 4
    json.dumps(report)  # JSON-ready


def test_hook_turns_itself_off_when_a_scan_fails(caplog: pytest.LogCaptureFixture) -> None:
    writes, fake = hook([(1, 1)])
    writes.after_request(b"/a")
    assert writes.after_request(b"/b") == 0  # the stand-in raises OSError now
    assert writes.failed and fake.closed
    assert writes.after_request(b"/c") == 0 and fake.scans == 1
    assert "turning it off" in caplog.text


def test_hook_dumps_only_when_changed_and_due(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    writes, fake = hook([(4, 4), (5, 0)])
    path = writetrack.report_path(12345)
    assert path.parent == tmp_path
    monkeypatch.setattr(writetrack, "report_path", lambda pid: path)
    writes.maybe_dump(100.0)
    assert not path.exists()  # nothing recorded yet
    writes.after_request(b"/a")
    writes.maybe_dump(100.0)
    assert json.loads(path.read_text())["total_pages"] == 4
    writes.after_request(b"/a")
    writes.maybe_dump(105.0)  # changed, but not due
    assert json.loads(path.read_text())["total_pages"] == 4
    caplog.set_level("INFO", logger="corral.memory")
    writes.close()  # issue 16: the final figures go to the log, the file goes away
    assert not path.exists() and fake.closed
    assert "9 pages written" in caplog.text and "/a " in caplog.text
