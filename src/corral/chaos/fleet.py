"""The fleet under test and its drills: N corral hosts behind a balancer chaos does not own.

Hosts are either **started here** (``--start-hosts N``: ``corral serve`` on 127.0.0.2,
127.0.0.3, ... through corral.launch, port 0 the first time, the same address and port on every
restart, so the balancer's config stays true) or **attached** (``--host ADDR=PID``: a running
master chaos can signal but not restart).

Each drill is one phase and names the hosts it acted on, with when, so a failed request can be
charged to the phase and the host that caused it (the balancer's per-server counters confirm
it; see balancer.py). Between hosts a rolling drill waits until the balancer calls the host
UP again (HAProxy's ``show stat``), or ``--host-gap-s`` when it cannot ask.

=============  ============================================================  ==============
drill          what chaos does                                               error bound
=============  ============================================================  ==============
roll-restart   host by host: TERM, wait for exit, start again, wait ready    0
roll-hup       host by host: HUP, wait until every old worker is replaced    0
kill-host      SIGKILL one host's whole process family (a crashed machine);  ``-c`` (the
               a started host is started again at the end of the phase       requests in
                                                                             flight)
stop-host[:s]  SIGSTOP a host's family for ``s`` seconds (default half a     none: the SLA
               phase), then SIGCONT (a hung machine)                         judges it
=============  ============================================================  ==============
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from corral.chaos.balancer import Balancer, BalancerError
from corral.chaos.spec import POLL_S, STOP_GRACE_S, VERIFY_TIMEOUT_S, ChaosError, ScenarioSpec
from corral.chaos.target import wait_until, worker_pids
from corral.chaos.verdicts import Expectation
from corral.launch import Launched, LaunchError, start

FLEET_SCENARIOS = ("roll-restart", "roll-hup", "kill-host", "stop-host")
FIRST_HOST = 2  # 127.0.0.2: 127.0.0.1 stays the balancer's and the user's


def parse_fleet_scenario(text: str) -> list[ScenarioSpec]:
    """``roll-restart``, ``roll-hup``, ``kill-host``, ``stop-host[:seconds]``, ``all``."""
    name, sep, arg = text.strip().partition(":")
    if name == "all" and not sep:
        return [ScenarioSpec(n) for n in FLEET_SCENARIOS]
    if name not in FLEET_SCENARIOS:
        raise ValueError(f"unknown fleet scenario {name!r}; expected one of {FLEET_SCENARIOS}")
    if not sep:
        return [ScenarioSpec(name)]
    if name != "stop-host":
        raise ValueError(f"fleet scenario {name!r} takes no argument")
    try:
        value = float(arg)
    except ValueError:
        raise ValueError(f"bad argument in {text!r}: expected seconds") from None
    if not value > 0:
        raise ValueError(f"bad argument in {text!r}: must be a positive number")
    return [ScenarioSpec(name, value)]


def parse_host(text: str) -> tuple[str, int]:
    """``ADDR:PORT=PID`` -> (addr, pid)."""
    addr, sep, pid = text.partition("=")
    if not sep or ":" not in addr or not pid.isdigit():
        raise ValueError(f"bad --host {text!r}: expected HOST:PORT=PID")
    return addr, int(pid)


# ------------------------------------------------------------------------------- hosts


@dataclass
class Host:
    """One corral master of the fleet: where it listens, its pid, how to restart it."""

    addr: str  # HOST:PORT, as the balancer's config names it
    pid: int
    launched: Launched | None = None
    build: Callable[[str], Callable[[int], list[str]]] | None = None  # bind -> argv builder
    log: Path | None = None
    workers: int = 0

    def alive(self) -> bool:
        if self.launched is not None:
            return self.launched.proc.poll() is None
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def family(self) -> list[int]:
        """The master and its workers (signalled together to fake a machine's crash/hang)."""
        return [self.pid, *worker_pids(self.pid)]

    def signal(self, sig: int, family: bool = False) -> None:
        for pid in self.family() if family else [self.pid]:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)

    def boot(self, timeout_s: float) -> None:
        """(Re)start a host chaos owns on its address; ``ChaosError`` if it does not come up."""
        if self.build is None:
            raise ChaosError(f"host {self.addr} is attached: chaos cannot restart it")
        try:
            self.launched = start(self.build(self.addr), log_path=self.log, timeout_s=timeout_s)
        except LaunchError as exc:
            raise ChaosError(f"host {self.addr} did not start: {exc}") from None
        self.pid = self.launched.pid
        self.workers = len(worker_pids(self.pid))

    def stop(self, grace_s: float = STOP_GRACE_S) -> int | None:
        if self.launched is None:
            return None
        status = self.launched.stop(grace_s)
        self.launched = None
        return status


