"""Reloads and killed workers under load: corral next to gunicorn, counted in failed requests.

Theory of operation. The issue's targets, for a 50 ms endpoint on 2 workers under
``wrk -t2 -c16 -d16s``:

* ``hup``: SIGHUP to the master every 2 s -> 0 failed requests, and each reload serves the code
  that was on disk when it was asked for, although the app is preloaded.
* ``kill``: SIGKILL to a random worker every 2 s -> failed requests no more than the connections
  the killed workers held at the moment they died.
* after either, the master is alive with its full worker count.

Each scenario runs in a scratch directory holding a copy of ``apps/slow_app.py`` and an
``appversion`` module that the script rewrites (atomically, a new length each time) before
every SIGHUP. The app answers with that version, so a probe request after the HUP shows which
code serves: the version that was on disk (a real reload) or an older one (a fork from a stale
image: gunicorn's ``--preload`` keeps the app the master imported). ``PYTHONDONTWRITEBYTECODE=1``
keeps a stale ``.pyc`` from masking a change.

For a kill, the script reads the victim's established TCP connections on the server port
(``/proc/PID/fd`` socket inodes matched against ``/proc/net/tcp{,6}``) just before the SIGKILL:
those are the requests it can take with it. Connections still in the listen queue belong to no
worker and survive.

Failures are what wrk reports (socket errors: connect, read, write, timeout; non-2xx) plus the
script's own probe requests that failed. Scenarios run in rounds, order rotated each round,
and the medians are reported next to every round's figures.

Usage::

    /tmp/h7venv/bin/python benchmarks/reload.py [--rounds 3] [--scenarios corral-hup,...]
        [--markdown benchmarks/RELOAD.md] [--json OUT] [--pythonpath PATCHED_SRC]

``--pythonpath`` puts a directory ahead of the installed packages in the servers' import path,
to try a candidate fix to corral (a patched copy of ``src/``) under the same scenarios.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from statistics import median

from hello import (
    APPS,
    BIN,
    START_DEADLINE_S,
    WrkResult,
    answers,
    free_port,
    parse_wrk,
    stop,
    wait_ready,
    wrk_argv,
)

from corral.launch import spawn

WORKERS = 2
DURATION_S = 16.0
INTERVAL_S = 2.0  # the cadence: one HUP or one kill every 2 s
WRK_THREADS, WRK_CONNECTIONS = 2, 16
SETTLE_DEADLINE_S = 30.0  # time allowed for the fleet to be back to full strength afterwards
PROBE_TIMEOUT_S = 5.0  # a probe waits behind 16 wrk connections at 50 ms a request
STOP_GRACE_S = 35.0  # gunicorn's graceful_timeout is 30 s

# ---------------------------------------------------------------------------------------------
# Servers


@dataclass(frozen=True)
class Server:
    """How to start one server on the slow app, and how to tell its workers from its helpers."""

    name: str
    argv: Callable[[int, Path], list[str]]
    is_worker: Callable[[str], bool]  # by command line


def _corral(port: int, appdir: Path) -> list[str]:
    argv = [str(BIN / "corral"), "serve", "slow_app:app", "-b", f"127.0.0.1:{port}"]
    return [*argv, "-w", str(WORKERS), "--chdir", str(appdir), "--log-level", "warning"]


def _gunicorn(preload: bool) -> Callable[[int, Path], list[str]]:
    def argv(port: int, appdir: Path) -> list[str]:
        base = [str(BIN / "gunicorn"), "-k", "sync", "-w", str(WORKERS), "-b", f"127.0.0.1:{port}"]
        extra = ["--preload"] if preload else []
        return [*base, *extra, "--chdir", str(appdir), "--log-level", "warning", "slow_app:app"]

    return argv


SERVERS = {
    "corral": Server("corral", _corral, lambda cmd: cmd.startswith("corral worker")),
    # gunicorn's master forks nothing but workers; all its children count.
    "gunicorn-preload": Server("gunicorn-preload", _gunicorn(True), lambda cmd: True),
    "gunicorn": Server("gunicorn", _gunicorn(False), lambda cmd: True),
}
SCENARIOS = {
    "corral-hup": ("corral", "hup"),
    "gunicorn-preload-hup": ("gunicorn-preload", "hup"),
    "gunicorn-hup": ("gunicorn", "hup"),
    "corral-kill": ("corral", "kill"),
    "gunicorn-preload-kill": ("gunicorn-preload", "kill"),
}

# ---------------------------------------------------------------------------------------------
# /proc: children, command lines, connections held


def _read(path: str) -> str:
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


def children(pid: int) -> list[int]:
    """Live processes whose parent is ``pid`` (zombies excluded)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = _read(f"/proc/{entry}/stat")
            fields = stat.rsplit(")", 1)[-1].split()  # the command in () may hold spaces
            if len(fields) > 2 and fields[0] != "Z" and int(fields[1]) == pid:
                found.append(int(entry))
    return found


