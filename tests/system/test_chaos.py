"""``corral chaos`` end to end: real masters, real faults, verdicts checked against the
server's own counters (read by the test itself from /metrics where it can)."""

from __future__ import annotations

import json
import os
import re
import select
import signal
import subprocess
import sys
import time
import urllib.request
from typing import Any

import pytest

from harness import APPS, wait_for, worker_pids

pytestmark = pytest.mark.slow
RUN_TIMEOUT_S = 90


def chaos(*args: str) -> tuple[int, dict[str, Any], str]:
    """Run ``corral chaos --json ARGS``; (exit code, report, stderr)."""
    env = {**os.environ, "PYTHONPATH": str(APPS), "PYTHONDONTWRITEBYTECODE": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "corral", "chaos", "--json", *args],
        capture_output=True,
        env=env,
        timeout=RUN_TIMEOUT_S,
        check=False,
    )
    err = proc.stderr.decode(errors="replace")
    assert proc.stdout, f"no report (rc={proc.returncode}):\n{err}"
    return proc.returncode, json.loads(proc.stdout), err


def phase(report: dict[str, Any], name: str) -> dict[str, Any]:
    return next(p for p in report["phases"] if p["scenario"].split(":")[0] == name)


def test_kill_and_reload_meet_their_bounds_and_a_loose_sla() -> None:
    rc, report, err = chaos(
        "--app", "sysapps:app", "--workers", "2", "--scenario", "kill", "--scenario", "reload",
        "--phase-s", "3", "-c", "8", "--sla", "p99<2s,errors<5%",
    )  # fmt: skip
    assert rc == 0, json.dumps(report, indent=1) + err
    assert [p["scenario"] for p in report["phases"]] == ["baseline", "kill", "reload"]
    kill, reload = phase(report, "kill"), phase(report, "reload")
    assert reload["error_total"] == 0 and reload["ok"]
    assert kill["kills"] == 1
    assert kill["error_total"] <= kill["allowed_errors"] <= 8
    assert all(p["requests"] > 0 for p in report["phases"])
    # the phases partition the run
    assert sum(p["requests"] for p in report["phases"]) == report["totals"]["requests"]
    server = report["server"]
    assert server["restarts"] >= 1 and server["recycles"]["crash"] >= 1
    assert server["recycles"]["reload"] >= 2
    # the server saw every success the client did, but what the killed worker had not yet
    # published (its last <= 5 ms: PUBLISH_AFTER_S), which chaos's cross-check allows for
    assert within_unpublished(report["totals"]["ok_responses"], server["by_status"]["2xx"])
    assert all(c["ok"] for c in report["cross_checks"])
    assert all(c["ok"] for c in report["sla"]) and report["ok"]


def within_unpublished(client_ok: float, server_2xx: float) -> bool:
    """``client_ok <= server_2xx``, but for one killed worker's last batch: at most 0.5% of a
    run of several seconds (a batch is 5 ms of one worker's requests)."""
    return client_ok - server_2xx <= 0.005 * client_ok


