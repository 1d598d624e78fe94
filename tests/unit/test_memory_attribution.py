"""Copy-on-write attribution: page runs from pagemap bytes, object extents, crediting and
aggregation, the heap walk's reach, and the pure parts of ``corral cow``."""

from __future__ import annotations

import gc
import json
import os
import struct
import sys
import types
from pathlib import Path
from typing import Any

import pytest

from corral.memory import attribution, cowcli
from corral.memory.attribution import (
    Aggregate,
    CopiedPages,
    attribute_objects,
    copied_page_runs,
    iter_heap_objects,
    module_key,
    object_extent,
    title_generation,
    type_key,
    write_report,
)
from corral.memory.proc import PAGE_SIZE

PRESENT, SWAPPED, EXCLUSIVE = 1 << 63, 1 << 62, 1 << 56


def entries(*values: int) -> bytes:
    return struct.pack(f"<{len(values)}Q", *values)


# --- page runs ----------------------------------------------------------------------------------


def test_runs_keep_only_present_exclusive_pages() -> None:
    copied = PRESENT | EXCLUSIVE | 0x1234  # a PFN in the low bits changes nothing
    data = entries(copied, copied, PRESENT, 0, SWAPPED | EXCLUSIVE, copied, PRESENT, copied)
    assert list(copied_page_runs(data, 100)) == [(100, 102), (105, 106), (107, 108)]


def test_runs_of_nothing_copied() -> None:
    assert list(copied_page_runs(entries(PRESENT, 0, SWAPPED), 7)) == []
    assert list(copied_page_runs(b"", 0)) == []


def copied_set(*pages: int, page_size: int = 4096) -> CopiedPages:
    cp = CopiedPages(page_size=page_size)
    for page in pages:
        cp.add_run(page, page + 1)
    return cp


def test_overlap_within_and_across_pages() -> None:
    cp = copied_set(2, 4)
    assert cp.bytes == 2 * 4096
    assert cp.overlap(2 * 4096 + 100, 64) == 64  # inside a copied page
    assert cp.overlap(1 * 4096 + 100, 64) == 0  # inside a shared page
    assert cp.overlap(3 * 4096 - 16, 48) == 16  # 16 at the end of copied page 2, 32 on page 3
    assert cp.overlap(2 * 4096 - 16, 48) == 32  # 16 on shared page 1, 32 on copied page 2
    assert cp.overlap(2 * 4096, 3 * 4096) == 2 * 4096  # pages 2, 3 (shared) and 4


# --- extents and keys ---------------------------------------------------------------------------


class Fixed:
    def __init__(self) -> None:
        self.a = 1


class LiesAboutSize:
    def __sizeof__(self) -> int:
        raise AssertionError("a Python-level __sizeof__ must never run")


def test_extent_is_inline_size() -> None:
    s = "x" * 100
    assert object_extent(s) == (id(s), sys.getsizeof(s))  # str is not GC-tracked: no header
    t = (1, 2, 3)
    assert object_extent(t)[1] == tuple.__basicsize__ + 3 * tuple.__itemsize__
    obj = Fixed()
    assert object_extent(obj) == (id(obj), Fixed.__basicsize__)
    assert object_extent(LiesAboutSize())[1] == LiesAboutSize.__basicsize__
    big = 10**5000
    assert object_extent(big)[1] == int.__sizeof__(big)


def test_extent_of_odd_var_sized_objects_is_sane() -> None:
    def gen() -> Any:
        yield 1

    g = gen()
    assert 0 < object_extent(g)[1] < 1 << 20  # ob_size of a generator is not a length


def sample_function() -> int:
    return 1


def test_type_and_module_keys() -> None:
    files = {sample_function.__code__.co_filename: "tests.sample"}
    assert type_key(dict) == "dict"
    assert type_key(Fixed) == f"{__name__}.Fixed"
    assert module_key(sample_function, files) == __name__
    assert module_key(Fixed, files) == __name__
    assert module_key(Fixed(), files) == __name__
    assert module_key(sys, files) == "sys"
    assert module_key(sample_function.__code__, files) == "tests.sample"
    assert module_key({}, files) == "builtins"


# --- crediting and aggregation ------------------------------------------------------------------