def cmdline(pid: int) -> str:
    """The process's command line (its title, where it set one)."""
    return _read(f"/proc/{pid}/cmdline").replace("\0", " ").strip()


def workers_of(server: Server, master: int) -> list[int]:
    """The master's worker processes."""
    return [p for p in children(master) if server.is_worker(cmdline(p))]


def socket_inodes(pid: int) -> set[str]:
    """Inodes of the sockets ``pid`` has open."""
    inodes: set[str] = set()
    with_fds = f"/proc/{pid}/fd"
    try:
        fds = os.listdir(with_fds)
    except OSError:
        return inodes
    for fd in fds:
        try:
            target = os.readlink(f"{with_fds}/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    return inodes


def established(pid: int, port: int) -> int:
    """How many ESTABLISHED TCP connections to local ``port`` the process holds."""
    inodes = socket_inodes(pid)
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in _read(table).splitlines()[1:]:
            cols = line.split()
            local, state, inode = cols[1], cols[3], cols[9]
            if state == "01" and inode in inodes and int(local.rsplit(":", 1)[1], 16) == port:
                count += 1
    return count


# ---------------------------------------------------------------------------------------------
# One scenario


@dataclass
class Action:
    """One HUP or one kill, and what followed it."""

    at_s: float
    detail: str  # the version written, or the victim pid
    held: int = 0  # connections the killed worker held
    new_version_after_s: float | None = None  # HUP: first probe that answered with it
    seen: list[str] = field(default_factory=list)  # HUP: versions the probes saw
    spread: list[int] = field(default_factory=list)  # kill: connections held by each worker
    back_after_s: float | None = None  # kill: until the full worker count was back


@dataclass
class Outcome:
    """What one run of one scenario produced."""

    scenario: str
    wrk: WrkResult
    actions: list[Action]
    probe_failures: int
    master_alive: bool
    workers_after: int
    final_version: str
    expected_version: str

    @property
    def failed(self) -> int:
        """Failed requests: wrk's socket errors and non-2xx, plus failed probes."""
        return sum(self.wrk.errors.values()) + self.wrk.non_2xx + self.probe_failures

    @property
    def held(self) -> int:
        return sum(a.held for a in self.actions)

    @property
    def reloads_current(self) -> int:
        """HUPs after which the version written before them was served in time."""
        return sum(a.new_version_after_s is not None for a in self.actions)


def version_text(i: int) -> str:
    """Version ``i``: contents and length change every time."""
    return f"v{i}-" + "ab" * ((i * 5) % 7)


def write_version(appdir: Path, text: str) -> None:
    """Replace ``appversion.py`` atomically, as a deploy would."""
    tmp = appdir / "appversion.py.new"
    tmp.write_text(f"VERSION = {text!r}\n")
    os.replace(tmp, appdir / "appversion.py")


def probe(port: int) -> str | None:
    """The version that answers one request, or None if the request failed."""
    reply = answers(port, timeout_s=PROBE_TIMEOUT_S)
    if reply is None or not reply.startswith(b"HTTP/1.1 200"):
        return None
    return reply.split(b"\r\n\r\n", 1)[1].decode().strip()


class Runner:
    """Drives one scenario: server up, wrk running, actions every 2 s, checks afterwards."""

    def __init__(self, scenario: str, appdir: Path, log: Path, pythonpath: str = "") -> None:
        name, self.action = SCENARIOS[scenario]
        self.scenario, self.server, self.appdir, self.log = scenario, SERVERS[name], appdir, log
        self.port = free_port()
        self.probe_failures = 0
        self.rng = random.Random()
        self.pythonpath = os.pathsep.join(p for p in (str(appdir), pythonpath) if p)

    def run(self) -> Outcome:
        write_version(self.appdir, version_text(0))
        env = {"PYTHONDONTWRITEBYTECODE": "1", "PYTHONPATH": self.pythonpath}
        argv = self.server.argv(self.port, self.appdir)
        proc = spawn(argv, log_path=self.log, env=env, cwd=self.appdir, ready_pipe=False).proc
        try:
            wait_ready(proc, self.port, START_DEADLINE_S)
            self._wait_workers(proc.pid)
            return self._under_load(proc)
        finally:
            stop(proc, STOP_GRACE_S)

    def _under_load(self, proc: subprocess.Popen[bytes]) -> Outcome:
        argv = wrk_argv(self.port, DURATION_S, WRK_THREADS, WRK_CONNECTIONS)
        wrk = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        start = time.monotonic()
        actions, version = [], 0
        for i in range(1, int(DURATION_S / INTERVAL_S)):
            _sleep_until(start + i * INTERVAL_S)
            if self.action == "hup":
                version = i
                actions.append(
                    self._hup(proc.pid, version_text(i), start, start + (i + 1) * INTERVAL_S)
                )
            else:
                actions.append(self._kill(proc.pid, start, start + (i + 1) * INTERVAL_S))
        text, _ = wrk.communicate(timeout=DURATION_S + 60)
        with self.log.open("a") as out:
            out.write(f"--- {self.scenario}\n{text}\n")
        alive = proc.poll() is None
        after = self._wait_workers(proc.pid) if alive else 0
        final = probe(self.port) or "(no answer)"
        return Outcome(
            self.scenario, parse_wrk(text), actions, self.probe_failures, alive, after, final,
            version_text(version),
        )  # fmt: skip

    def _hup(self, master: int, text: str, start: float, until: float) -> Action:
        """Write the new version, HUP, then probe until it answers or the next HUP is due."""
        write_version(self.appdir, text)
        hup_at = time.monotonic()
        os.kill(master, signal.SIGHUP)
        action = Action(round(hup_at - start, 2), text)
        while time.monotonic() < until - PROBE_TIMEOUT_S / 10:
            seen = probe(self.port)
            if seen is None:
                self.probe_failures += 1
                continue
            if not action.seen or action.seen[-1] != seen:
                action.seen.append(seen)
            if seen == text:
                action.new_version_after_s = round(time.monotonic() - hup_at, 3)
                break
        return action

    def _kill(self, master: int, start: float, until: float) -> Action:
        """SIGKILL a random worker, counting the connections it holds as it dies.

        The victim is stopped (SIGSTOP) before its connections are counted, so it cannot
        accept another between the count and the kill.
        """
        pids = workers_of(self.server, master)
        if not pids:
            return Action(round(time.monotonic() - start, 2), "no worker to kill")
        victim = self.rng.choice(pids)
        os.kill(victim, signal.SIGSTOP)
        spread = [established(p, self.port) for p in pids]
        os.kill(victim, signal.SIGKILL)
        killed_at = time.monotonic()
        held = spread[pids.index(victim)]
        action = Action(round(killed_at - start, 2), f"pid {victim}", held, spread=spread)
        action.back_after_s = self._full_again(master, victim, killed_at, until)
        return action

    def _full_again(self, master: int, victim: int, since: float, until: float) -> float | None:
        """Seconds until the master again has its full count without the victim, or None."""
        while time.monotonic() < until - 0.1:
            pids = workers_of(self.server, master)
            if len(pids) >= WORKERS and victim not in pids:
                return round(time.monotonic() - since, 3)
            time.sleep(0.02)  # polling /proc; bounded by the next kill
        return None

    def _wait_workers(self, master: int) -> int:
        """Wait (bounded) until the master has exactly its worker count; return what it has."""
        deadline = time.monotonic() + SETTLE_DEADLINE_S
        count = len(workers_of(self.server, master))
        while count != WORKERS and time.monotonic() < deadline:
            time.sleep(0.1)  # polling /proc; the deadline bounds it
            count = len(workers_of(self.server, master))
        return count


def _sleep_until(t: float) -> None:
    delay = t - time.monotonic()
    if delay > 0:
        time.sleep(delay)


def run_scenario(scenario: str, log: Path, pythonpath: str = "") -> Outcome:
    """One run in a fresh scratch directory holding the app and its version module."""
    appdir = Path(tempfile.mkdtemp(prefix="h7reload-"))
    try:
        shutil.copy(APPS / "slow_app.py", appdir / "slow_app.py")
        return Runner(scenario, appdir, log, pythonpath).run()
    finally:
        shutil.rmtree(appdir, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# Report


def describe(o: Outcome) -> str:
    """One line per run: failures, the bound or the reload result, the fleet afterwards."""
    e = o.wrk.errors
    errs = f"connect {e.get('connect', 0)} read {e.get('read', 0)} write {e.get('write', 0)} "
    errs += f"timeout {e.get('timeout', 0)} non-2xx {o.wrk.non_2xx} probes {o.probe_failures}"
    if o.actions and o.actions[0].detail.startswith("pid"):
        what = f"held by killed workers {o.held}"
    else:
        what = f"reloads serving the new code {o.reloads_current}/{len(o.actions)}"
    fleet = f"master {'alive' if o.master_alive else 'DEAD'}, workers {o.workers_after}/{WORKERS}"
    return f"{o.wrk.requests} requests, failed {o.failed} ({errs}); {what}; {fleet}"


def table(outcomes: Sequence[Outcome], scenarios: Sequence[str]) -> str:
    """Medians per scenario, with each round's failures listed."""
    lines = [
        "| scenario | requests (median) | failed (median) | failed per round | bound: conns held "
        "by killed workers | HUPs serving new code | master alive, workers after | final version "
        "(expected) |",
        "|---|---:|---:|---|---|---|---|---|",
    ]
    for s in scenarios:
        runs = [o for o in outcomes if o.scenario == s]
        if not runs:
            continue
        kill = SCENARIOS[s][1] == "kill"
        held = ", ".join(str(o.held) for o in runs) if kill else "-"
        fresh = "-" if kill else ", ".join(f"{o.reloads_current}/{len(o.actions)}" for o in runs)
        fleet = ", ".join(f"{'yes' if o.master_alive else 'NO'} {o.workers_after}" for o in runs)
        versions = ", ".join(f"{o.final_version} ({o.expected_version})" for o in runs)
        lines.append(
            f"| {s} | {median(o.wrk.requests for o in runs):,.0f} "
            f"| {median(o.failed for o in runs):g} | {', '.join(str(o.failed) for o in runs)} "
            f"| {held} | {fresh} | {fleet} | {versions} |"
        )
    return "\n".join(lines)


def details(outcomes: Sequence[Outcome]) -> str:
    """Every run's breakdown and every action, for the appendix."""
    out = []
    for o in outcomes:
        out.append(f"- **{o.scenario}**: {describe(o)}")
        for a in o.actions:
            if a.detail.startswith("pid") or a.detail.startswith("no "):
                out.append(
                    f"  - t={a.at_s}s SIGKILL {a.detail}, held {a.held} connections "
                    f"(all workers then: {a.spread}); full count back after "
                    + (f"{a.back_after_s}s" if a.back_after_s is not None else "more than 2 s")
                )
            else:
                after = (
                    f"{a.new_version_after_s}s"
                    if a.new_version_after_s is not None
                    else f"not within {INTERVAL_S:g} s"
                )
                out.append(
                    f"  - t={a.at_s}s HUP with `{a.detail}` on disk: served after {after}; "
                    f"probes saw {', '.join(a.seen) or 'nothing'}"
                )
    return "\n".join(out)


NOTES = """How to read it:

- *failed* counts wrk's socket errors (connect, read, write, timeout) and non-2xx responses,
  plus failed probe requests. A wrk "timeout" is a request still unanswered after wrk's 2 s
  timeout: a slow request rather than an error response, but counted as failed here.
- *bound* is the number of established connections the killed workers held when they died,
  counted from /proc with the victim stopped (SIGSTOP) so it cannot accept more before the
  SIGKILL. A killed worker takes those requests with it; the target is failed <= bound.
- *HUPs serving new code*: after each SIGHUP the script probes until a response carries the
  version written just before it, within the 2 s until the next HUP. gunicorn `--preload`
  forks its new workers from the master, which imported the app once at start, so a HUP never
  serves new code (v0 throughout); without `--preload` each worker imports the app itself.
- gunicorn's sync worker closes the connection after each response, so a killed gunicorn
  worker holds at most one connection; corral's workers keep connections alive, so a killed
  corral worker takes every connection it holds (about half of wrk's 16).
- The per-kill lines show how long the master took to get back to full strength. corral backs
  off respawns after consecutive short-lived workers (0.1 s doubling to 5 s), and a worker
  killed within 10 s of its start counts as a crash, so kills every 2 s leave it one worker
  short for longer each time; gunicorn respawns at once.
"""


def write_markdown(
    path: Path, command: str, outcomes: Sequence[Outcome], order: Sequence[str]
) -> None:
    argv = " ".join(wrk_argv(0, DURATION_S, WRK_THREADS, WRK_CONNECTIONS)).replace(":0/", ":PORT/")
    servers = "\n".join(
        f"- {name}: `{shlex.join(s.argv(0, Path('DIR')))}`".replace(":0 ", ":PORT ")
        for name, s in SERVERS.items()
    )
    path.write_text(
        "# Reload and worker-kill under load (benchmarks/reload.py)\n\n"
        f"Command: `{command}`\n\n"
        f"Load: `{argv}` on a 50 ms endpoint with {WORKERS} workers; one SIGHUP to the master or "
        f"one SIGKILL to a random worker every {INTERVAL_S:g} s (7 per run). "
        "Environment of the servers: `PYTHONDONTWRITEBYTECODE=1`. "
        f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs.\n\nServers:\n\n{servers}\n\n"
        f"{table(outcomes, order)}\n\n{NOTES}\n## Every run\n\n{details(outcomes)}\n"
    )


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--rounds", type=int, default=3, help="runs per scenario (median taken)")
    p.add_argument("--scenarios", default=",".join(SCENARIOS), help="comma-separated subset")
    p.add_argument("--markdown", type=Path, default=Path(__file__).parent / "RELOAD.md")
    p.add_argument("--json", type=Path, help="write raw results here")
    p.add_argument("--log", type=Path, default=Path("/tmp/reload-bench.log"))
    p.add_argument(
        "--pythonpath",
        default="",
        help="prepended to the servers' import path, e.g. a patched copy of corral's src/",
    )
    return p.parse_args(argv)


def main(argv: Sequence[str]) -> int:
    args = parse_args(argv)
    order = [s for s in args.scenarios.split(",") if s]
    unknown = [s for s in order if s not in SCENARIOS]
    if unknown:
        raise SystemExit(f"unknown scenarios {unknown}; choose from {list(SCENARIOS)}")
    outcomes = []
    for r in range(args.rounds):
        for s in order[r % len(order) :] + order[: r % len(order)]:
            outcome = run_scenario(s, args.log, args.pythonpath)
            outcomes.append(outcome)
            print(f"round {r + 1} {s}: {describe(outcome)}", flush=True)
    print(table(outcomes, order))
    command = shlex.join([Path(sys.executable).as_posix(), "benchmarks/reload.py", *argv])
    if args.markdown:
        write_markdown(args.markdown, command, outcomes, order)
    if args.json:
        args.json.write_text(json.dumps([asdict(o) for o in outcomes], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
