"""pymalloc report parsing and the since-fork figures (corral.memory.mallocstats)."""

from __future__ import annotations

import os

from corral.memory import mallocstats

SAMPLE = """Small block threshold = 512, in 32 size classes.

class   size   num pools   blocks in use  avail blocks
-----   ----   ---------   -------------  ------------
    0     16           1              29           992
    1     32           2             601           419

# arenas allocated total           =                    2
# arenas reclaimed                 =                    0
# arenas highwater mark            =                    2
# arenas allocated current         =                    2
22 unused pools * 16384 bytes      =              360,448
# bytes in allocated blocks        =            1,408,576
# bytes in available blocks        =              282,832
"""


def test_parse_sums_size_classes_and_reads_counters() -> None:
    got = mallocstats.parse(SAMPLE)
    assert got["pools_used"] == 3
    assert got["blocks_in_use"] == 630
    assert got["blocks_available"] == 1411
    assert got["pools_unused"] == 22
    assert got["arenas_allocated_total"] == 2
    assert got["arenas_current"] == 2
    assert got["bytes_in_use"] == 1408576


def test_derive_counts_holes_filled_and_arenas_since_fork() -> None:
    at_fork = mallocstats.parse(SAMPLE)
    now = {**at_fork, "blocks_available": 400, "pools_unused": 20, "arenas_allocated_total": 5}
    d = mallocstats.derive(at_fork, now)
    assert d["inherited_free_blocks_filled"] == 1011
    assert d["inherited_unused_pools_taken"] == 2
    assert d["arenas_allocated_since_fork"] == 3
    assert d["arenas_freed_since_fork"] == 0


def test_snapshot_of_this_process_restores_stderr() -> None:
    before = os.fstat(2)
    got = mallocstats.snapshot()
    assert got["arenas_current"] >= 1 and got["blocks_in_use"] > 0
    after = os.fstat(2)
    assert (before.st_dev, before.st_ino) == (after.st_dev, after.st_ino)


def test_reporter_keeps_the_first_report_as_at_fork() -> None:
    rep = mallocstats.MallocReporter(0.0)
    try:
        rep.maybe_dump(1.0)
        keep = [object() for _ in range(5000)]
        rep.maybe_dump(2.0)
        doc = mallocstats.read_report(os.getpid())
        assert doc is not None and len(keep) == 5000
        assert doc["now"]["blocks_in_use"] > doc["at_fork"]["blocks_in_use"]
    finally:
        rep.close()
    assert mallocstats.read_report(os.getpid()) is None
