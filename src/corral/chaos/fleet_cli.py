"""``corral chaos --fleet`` argv: the balancer URL, the hosts (started here or attached), the
balancer's counters, the load (corral's own or a locustfile), the drills, the outputs; the
hosts' lifetime and the exit code (the same codes as ``corral chaos``).
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import math
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO
from urllib.parse import urlsplit

from corral.bench.config import BenchConfigError, LoadConfig
from corral.bench.locust import LocustError, LocustRun, locust_command
from corral.bench.sla import Objective, SlaError, parse_sla
from corral.chaos.balancer import Balancer, BalancerError
from corral.chaos.cli import (
    EXIT_ERROR,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    _Parser,
    _term_interrupts,
    _Usage,
)
from corral.chaos.fleet import (
    Host,
    HostFleet,
    attach_hosts,
    host_command,
    parse_fleet_scenario,
    parse_host,
    start_hosts,
    stop_hosts,
)
from corral.chaos.fleet_report import fleet_html, fleet_report_dict, render_fleet_text
from corral.chaos.fleet_session import BuiltinLoad, FleetReport, Load, run_fleet_session
from corral.chaos.spec import (
    DEFAULT_CONNECTIONS,
    PROGRESS,
    VERIFY_TIMEOUT_S,
    ChaosError,
    ScenarioSpec,
)

EPILOG = """\
drills (repeatable --scenario; each is one phase after a baseline phase):
  roll-restart   host by host: TERM, wait for exit, start again (hosts chaos started only)
  roll-hup       host by host: HUP, wait until its workers are replaced
  kill-host      SIGKILL one host's master and workers; started hosts come back mid-phase
  stop-host[:s]  SIGSTOP one host's processes for s seconds (default half a phase), SIGCONT
  all            every drill once, in that order
