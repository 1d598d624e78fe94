"""``corral chaos --fleet`` end to end: three corral hosts chaos starts on 127.0.0.2-4, a real
balancer in front, the drills as phases, and the per-phase verdict checked against the
balancer's own counters, read by chaos and again by the test: HAProxy (config written here,
its listener inherited as ``fd@3`` so no port is guessed; the stats socket) and nginx
(docs/fleet.md's config through test_fleet.py's ``Nginx``; its access log)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from test_fleet import NGINX, Nginx, _free_port, _need

from corral.chaos.balancer import parse_show_stat, read_show_stat
from corral.launch import Launched, spawn

pytestmark = pytest.mark.slow
RUN_TIMEOUT_S = 90  # the session is bounded by --max-time-s 60; this is the test's own bound
HAPROXY = "/usr/sbin/haproxy"

# retry-on conn-failure only: a stopped host's requests time out (504) instead of being
# replayed elsewhere, so the stop-host phase has failures to attribute and count
HAPROXY_CFG = """\
global
    stats socket {sock} mode 600 level user
    maxconn 2000
defaults
    mode http
    timeout connect 1s
    timeout client 10s
    timeout server 1s
    retries 3
    option redispatch
    retry-on conn-failure
frontend fe
    bind fd@{fd}
    http-after-response set-header X-Upstream %s
    default_backend be
backend be
    balance roundrobin
    option httpchk GET /
    http-reuse safe
    default-server inter 200ms fall 2 rise 1
{servers}
"""


def haproxy_binary() -> str:
    found = shutil.which("haproxy") or (HAPROXY if os.path.exists(HAPROXY) else None)
    if found is None:
        if os.environ.get("CI"):
            raise AssertionError("haproxy is needed (scripts/install-system-deps installs it)")
        pytest.skip("haproxy is not installed")
    return found


def wait_file(path: Path, proc: subprocess.Popen[bytes], timeout_s: float) -> str:
    """The hosts file chaos writes once its hosts are ready (bounded; chaos may die first)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().endswith("\n"):
            return path.read_text()
        assert proc.poll() is None, f"chaos exited with {proc.returncode} before its hosts"
        time.sleep(0.05)
    raise AssertionError(f"no hosts file in {timeout_s} s")


def start_haproxy(tmp: Path, hosts: list[str], listener: socket.socket) -> Launched:
    servers = "\n".join(f"    server h{i} {addr} check" for i, addr in enumerate(hosts, 1))
    cfg = tmp / "haproxy.cfg"
    fd = listener.fileno()
    cfg.write_text(HAPROXY_CFG.format(sock=tmp / "haproxy.sock", fd=fd, servers=servers))
    check = subprocess.run(
        [haproxy_binary(), "-c", "-f", str(cfg)], capture_output=True, pass_fds=(fd,)
    )
    assert check.returncode == 0, (check.stdout + check.stderr).decode(errors="replace")
    argv = [haproxy_binary(), "-db", "-f", str(cfg)]
    return spawn(argv, log_path=tmp / "haproxy.log", ready_pipe=False, pass_fds=(fd,))


def test_fleet_drills_give_a_per_phase_verdict_that_agrees_with_haproxy(tmp_path: Path) -> None:
    haproxy_binary()
    listener = socket.create_server(("127.0.0.1", 0), backlog=512)
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/"
    sock, hosts_file = tmp_path / "haproxy.sock", tmp_path / "hosts"
    argv = [
        sys.executable, "-m", "corral", "chaos", "--fleet", "--balancer", url,
        "--start-hosts", "3", "-w", "1", "--hosts-file", str(hosts_file),
        "--haproxy-stats", str(sock), "--haproxy-backend", "be",
        "--scenario", "roll-restart", "--scenario", "roll-hup", "--scenario", "kill-host",
        "--scenario", "stop-host:2", "--phase-s", "3", "--host-gap-s", "0.5", "-c", "4",
        "--max-time-s", "60", "--sla", "p99<1500ms,errors<5%", "--json",
        "--plot", str(tmp_path / "fleet.html"), "-q",
    ]  # fmt: skip
    out, err = tmp_path / "report.json", tmp_path / "chaos.err"
    with open(out, "wb") as fo, open(err, "wb") as fe:
        chaos = subprocess.Popen(argv, stdout=fo, stderr=fe, start_new_session=True)
    haproxy: Launched | None = None
    try:
        hosts = wait_file(hosts_file, chaos, 30.0).split()
        assert [h.rsplit(":", 1)[0] for h in hosts] == ["127.0.0.2", "127.0.0.3", "127.0.0.4"]
        haproxy = start_haproxy(tmp_path, hosts, listener)
        chaos.wait(RUN_TIMEOUT_S)
        lb_totals = parse_show_stat(read_show_stat(str(sock)), None, "be")
    finally:
        if chaos.poll() is None:
            os.killpg(chaos.pid, 9)
            chaos.wait(5)
        if haproxy is not None:
            haproxy.stop(5.0)
        listener.close()
    report: dict[str, Any] = json.loads(out.read_text() or "{}")
    detail = json.dumps(report, indent=1) + err.read_text()
    check_report(report, lb_totals.errors, detail)
    assert (tmp_path / "fleet.html").read_text().count("<tr>") == 1 + len(report["phases"])