def _metric_sum(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_attached_run_misses_an_impossible_sla_and_agrees_with_metrics(
    corral_factory: Any,
) -> None:
    c = corral_factory(
        "sysapps:app", "-b", "127.0.0.1:0", "-w", "2", "--stats", "127.0.0.1:0"
    )  # fmt: skip
    match = re.search(r"stats on http://(\S+?)\)", c.wait_log("stats on"))
    assert match is not None
    stats = match.group(1)
    rc, report, err = chaos(
        "--pid", str(c.pid), "--url", c.url, "--stats", stats, "--scenario", "kill",
        "--phase-s", "2", "-c", "8", "--sla", "p99<0.001ms",
    )  # fmt: skip
    assert rc == 1, json.dumps(report, indent=1) + err
    assert [c["ok"] for c in report["sla"]] == [False]
    assert all(p["ok"] for p in report["phases"])  # the faults were handled; only the SLA missed
    with urllib.request.urlopen(f"http://{stats}/metrics", timeout=5) as resp:
        metrics = resp.read().decode()
    # the server started at zero and nothing else loaded it: its counters bound chaos's view
    # (less the killed worker's unpublished batch)
    assert within_unpublished(
        report["totals"]["ok_responses"],
        _metric_sum(metrics, "corral_requests_total", status="2xx"),
    )
    kills = sum(p["kills"] for p in report["phases"])
    assert kills == 1
    assert _metric_sum(metrics, "corral_worker_restarts_total") >= kills
    assert c.proc.poll() is None  # attached: chaos leaves the server running


def test_hang_and_bloat_on_the_demo_app_are_recovered_by_the_server() -> None:
    rc, report, err = chaos(
        "--app", "", "--workers", "2", "--scenario", "hang", "--scenario", "bloat",
        "--phase-s", "2", "-c", "4", "--worker-timeout-s", "2", "--bloat-limit-mib", "48",
    )  # fmt: skip
    # the demo app's /__bloat hook: a memset, quick enough never to trip --timeout-s itself
    assert rc == 0, json.dumps(report, indent=1) + err
    hang, bloat = phase(report, "hang"), phase(report, "bloat")
    assert {c["name"]: c["ok"] for c in hang["checks"]}["hung worker replaced"]
    assert hang["error_total"] <= hang["allowed_errors"]
    assert {c["name"]: c["ok"] for c in bloat["checks"]}["memory recycle"]
    assert bloat["error_total"] == 0
    assert report["server"]["recycles"]["timeout"] >= 1
    assert report["server"]["recycles"]["memory"] >= 1


def test_scale_and_slowloris_cost_no_requests() -> None:
    rc, report, err = chaos(
        "--app", "sysapps:app", "--workers", "2", "--scenario", "scale",
        "--scenario", "slowloris:16", "--phase-s", "2", "-c", "4", "--sla", "errors<1",
    )  # fmt: skip
    assert rc == 0, json.dumps(report, indent=1) + err
    scale, slow = phase(report, "scale"), phase(report, "slowloris")
    assert [c["ok"] for c in scale["checks"]] == [True, True]
    assert scale["error_total"] == 0 and slow["error_total"] == 0
    assert "16/16 slow connections opened" in slow["notes"][0]
    assert report["server"]["recycles"]["scale-down"] >= 1


def test_bad_sla_is_a_usage_error() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "corral", "chaos", "--app", "sysapps:app", "--sla", "p99<200"],
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 2
    assert b"needs a unit" in proc.stderr


def _first_line(fd: int, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    buf = b""
    while b"\n" not in buf and time.monotonic() < deadline:
        if select.select([fd], [], [], 0.5)[0]:
            chunk = os.read(fd, 1)  # byte by byte: the rest stays in the pipe for later
            if not chunk:
                break
            buf += chunk
    return buf.decode(errors="replace")


def _stopped_worker(master: int) -> bool:
    for pid in worker_pids(master):
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "T":
                    return True
        except OSError:
            continue
    return False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_sigterm_mid_hang_cleans_up_and_exits_130() -> None:
    env = {**os.environ, "PYTHONPATH": str(APPS), "PYTHONDONTWRITEBYTECODE": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "corral", "chaos", "--app", "", "--scenario", "hang",
         "--phase-s", "1", "--worker-timeout-s", "30", "-c", "2"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
    )  # fmt: skip
    try:
        assert proc.stderr is not None
        line = _first_line(proc.stderr.fileno(), timeout=30)  # "chaos: target URL (master PID,"
        match = re.search(r"master (\d+)", line)
        assert match is not None, line
        master = int(match.group(1))
        workers = worker_pids(master)
        wait_for(lambda: _stopped_worker(master), timeout=30)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 130
        assert b"interrupted" in proc.stderr.read()
        assert not _alive(master)
        wait_for(lambda: not any(_alive(p) for p in workers), timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