a failed request is charged to its phase and to a host: the balancer's per-server counters
(--haproxy-stats, --nginx-log) or the host the drill signalled.
"""


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="corral chaos --fleet",
        description="Fault drills against a fleet of corral hosts behind a balancer.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--fleet", action="store_true", help="fleet mode (this page)")
    g = p.add_argument_group("the fleet")
    g.add_argument("--balancer", required=True, metavar="URL", help="the balancer's URL")
    g.add_argument("--start-hosts", type=int, metavar="N", help="start N hosts on 127.0.0.2..")
    g.add_argument("--host-port", type=int, default=0, metavar="P", help="their port (0: any)")
    g.add_argument("--app", default="", metavar="MODULE:APP", help="their app ('' = demo)")
    g.add_argument("-w", "--workers", type=int, default=2, metavar="N", help="workers per host")
    g.add_argument("--serve-arg", action="append", default=[], metavar="ARG")
    g.add_argument("--hosts-file", metavar="FILE", help="write the hosts' HOST:PORT here")
    g.add_argument("--host-log-dir", metavar="DIR", help="keep the started hosts' logs here")
    g.add_argument("--host", action="append", default=[], metavar="ADDR=PID", help="attach")
    g.add_argument("--balancer-wait-s", type=float, default=30.0, metavar="S")
    g.add_argument("--host-gap-s", type=float, default=2.0, metavar="S")
    b = p.add_argument_group("the balancer's counters")
    b.add_argument("--haproxy-stats", metavar="SOCKET", help="HAProxy's stats socket")
    b.add_argument("--haproxy-frontend", metavar="NAME")
    b.add_argument("--haproxy-backend", metavar="NAME")
    b.add_argument("--nginx-log", metavar="FILE", help="nginx access log ($msec $status ...)")
    _load_args(p.add_argument_group("load"))
    s = p.add_argument_group("drills and output")
    s.add_argument("--scenario", action="append", default=[], metavar="NAME[:ARG]")
    s.add_argument("--phase-s", type=float, default=5.0, metavar="S")
    s.add_argument("--max-time-s", type=float, metavar="S")
    s.add_argument("--sla", metavar="TERMS")
    s.add_argument("--json", action="store_true")
    s.add_argument("--plot", metavar="FILE", help="write the HTML page here")
    s.add_argument("--quiet", "-q", action="store_true")
    return p


def _load_args(g: argparse._ArgumentGroup) -> None:
    g.add_argument("-c", "--connections", type=int, default=DEFAULT_CONNECTIONS, metavar="N")
    g.add_argument("--rate", type=float, metavar="RPS")
    g.add_argument("--path", default="/")
    g.add_argument("--post-kib", type=float, metavar="K", help="POST a K KiB body instead of GET")
    g.add_argument("--request-timeout-s", type=float, default=10.0, metavar="S")
    g.add_argument("--locustfile", metavar="FILE", help="locust as the load (see docs)")
    g.add_argument("--users", type=int, default=10, metavar="N", help="locust -u")
    g.add_argument("--spawn-rate", type=float, metavar="R", help="locust -r (default: -u)")


def parse_args(
    argv: list[str],
) -> tuple[argparse.Namespace, list[ScenarioSpec], tuple[Objective, ...]]:
    opts = build_parser().parse_args(argv)
    try:
        specs = [spec for text in opts.scenario for spec in parse_fleet_scenario(text)]
        objectives = parse_sla(opts.sla) if opts.sla is not None else ()
        opts.host = [parse_host(text) for text in opts.host]
    except (ValueError, SlaError) as exc:
        raise _Usage(str(exc)) from None
    if (opts.start_hosts is None) == (not opts.host):
        raise _Usage("give --start-hosts N or --host ADDR=PID (one or the other)")
    if opts.start_hosts is not None and not 1 <= opts.start_hosts <= 250:
        raise _Usage("--start-hosts must be from 1 to 250")
    if opts.haproxy_stats and opts.nginx_log:
        raise _Usage("give --haproxy-stats or --nginx-log, not both")
    if urlsplit(opts.balancer).scheme != "http":
        raise _Usage(f"--balancer {opts.balancer!r}: expected http://HOST:PORT/")
    for name in ("workers", "connections", "users"):
        if getattr(opts, name) < 1:
            raise _Usage(f"--{name} must be at least 1")
    if opts.locustfile and not Path(opts.locustfile).is_file():
        raise _Usage(f"--locustfile {opts.locustfile}: no such file")
    return opts, specs, objectives


def max_time(opts: argparse.Namespace, n_specs: int, n_hosts: int) -> float:
    if opts.max_time_s is not None:
        return float(opts.max_time_s)
    per = opts.phase_s + n_hosts * (opts.host_gap_s + VERIFY_TIMEOUT_S)
    return float(opts.phase_s + per * n_specs + 30.0)


@contextlib.contextmanager
def hosts_for(opts: argparse.Namespace, problems: list[str]) -> Iterator[list[Host]]:
    if opts.host:
        yield attach_hosts(opts.host)
        return
    with tempfile.TemporaryDirectory(prefix="corral-fleet-") as tmp:
        log_dir = Path(opts.host_log_dir or tmp)
        log_dir.mkdir(parents=True, exist_ok=True)
        build = host_command(opts.app, opts.workers, list(opts.serve_arg))
        hosts = start_hosts(opts.start_hosts, build, log_dir, opts.host_port)
        try:
            yield hosts
        finally:
            problems += stop_hosts(hosts)


def wait_balancer(url: str, fleet: HostFleet, deadline: float) -> None:
    """Until the balancer answers 2xx and (HAProxy) calls every host UP."""
    parts = urlsplit(url)
    while True:
        conn = http.client.HTTPConnection(parts.hostname or "", parts.port or 80, timeout=2.0)
        status = 0
        with contextlib.suppress(OSError, http.client.HTTPException):
            conn.request("GET", parts.path or "/")
            resp = conn.getresponse()
            resp.read()
            status = resp.status
        conn.close()
        if 200 <= status < 300 and all(fleet._up(h) is not False for h in fleet.hosts):
            return
        if time.monotonic() >= deadline:
            raise ChaosError(f"the balancer {url} did not serve (every host UP) in time")
        time.sleep(0.1)


def make_load(opts: argparse.Namespace, total_s: float, tmp: Path) -> tuple[Load, str, int]:
    """The session's load, its label and the requests it may have in flight at an instant."""
    if opts.locustfile:
        rate = opts.spawn_rate or float(opts.users)
        argv = locust_command(
            opts.locustfile, opts.balancer, opts.users, rate, total_s, tmp / "locust"
        )
        return LocustRun(argv, tmp), f"locust -u {opts.users}", int(opts.users)
    path = opts.path if opts.path.startswith("/") else "/" + opts.path
    body = b"x" * int(opts.post_kib * 1024) if opts.post_kib else None
    config = LoadConfig(
        urls=(opts.balancer.rstrip("/") + path,),
        connections=opts.connections,
        rate=opts.rate,
        method="POST" if body is not None else "GET",
        body=body,
        duration_s=total_s,
        timeout_s=opts.request_timeout_s,
        max_time_s=total_s + 5.0,
    )
    inflight = opts.connections if opts.rate is None else math.ceil(opts.rate * 0.1) + 1
    label = f"rate {opts.rate:g}/s" if opts.rate else f"-c {opts.connections}"
    return BuiltinLoad(config), label + (f" POST {opts.post_kib:g} KiB" if body else ""), inflight


