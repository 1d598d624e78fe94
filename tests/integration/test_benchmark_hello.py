"""benchmarks/hello.py's harness against real processes: the bare loop answers keep-alive
requests and exits cleanly on TERM (so callgrind writes its counts), callgrind's files are
summed, the side-by-side table divides by the right rows, and a whole-server instruction count
of the bare loop under valgrind comes out in a sane range."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import hello
from instructions import callgrind_total, keepalive


def start_bare(port: int) -> subprocess.Popen[bytes]:
    launch = hello.bare(hello.HELLO, port, 2)
    return subprocess.Popen(launch.argv, cwd=launch.cwd, start_new_session=True)


def test_bare_loop_answers_keepalive_and_exits_cleanly_on_term() -> None:
    port = hello.free_port()
    proc = start_bare(port)
    try:
        hello.wait_listening(proc, port, deadline_s=30)
        request = f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()
        keepalive(port, 50, request, timeout_s=10)  # raises unless each is a 200
        assert len(hello.session_pids(proc.pid)) == 3  # the parent and its 2 loops
    finally:
        hello.stop_and_drain(proc)
    assert proc.returncode == 0  # SystemExit, not death by signal: callgrind dumps
    assert hello.session_pids(proc.pid) == []


def test_callgrind_total_sums_every_process_file(tmp_path: Path) -> None:
    (tmp_path / "cg.100").write_text("events: Ir\nsummary: 1000\ntotals: 1000\n")
    (tmp_path / "cg.101").write_text("events: Ir\nsummary: 234\n")
    (tmp_path / "other").write_text("summary: 99999\n")
    assert callgrind_total(str(tmp_path)) == 1234


def result(rps: float, cpu_s: float) -> hello.WrkResult:
    r = hello.WrkResult(rps, 1.0, 2.0, int(rps), {}, 0)
    r.server_cpu_s = cpu_s
    return r


def test_side_by_side_ratios_are_to_corral_and_to_the_better_peer() -> None:
    cells = [
        hello.Cell("corral", 1, [result(1000, 1.0), result(2000, 1.0)]),
        hello.Cell("uwsgi", 1, [result(500, 1.0), result(1000, 1.0)]),
        hello.Cell("granian", 1, [result(800, 1.0), result(500, 1.0)]),
    ]
    text = hello.side_by_side(cells, {"corral": 100_000, "uwsgi": 40_000})
    rows = {line.split(" | ")[0].strip("| "): line for line in text.splitlines()[2:]}
    assert "| 100.0k | 1.00x | 1,500 |" in rows["corral"]
    assert "| 40.0k | 0.40x |" in rows["uwsgi"]
    assert "| n/a |" in rows["granian"]  # not counted
    # corral over the better of uWSGI and granian, round by round: 1000/800, 2000/1000
    assert rows["corral"].split(" | ")[6] == "1.62x"


def test_bare_loop_instructions_per_request_under_callgrind(tmp_path: Path) -> None:
    if shutil.which("valgrind") is None:
        if os.environ.get("CI"):
            pytest.fail("valgrind is missing")
        pytest.skip("valgrind is not installed")
    per = hello.instructions_per_request("bare", 100, tmp_path / "log", warm=20)
    assert 3_000 < per < 100_000, per  # 15k on CPython 3.13; an EOF or a lost file: NaN