def host_command(
    app: str, workers: int, serve_args: list[str], python: str = sys.executable
) -> Callable[[str], Callable[[int], list[str]]]:
    """bind -> the ``corral serve`` argv builder for that bind (given the ready fd)."""

    def for_bind(bind: str) -> Callable[[int], list[str]]:
        def argv(fd: int) -> list[str]:
            cmd = [python, "-m", "corral", "serve", *([app] if app else [])]
            cmd += ["-b", bind, "-w", str(workers), "--ready-fd", str(fd)]
            return cmd + serve_args

        return argv

    return for_bind


def start_hosts(
    n: int,
    build: Callable[[str], Callable[[int], list[str]]],
    log_dir: Path,
    port: int = 0,
    timeout_s: float = 30.0,
) -> list[Host]:
    """``n`` hosts on 127.0.0.2.. (port 0: each learns its own, kept for its restarts)."""
    hosts: list[Host] = []
    try:
        for i in range(n):
            ip = f"127.0.0.{FIRST_HOST + i}"
            host = Host(f"{ip}:{port}", 0, build=build, log=log_dir / f"host-{ip}.log")
            host.boot(timeout_s)
            assert host.launched is not None
            host.addr = host.launched.url.removeprefix("http://")
            hosts.append(host)
    except BaseException:
        stop_hosts(hosts)
        raise
    return hosts


def stop_hosts(hosts: list[Host]) -> list[str]:
    """Stop every host chaos started; a problem line for each that did not exit 0."""
    problems = []
    for host in hosts:
        status = host.stop()
        if status not in (None, 0):
            problems.append(f"host {host.addr} exited with status {status} on TERM")
    return problems


def attach_hosts(specs: list[tuple[str, int]]) -> list[Host]:
    hosts = [Host(addr, pid) for addr, pid in specs]
    for host in hosts:
        if not host.alive():
            raise ChaosError(f"host {host.addr}: no process {host.pid}")
        host.workers = len(worker_pids(host.pid))
        if host.workers == 0:
            raise ChaosError(f"host {host.addr}: process {host.pid} has no corral workers")
    return hosts


# ------------------------------------------------------------------------------- drills


@dataclass
class Drill:
    """What a drill did: the hosts it acted on (seconds into the phase), bound, checks."""

    allowed: int | None = 0
    victims: list[str] = field(default_factory=list)
    checks: list[Expectation] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass
class HostFleet:
    """The hosts, the balancer (may be None), options, and the session's deadline."""

    hosts: list[Host]
    balancer: Balancer | None
    host_gap_s: float
    connections: int
    phase_s: float
    deadline: float
    boot_timeout_s: float = 30.0
    stopped: set[int] = field(default_factory=set)
    pick: int = 0

    def within(self, seconds: float) -> float:
        return min(time.monotonic() + seconds, self.deadline)

    def pause_until(self, when: float) -> None:
        delay = min(when, self.deadline) - time.monotonic()
        if delay > 0:
            time.sleep(delay)

    def back_in_rotation(self, host: Host, since: float) -> Expectation:
        """Wait until the balancer calls ``host`` UP (or ``host_gap_s`` when it cannot say)."""
        known = self._up(host)
        if known is None:
            self.pause_until(time.monotonic() + self.host_gap_s)
            return Expectation(f"{host.addr} back", host.alive(), f"waited {self.host_gap_s:g} s")
        # it may still be UP (checks not yet failed): first let it be seen down, briefly
        ok = wait_until(lambda: self._up(host) is True, self.within(VERIFY_TIMEOUT_S))
        took = time.monotonic() - since
        return Expectation(f"{host.addr} UP in balancer", ok, f"after {took:.1f} s")

    def _up(self, host: Host) -> bool | None:
        if self.balancer is None:
            return None
        try:
            return self.balancer.server_up(host.addr)
        except BalancerError:
            return None

    def victim(self) -> Host:
        """Hosts in turn, so a session with several drills spreads them over the fleet."""
        host = self.hosts[self.pick % len(self.hosts)]
        self.pick += 1
        return host

    def cleanup(self) -> None:
        for host in self.hosts:
            if host.pid in self.stopped:
                host.signal(signal.SIGCONT, family=True)
        self.stopped.clear()


