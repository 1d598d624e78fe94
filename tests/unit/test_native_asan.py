"""The native head parser under AddressSanitizer and UndefinedBehaviorSanitizer.

``_nativehead.c`` and the vendored llhttp are compiled again with ``-fsanitize=address,undefined``
into a temporary directory, and a subprocess (``libasan`` preloaded, since the interpreter itself
is not instrumented) feeds that build every corpus head and then seeded random mutations of them
(bytes flipped, inserted, deleted, spans cut, any ``method_len``), bounded in count and in time
(~20 s), checking each answer against the Python parser. Any out-of-bounds access, use after free
or undefined behaviour aborts the subprocess, and the test fails with the sanitizer's report.

Needs gcc with libasan/libubsan and Python's headers: ``scripts/install-system-deps`` installs
gcc and python3-dev, so under CI a missing toolchain is a failure; elsewhere the test skips.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HTTP = ROOT / "src" / "corral" / "http"
SOURCES = [HTTP / "_nativehead.c", *sorted((HTTP / "vendor" / "llhttp" / "src").glob("*.c"))]
FLAGS = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-fno-omit-frame-pointer"]
BUDGET_S = 20
MUTANTS = 200_000  # the count bound; the time bound usually ends the run first

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

_CHECK = r"""
import random, sys, time
sys.path.insert(0, sys.argv[1])
import _nativehead as sanitized
from corral.http import ProtocolError
from corral.http.headfields import SPECIAL, PythonHead
from tests.corpus import load_cases

sanitized.set_special(SPECIAL)
budget, limit = float(sys.argv[2]), int(sys.argv[3])

def reference(head, method_len):
    try:
        return PythonHead().fields(head, head[:method_len])
    except ProtocolError as exc:
        return exc.reason

def check(head, method_len):
    got = sanitized.split(head, method_len)
    want = reference(head, method_len)
    if isinstance(got, str):
        got = "malformed request head: " + got
    if got != want:
        sys.exit(f"disagree on {head!r} ({method_len}): {got!r} != {want!r}")

heads = [case.raw for case in load_cases()]
for raw in heads:
    end = raw.find(b"\r\n\r\n")
    head = raw[: end + 4] if end >= 0 else raw
    check(head, max(0, head.find(b" ")))
rng = random.Random(20261204)
deadline = time.monotonic() + budget
n = 0
while n < limit and time.monotonic() < deadline:
    raw = bytearray(rng.choice(heads)[:4096])
    for _ in range(rng.randint(1, 4)):
        at = rng.randrange(len(raw) + 1)
        op = rng.randrange(4)
        if op == 0:
            raw[at:at] = bytes([rng.choice(b"\r\n :\t\x00\x7f\xff_A")])
        elif op == 1 and at < len(raw):
            raw[at] ^= 1 << rng.randrange(8)
        elif op == 2:
            del raw[at : at + rng.randint(1, 16)]
        else:
            raw[at:at] = raw[rng.randrange(len(raw) + 1) :][: rng.randint(1, 32)]
    data = bytes(raw)
    check(data, rng.randint(0, min(len(data), 12)))
    n += 1
print(f"sanitized: {len(heads)} corpus heads, {n} mutants")
"""


def _toolchain() -> tuple[str, Path] | None:
    """gcc and its libasan, when both are there and can build a sanitized object."""
    gcc = shutil.which("gcc")
    include = Path(sysconfig.get_paths()["include"])
    if gcc is None or not (include / "Python.h").exists():
        return None
    found = subprocess.run(
        [gcc, "-print-file-name=libasan.so"], capture_output=True, text=True, timeout=30
    ).stdout.strip()
    libasan = Path(found)
    return (gcc, libasan) if libasan.is_absolute() and libasan.exists() else None


def test_corpus_and_mutations_under_asan_and_ubsan(tmp_path: Path) -> None:
    tools = _toolchain()
    if tools is None:
        if os.environ.get("CI"):
            pytest.fail("gcc with libasan and Python.h missing (run scripts/install-system-deps)")
        pytest.skip("no gcc with libasan and Python.h here")
    gcc, libasan = tools
    include = sysconfig.get_paths()["include"]
    out = tmp_path / f"_nativehead{sysconfig.get_config_var('EXT_SUFFIX')}"
    vendor = HTTP / "vendor" / "llhttp" / "include"
    build = [gcc, "-shared", "-fPIC", "-O1", "-g", *FLAGS, f"-I{include}", f"-I{vendor}",
             *map(str, SOURCES), "-o", str(out)]  # fmt: skip
    done = subprocess.run(build, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    env = dict(os.environ, LD_PRELOAD=str(libasan), PYTHONPATH=str(ROOT))
    # malloc for every object, so that a read past a bytes object hits ASan's redzone instead
    # of the next object in a pymalloc arena; no leak report (CPython keeps what it allocated)
    env["PYTHONMALLOC"] = "malloc"
    env["ASAN_OPTIONS"] = "detect_leaks=0:abort_on_error=1"
    env["UBSAN_OPTIONS"] = "print_stacktrace=1:halt_on_error=1"
    argv = [sys.executable, "-c", _CHECK, str(tmp_path), str(BUDGET_S), str(MUTANTS)]
    run = subprocess.run(argv, capture_output=True, text=True, timeout=BUDGET_S + 60, env=env)
    assert run.returncode == 0, run.stdout + run.stderr[-4000:]
    assert "sanitized:" in run.stdout and "runtime error" not in run.stderr, run.stderr[-4000:]
    mutants = int(run.stdout.split()[-2])
    assert mutants >= 1000, run.stdout  # the run did real work within its budget