def pages_of(*objs: object) -> CopiedPages:
    cp = CopiedPages()
    for obj in objs:
        addr, size = object_extent(obj)
        cp.add_run(addr // PAGE_SIZE, (addr + size - 1) // PAGE_SIZE + 1)
    return cp


def test_objects_on_copied_pages_are_credited_once() -> None:
    hot, cold = Fixed(), "cold string " * 10
    cp = pages_of(hot)
    agg = attribute_objects([hot, cold, hot], cp)
    assert agg.objects_seen == 3
    assert agg.by_type[type_key(Fixed)] == [Fixed.__basicsize__, 1]  # met twice, counted once
    assert agg.by_module[__name__] == [Fixed.__basicsize__, 1]
    on_copied = cp.overlap(*object_extent(cold))  # the allocator may have put it on hot's page
    assert agg.by_type.get("str") == ([on_copied, 1] if on_copied else None)
    assert agg.bytes_attributed == Fixed.__basicsize__ + on_copied


def test_large_object_with_only_a_middle_page_copied() -> None:
    big = "y" * (8 * PAGE_SIZE)
    addr = object_extent(big)[0]
    middle = addr // PAGE_SIZE + 3
    agg = attribute_objects([big], copied_set(middle, page_size=PAGE_SIZE))
    assert agg.by_type["str"] == [PAGE_SIZE, 1]


def test_aggregate_top_orders_by_bytes_then_name() -> None:
    agg = Aggregate()
    for tkey, mkey, nbytes in (("a", "m1", 10), ("b", "m2", 30), ("a", "m2", 25), ("c", "m1", 35)):
        agg.add(tkey, mkey, nbytes)
    assert Aggregate.top(agg.by_type, 2) == [
        {"name": "a", "bytes": 35, "objects": 2},
        {"name": "c", "bytes": 35, "objects": 1},
    ]
    assert agg.bytes_attributed == 100 and agg.objects_on_copied == 4


# --- the heap walk ------------------------------------------------------------------------------


def test_walk_reaches_frozen_and_untracked_objects() -> None:
    key = "planted-key-" + str(os.getpid())  # built at run time: not a code constant
    leaf = "planted-leaf-" + str(os.getpid())
    holder = types.SimpleNamespace(table={key: 1}, data=[(leaf, 2)])
    assert not gc.is_tracked(leaf)
    already = gc.get_freeze_count()
    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        ticks: list[int] = []
        ids = {id(o) for o in iter_heap_objects(lambda: ticks.append(1))}
        assert ticks  # the worker's heartbeat is called during the walk
        assert gc.get_freeze_count() >= frozen  # re-frozen (with what was made since)
        assert {id(holder), id(holder.table), id(key), id(leaf)} <= ids
    finally:
        if not already:
            gc.unfreeze()


# --- process titles and the report file ---------------------------------------------------------


def test_title_generation() -> None:
    assert title_generation("corral zygote [app:main] gen 3", "zygote") == 3
    assert title_generation("corral worker 7 [app:main] gen 12", "worker") == 12
    assert title_generation("corral worker 7 [app:main] gen 12", "zygote") is None
    assert title_generation("python -m corral serve", "worker") is None


def test_report_is_written_whole(tmp_path: Path) -> None:
    path = tmp_path / "corral-cow-1.json"
    write_report({"pid": 1, "types": []}, path)
    write_report({"pid": 2, "types": []}, path)
    assert json.loads(path.read_text()) == {"pid": 2, "types": []}
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left


def test_report_path_names_the_pid() -> None:
    assert attribution.report_path(4242).name == "corral-cow-4242.json"


# --- corral cow, pure parts ---------------------------------------------------------------------


def test_split_address() -> None:
    assert cowcli.split_address("127.0.0.1:9100") == ("127.0.0.1", 9100)
    assert cowcli.split_address("http://[::1]:9100/stats") == ("::1", 9100)
    with pytest.raises(cowcli.CowError):
        cowcli.split_address("localhost")


WORKERS = [
    {"pid": 5001, "id": 1, "generation": 1, "state": "ready"},
    {"pid": 5002, "id": 2, "generation": 1, "state": "booting"},
]


def test_pick_worker_by_pid_then_id() -> None:
    assert cowcli.pick_worker(WORKERS, "5002")["id"] == 2
    assert cowcli.pick_worker(WORKERS, "1")["pid"] == 5001
    with pytest.raises(cowcli.CowError, match="no worker"):
        cowcli.pick_worker(WORKERS, "3")
    with pytest.raises(cowcli.CowError, match="pid or id"):
        cowcli.pick_worker(WORKERS, "first")


def test_booting_worker_is_not_signalled() -> None:
    with pytest.raises(cowcli.CowError, match="booting"):
        cowcli.request_report(WORKERS[1], timeout=1.0)


def test_wait_report_reads_the_file_and_the_error(tmp_path: Path) -> None:
    path = tmp_path / "report.json"
    path.write_text(json.dumps({"pid": os.getpid(), "types": []}))
    assert cowcli._wait_report(os.getpid(), path, 1.0)["pid"] == os.getpid()
    assert not path.exists()  # read once, then removed
    path.write_text(json.dumps({"pid": os.getpid(), "error": "boom"}))
    with pytest.raises(cowcli.CowError, match="boom"):
        cowcli._wait_report(os.getpid(), path, 1.0)


def test_worker_cow_figures() -> None:
    row = cowcli.WorkerCow(
        10, 1, 2, 9, shared_pages=768, copied_pages=256, page_size=4096, took_ms=3.0
    )
    d = row.as_dict()
    assert (d["shared_mib"], d["copied_mib"], d["shared_pct"]) == (3.0, 1.0, 75.0)
    gone = cowcli.WorkerCow(10, 1, 1, None, None, None, page_size=4096, took_ms=1.0).as_dict()
    assert (gone["zygote"], gone["copied_mib"], gone["shared_pct"]) == (None, None, None)


def test_vanished_worker_is_a_one_line_error() -> None:
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)  # reaped: the pid names no process now
    with pytest.raises(cowcli.CowError, match=f"worker {pid}"):
        cowcli.worker_cow({"pid": pid, "id": 1, "generation": 1})


def test_bad_arguments_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert cowcli.main(["127.0.0.1:1", "--top", "-1"]) == 2
    assert cowcli.main([]) == 2
    assert "corral cow" in capsys.readouterr().err
