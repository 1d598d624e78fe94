"""The immortal heap on real 3.12/3.13 interpreters: a forked child that reads the whole heap
keeps it shared under ``--gc auto`` and copies much of it under ``--gc freeze``.

Each case runs ``HEAP_SCRIPT`` in a subprocess of the interpreter under test (PYTHONPATH=src): it
builds ~60 MB of dicts, lists, strings, class instances, closures and generated functions,
applies the preset, forks a child that reads everything four times (touching every reference
count) and runs a full collection, then reads the child's smaps_rollup and pagemap while the
parent stays idle. The parent then exits through normal interpreter teardown, which must not
crash with an immortal heap.

A missing interpreter skips, except when ``CI`` is set: then it fails.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.pythons import interpreter

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
INTERPRETERS = {"3.12": interpreter("3.12"), "3.13": interpreter("3.13")}
HEAP_MB = 60
IMMORTAL_REFCNT = 0xFFFFFFFF

HEAP_SCRIPT = r"""# Build a heap, apply a --gc preset, fork a reader, report its private memory.
import gc
import json
import os
import select
import signal
import sys
import time
import traceback

from corral.memory import gcpolicy, proc
from corral.memory.gcpolicy import GcPreset

preset = GcPreset(sys.argv[1])
target_mb = int(sys.argv[2])
rss_before = proc.read_smaps_rollup(os.getpid()).rss
gcpolicy.begin_preload(preset)


class Item:
    def __init__(self, i):
        self.name = "item-%d" % i
        self.values = [i, i * 2, str(i)]
        self.meta = {"id": i, "tag": "t%d" % (i % 1000)}


SRC = "\n".join(
    f"def fn_{i}(x, y=({i}, 'c{i}')):\n    z = x + {i}\n    return [z, y, 'lit{i}']"
    for i in range(3000)
)


def build(target):
    heap = {"items": [], "strings": [], "dicts": [], "funcs": [], "closures": []}
    ns = {}
    exec(compile(SRC, "<generated>", "exec"), ns)
    heap["funcs"] = [v for k, v in ns.items() if k.startswith("fn_")]
    i = 0
    while proc.read_statm_rss(os.getpid()) - rss_before < target:
        for _ in range(20000):
            heap["items"].append(Item(i))
            heap["strings"].append("s" * (i % 50) + str(i))
            heap["dicts"].append({"a": i, "b": [i], "c": (i, str(i))})
            heap["closures"].append((lambda k: (lambda: k))(i))
            i += 1
    return heap


heap = build(target_mb * 1024 * 1024)
report = gcpolicy.finish_preload(preset)
heap_bytes = proc.read_smaps_rollup(os.getpid()).rss - rss_before
ranges = proc.anonymous_ranges(os.getpid())


def touch(heap):
    total = 0
    for it in heap["items"]:
        total += len(it.name) + len(it.values) + it.meta["id"]
    for s in heap["strings"]:
        total += len(s)
    for d in heap["dicts"]:
        for k, v in d.items():
            total += len(k)
    for f in heap["funcs"]:
        total += len(f(1))
    for c in heap["closures"]:
        total += c()
    return total


done_r, done_w = os.pipe()
go_r, go_w = os.pipe()
pid = os.fork()
if pid == 0:
    code = 1
    try:
        gcpolicy.in_worker(preset)
        for _ in range(4):
            touch(heap)
        gc.collect()
        os.write(done_w, b"1")
        select.select([go_r], [], [], 60)
        code = 0
    except BaseException:
        traceback.print_exc()
    finally:
        gcpolicy.fast_exit(code)

ready, _, _ = select.select([done_r], [], [], 120)
if not ready:
    os.kill(pid, signal.SIGKILL)
    sys.exit("child did not finish touching the heap in time")
t = time.perf_counter()
child = proc.read_smaps_rollup(pid)
t_smaps = time.perf_counter() - t
t = time.perf_counter()
cow = proc.pagemap_cow(pid, ranges)
t_pagemap = time.perf_counter() - t
os.write(go_w, b"1")
_, status = os.waitpid(pid, 0)
probe = heap["items"][len(heap["items"]) // 2]
print(json.dumps({
    "python": "%d.%d" % sys.version_info[:2],
    "preset": preset.value,
    "immortal": report.immortal,
    "refused": report.refused,
    "objects_immortalized": report.objects_immortalized,
    "immortalize_s": report.immortalize_s,
    "frozen": report.frozen_objects,
    "probe_refcount": sys.getrefcount(probe),
    "heap_bytes": heap_bytes,
    "child_uss": child.uss,
    "child_shared_dirty": child.shared_dirty,
    "cow_shared_pages": cow.shared_pages,
    "cow_exclusive_pages": cow.exclusive_pages,
    "smaps_s": t_smaps,
    "pagemap_s": t_pagemap,
    "child_status": status,
}))
"""


def require_interpreter(version: str) -> Path:
    path = INTERPRETERS[version]
    if not path.exists():
        message = f"Python {version} not found at {path}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


def run_heap(python: Path | str, preset: str, tmp_path: Path) -> dict[str, Any]:
    script = tmp_path / "heap_script.py"
    script.write_text(HEAP_SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.run(
        [str(python), str(script), preset, str(HEAP_MB)],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["child_status"] == 0
    return result


@pytest.mark.parametrize("version", sorted(INTERPRETERS))
def test_immortal_heap_stays_shared(version: str, tmp_path: Path) -> None:
    python = require_interpreter(version)
    auto = run_heap(python, "auto", tmp_path)
    freeze = run_heap(python, "freeze", tmp_path)
    heap = auto["heap_bytes"]
    assert heap > HEAP_MB * 1024 * 1024 * 0.8

    assert auto["immortal"] and auto["refused"] is None
    assert auto["python"] == version
    assert auto["probe_refcount"] == IMMORTAL_REFCNT
    assert auto["objects_immortalized"] > 300_000
    assert auto["child_uss"] < 0.10 * heap, auto
    assert auto["cow_shared_pages"] > 9 * auto["cow_exclusive_pages"], auto

    assert not freeze["immortal"] and freeze["probe_refcount"] < 100
    assert freeze["child_uss"] > 0.30 * freeze["heap_bytes"], freeze
    assert freeze["child_uss"] > 5 * auto["child_uss"]


def test_auto_falls_back_to_freeze_on_311(tmp_path: Path) -> None:
    python = sys.executable if sys.version_info[:2] == (3, 11) else None
    if python is None:
        pytest.skip("the test interpreter is not 3.11")
    auto = run_heap(python, "auto", tmp_path)
    assert not auto["immortal"]
    assert "3.11" in auto["refused"]
    assert auto["frozen"] > 100_000
    assert auto["child_uss"] > 0.30 * auto["heap_bytes"]
