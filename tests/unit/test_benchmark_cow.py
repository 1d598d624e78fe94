"""Unit tests of benchmarks/cow.py's pure parts: wrk parsing, summaries, commands, the report.

The benchmark itself is not part of the suite; its parsing and reporting are, so a broken
benchmark script is caught here. No sockets, no processes.
"""

from __future__ import annotations

import sys
from dataclasses import asdict
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import cow

WRK_OUTPUT = """\
cowbench: thread done
cowbench: thread done
Running 15m test @ http://127.0.0.1:40000/
  2 threads and 8 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    14.21ms    5.00ms  80.00ms   70.00%
  20004 requests in 35.50s, 30.10MB read
  Socket errors: connect 0, read 3, write 0, timeout 1
  Non-2xx or 3xx responses: 2
Requests/sec:    563.49
"""


def test_parse_wrk_reads_totals_and_errors() -> None:
    got = cow.parse_wrk(WRK_OUTPUT)
    assert got["requests"] == 20004
    assert got["seconds"] == pytest.approx(35.5)
    assert got["rps"] == pytest.approx(20004 / 35.5)
    assert got["non_2xx"] == 2
    assert got["socket_errors"] == 4


def test_parse_wrk_units_and_missing_summary() -> None:
    assert cow.parse_wrk("  100 requests in 174.69ms, 1MB read")["seconds"] == pytest.approx(
        0.17469
    )
    assert cow.parse_wrk("  10 requests in 1.50m, 1MB read")["seconds"] == pytest.approx(90.0)
    with pytest.raises(RuntimeError):
        cow.parse_wrk("unable to connect to 127.0.0.1:1 Connection refused")


def test_load_command_splits_requests_over_threads() -> None:
    load = cow.Load(threads=2, connections=8, script=Path("/x.lua"), max_slice_s=60)
    cmd = load.command(1234, "/", 20001)
    assert cmd[-2:] == ["--", "10001"]
    assert "-t2" in cmd and "-c8" in cmd and "http://127.0.0.1:1234/" in cmd


def _proc(role: str, uss: float, shared: float, pss: float) -> cow.ProcMem:
    return cow.ProcMem(1, role, uss + shared, pss, uss, shared, None, None)


def test_summarize_defines_baseline_and_fit() -> None:
    cp = cow.Checkpoint(
        100_000,
        [
            _proc("main", 10.0, 2.0, 11.0),
            _proc("zygote", 5.0, 250.0, 90.0),
            cow.ProcMem(2, "worker", 260.0, 90.0, 10.0, 250.0, 240.0, 10.0),
            cow.ProcMem(3, "worker", 270.0, 100.0, 20.0, 250.0, 230.0, 20.0),
        ],
    )
    s = cow.summarize(cp, "corral-auto")
    assert s["private_mib"] == pytest.approx(15.0)
    assert s["fleet_pss_mib"] == pytest.approx(291.0)
    assert s["baseline_mib"] == pytest.approx(291.0 - 30.0)
    assert s["fit_8gib"] == int((8192 - 261.0) // 15.0)
    assert s["cow_shared_pct"] == pytest.approx(100 * 470 / 500)
    assert s["shared_pct"] == pytest.approx((100 * 250 / 260 + 100 * 250 / 270) / 2)


def test_server_commands_pin_workers_bind_and_preload(tmp_path: Path) -> None:
    app = cow.APPS["monolith"]
    gun = cow.server_command("gunicorn-freeze", tmp_path, app, 5000)
    assert "--preload" in gun and "127.0.0.1:5000" in gun and str(cow.GUNICORN_FREEZE_CONF) in gun
    corral = cow.server_command("corral-instagram", tmp_path, app, 5000)
    assert corral[corral.index("--gc") + 1] == "instagram" and corral[-1] != app.module
    assert "--processes" in cow.server_command("uwsgi", tmp_path, app, 5000)
    with pytest.raises(ValueError):
        cow.server_command("nginx", tmp_path, app, 5000)


def _run(server: str, private: float) -> dict[str, object]:
    procs = [cow.ProcMem(9, "worker", 300.0, 100.0, private, 300.0 - private)]
    wrk = {"requests": 20000.0, "seconds": 40.0}
    run = cow.Run(
        "monolith", "3.12", "3.12.1", server, ["x"], ["wrk"], "t", 1.0,
        [cow.Checkpoint(0, procs), cow.Checkpoint(20000, procs, wrk)],
        "",
    )  # fmt: skip
    return asdict(run)


def test_markdown_reports_ratio_to_gunicorn() -> None:
    text = cow.markdown([_run("corral-auto", 10.0), _run("gunicorn", 100.0)])
    corral_row = next(line for line in text.splitlines() if "| corral-auto |" in line)
    assert "| 0.100 |" in corral_row and "| 500 |" in corral_row