def _at(f: HostFleet, begin: float) -> str:
    return f"+{time.monotonic() - begin:.1f} s"


def roll_restart(f: HostFleet, spec: ScenarioSpec, start: float, end: float) -> Drill:
    """TERM each host in turn, wait for it to exit, start it again, wait until it is back."""
    d = Drill(allowed=0)
    f.pause_until(start)
    for host in f.hosts:
        d.victims.append(host.addr)
        d.notes.append(f"TERM {host.addr} (pid {host.pid}) at {_at(f, start)}")
        old = host.pid
        status = host.stop()
        d.checks.append(Expectation(f"{host.addr} exited 0", status == 0, f"status {status}"))
        host.boot(f.boot_timeout_s)
        d.notes.append(f"{host.addr} started again (pid {old} -> {host.pid})")
        d.checks.append(f.back_in_rotation(host, time.monotonic()))
    return d


def roll_hup(f: HostFleet, spec: ScenarioSpec, start: float, end: float) -> Drill:
    """HUP each host in turn; wait until its old workers are all replaced."""
    d = Drill(allowed=0)
    f.pause_until(start)
    for host in f.hosts:
        old = set(worker_pids(host.pid))
        d.victims.append(host.addr)
        d.notes.append(f"HUP {host.addr} at {_at(f, start)}")
        host.signal(signal.SIGHUP)

        def replaced(host: Host = host, old: set[int] = old) -> bool:
            now = set(worker_pids(host.pid))
            return len(now) == host.workers and not now & old

        ok = wait_until(replaced, f.within(VERIFY_TIMEOUT_S))
        d.checks.append(Expectation(f"{host.addr} workers replaced", ok, f"{len(old)} old"))
        f.pause_until(time.monotonic() + f.host_gap_s)
    return d


def kill_host(f: HostFleet, spec: ScenarioSpec, start: float, end: float) -> Drill:
    """SIGKILL one host's master and workers at once; start it again at the phase's end."""
    f.pause_until(start)
    host = f.victim()
    pids = host.family()
    host.signal(signal.SIGKILL, family=True)
    d = Drill(allowed=f.connections, victims=[host.addr])
    d.notes.append(f"SIGKILL {host.addr} ({len(pids)} processes) at {_at(f, start)}")
    gone = wait_until(lambda: not host.alive(), f.within(5.0))
    d.checks.append(Expectation(f"{host.addr} gone", gone))
    if host.build is None:
        d.notes.append(f"{host.addr} is attached: left down")
        return d
    f.pause_until(start + (end - start) / 2)
    host.stop(0.0)  # reap what is left of its session
    host.boot(f.boot_timeout_s)
    d.notes.append(f"{host.addr} started again (pid {host.pid})")
    d.checks.append(f.back_in_rotation(host, time.monotonic()))
    return d


def stop_host(f: HostFleet, spec: ScenarioSpec, start: float, end: float) -> Drill:
    """SIGSTOP one host's master and workers for a while, then SIGCONT."""
    f.pause_until(start)
    host = f.victim()
    hold = spec.arg if spec.arg is not None else max(f.phase_s / 2, POLL_S)
    f.stopped.add(host.pid)  # before the signal: cleanup must resume it whatever happens
    host.signal(signal.SIGSTOP, family=True)
    f.pause_until(time.monotonic() + hold)
    host.signal(signal.SIGCONT, family=True)
    f.stopped.discard(host.pid)
    d = Drill(allowed=None, victims=[host.addr])
    d.notes.append(f"SIGSTOP {host.addr} at {_at(f, start)} for {hold:g} s, then SIGCONT")
    d.checks.append(f.back_in_rotation(host, time.monotonic()))
    return d


DRILLS: dict[str, Callable[[HostFleet, ScenarioSpec, float, float], Drill]] = {
    "roll-restart": roll_restart,
    "roll-hup": roll_hup,
    "kill-host": kill_host,
    "stop-host": stop_host,
}