def check_report(report: dict[str, Any], lb_errors_seen_by_test: int, detail: str) -> None:
    phases = {p["scenario"].split(":")[0]: p for p in report["phases"]}
    assert list(phases) == ["baseline", "roll-restart", "roll-hup", "kill-host", "stop-host"]
    for p in phases.values():
        assert p["sla"], detail  # a verdict per phase: p99 and error rate
        assert 0 <= p["availability_percent"] <= 100
        lb = p["balancer"]
        assert lb is not None and lb["requests"] > 0, detail
        # the stated tolerance: 2 errors (one in flight across each boundary snapshot)
        assert abs(p["error_total"] - lb["errors"]) <= max(2, 0.02 * p["error_total"]), detail
        # every failed request charged to a host of its phase
        assert sum(p["charged_to"].values()) >= p["error_total"], detail
    assert phases["roll-restart"]["hosts_signalled"] == report["hosts"]
    assert phases["roll-hup"]["error_total"] == 0, detail
    stop = phases["stop-host"]
    assert stop["error_total"] >= 1, detail  # a stopped host costs timeouts: a real signal
    assert set(stop["charged_to"]) <= set(stop["hosts_signalled"]), detail
    totals, lb_totals = report["totals"], report["balancer_totals"]
    assert abs(totals["error_total"] - lb_totals["errors"]) <= 2, detail
    # the test's own read of the socket, after chaos ended, saw at least what chaos reported
    assert lb_errors_seen_by_test >= lb_totals["errors"] - 2, detail
    assert all(c["ok"] for c in report["agreement"]), detail


@dataclass
class _Upstream:
    addr: str
    port: int


def test_fleet_verdict_agrees_with_nginx_access_log(tmp_path: Path) -> None:
    """The same with nginx (docs/fleet.md's config, test_fleet.py's Nginx): POSTs of 2 KiB to
    the 20 ms fleet app, a rolling restart (nothing lost) and a SIGKILLed host (its in-flight
    POSTs answered 502: nginx does not replay a request it sent), the per-phase figures
    checked against nginx's own log, split by its timestamps, and read again here.

    ``--host-gap-s 5.5``: nginx has no health check to say a restarted host is back, and a
    host's refused connects mark it failed for ``fail_timeout`` (5 s): a rolling restart
    faster than that leaves nginx with every host marked failed, answering 502 ("no live
    upstreams") at once — what an earlier version of this test, with a 0.5 s gap, measured."""
    _need(NGINX)
    port = _free_port("127.0.0.1")
    hosts_file, access_log = tmp_path / "hosts", tmp_path / "nginx" / "corral.log"
    argv = [
        sys.executable, "-m", "corral", "chaos", "--fleet",
        "--balancer", f"http://127.0.0.1:{port}/", "--path", "/work", "--post-kib", "2",
        "--start-hosts", "3", "-w", "1", "--app", "fleetapp:app", "--hosts-file", str(hosts_file),
        "--serve-arg=--health-path", "--serve-arg=/healthz",
        "--serve-arg=--drain-idle-s", "--serve-arg=2",
        "--nginx-log", str(access_log),
        "--scenario", "roll-restart", "--scenario", "kill-host",
        "--phase-s", "3", "--host-gap-s", "5.5", "-c", "4",
        "--max-time-s", "80", "--sla", "p99<3000ms,errors<5%", "--json", "-q",
    ]  # fmt: skip
    out, err = tmp_path / "report.json", tmp_path / "chaos.err"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent / "apps")}
    with open(out, "wb") as fo, open(err, "wb") as fe:
        chaos = subprocess.Popen(argv, stdout=fo, stderr=fe, start_new_session=True, env=env)
    nginx: Nginx | None = None
    try:
        hosts = wait_file(hosts_file, chaos, 30.0).split()
        ups = [_Upstream(h.rsplit(":", 1)[0], int(h.rsplit(":", 1)[1])) for h in hosts]
        nginx = Nginx(tmp_path, ups, port=port)
        chaos.wait(RUN_TIMEOUT_S + 20)  # --max-time-s 80 here
    finally:
        if chaos.poll() is None:
            os.killpg(chaos.pid, 9)
            chaos.wait(5)
        if nginx is not None:
            nginx.stop()
    report: dict[str, Any] = json.loads(out.read_text() or "{}")
    detail = json.dumps(report, indent=1) + err.read_text()
    assert report.get("balancer_kind") == "nginx", detail
    phases = {p["scenario"]: p for p in report["phases"]}
    assert list(phases) == ["baseline", "roll-restart", "kill-host"], detail
    for p in phases.values():
        assert p["sla"] and p["balancer"] is not None and p["balancer"]["requests"] > 0, detail
        assert abs(p["error_total"] - p["balancer"]["errors"]) <= 2, detail
        assert sum(p["charged_to"].values()) >= p["error_total"], detail
    # Not 0: a fresh-clone CI run (2026-12-05) saw one 502 of 2,106 when the last host restarted:
    # nginx reused an idle upstream connection as the draining host closed it, and nginx does not
    # replay a POST. The race is open (issue 13); at most one such request per restart here.
    assert phases["roll-restart"]["error_total"] <= 1, detail
    kill = phases["kill-host"]
    assert kill["error_total"] <= 4, detail  # its in-flight requests, at most -c
    assert set(kill["charged_to"]) <= set(kill["hosts_signalled"]), detail
    assert all(c["ok"] for c in report["agreement"]), detail
    # the log read here: every error line of the run is in chaos's total (none came before),
    # but for the 499s of the requests the load abandoned as it stopped (at most -c, logged
    # once nginx noticed, possibly after chaos read the log)
    statuses = [int(line.split()[1]) for line in access_log.read_text().splitlines()]
    errors = sum(s >= 400 and s != 499 for s in statuses)
    assert errors == report["balancer_totals"]["errors"], detail
    assert statuses.count(499) <= 4, detail