def _balancer(opts: argparse.Namespace) -> Balancer | None:
    if opts.haproxy_stats:
        return Balancer("haproxy", opts.haproxy_stats, opts.haproxy_frontend, opts.haproxy_backend)
    if opts.nginx_log:
        return Balancer("nginx", opts.nginx_log)
    return None


def _session(
    opts: argparse.Namespace,
    specs: list[ScenarioSpec],
    objectives: tuple[Objective, ...],
    say: PROGRESS,
) -> FleetReport:
    problems: list[str] = []
    with hosts_for(opts, problems) as hosts, tempfile.TemporaryDirectory() as tmp:
        if opts.hosts_file:
            Path(opts.hosts_file).write_text("".join(f"{h.addr}\n" for h in hosts))
        say(f"hosts up: {', '.join(h.addr for h in hosts)}")
        total = max_time(opts, len(specs), len(hosts))
        fleet = HostFleet(
            hosts,
            _balancer(opts),
            opts.host_gap_s,
            opts.connections,
            opts.phase_s,
            time.monotonic() + opts.balancer_wait_s + total,
        )
        wait_balancer(opts.balancer, fleet, time.monotonic() + opts.balancer_wait_s)
        fleet.deadline = time.monotonic() + total
        load, label, inflight = make_load(opts, total, Path(tmp))
        report = run_fleet_session(
            fleet, load, specs, objectives, say, lambda: (opts.balancer, label, inflight), total
        )
        if isinstance(load, LocustRun) and load.outcome is not None:
            report.endpoints = [e.as_dict() for e in load.outcome.per_endpoint]
    report.problems += problems
    return report


def main(argv: list[str], stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    out, err = stdout or sys.stdout, stderr or sys.stderr
    try:
        opts, specs, objectives = parse_args(argv)
    except _Usage as exc:
        if exc.code == EXIT_USAGE:
            print(f"corral chaos --fleet: {exc}", file=err)
        return exc.code

    def say(msg: str) -> None:
        if not opts.quiet:
            print(f"chaos: {msg}", file=err, flush=True)

    try:
        with _term_interrupts():
            report = _session(opts, specs, objectives, say)
    except (ChaosError, BenchConfigError, BalancerError, LocustError) as exc:
        print(f"corral chaos --fleet: {exc}", file=err)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("corral chaos --fleet: interrupted (cleanup done)", file=err)
        return EXIT_INTERRUPTED
    if opts.plot:
        Path(opts.plot).write_text(fleet_html(report))
    if opts.json:
        out.write(json.dumps(fleet_report_dict(report), indent=2) + "\n")
    else:
        out.write(render_fleet_text(report))
    return EXIT_OK if report.ok else EXIT_FAILED
