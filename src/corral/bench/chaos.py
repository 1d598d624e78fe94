"""``corral chaos``: fault scenarios against a real master under steady load, with verdicts.

Theory of operation. One load run (``run_load``, closed loop or ``--rate``) goes on in a
thread for the whole session; the main thread drives *phases* on the load generator's own
clock. The first progress report gives the run's start ``t0`` and every phase boundary is
a whole second after it, so the per-second ``series`` the run returns splits exactly into
phases: second ``s`` belongs to the phase whose ``[start, end)`` holds it. A baseline phase
comes first, then one phase per ``--scenario``. A phase lasts ``--phase-s`` seconds, longer
when its scenario needs time to verify itself (a hung worker is only replaced after the
server's ``--timeout-s``), plus one settling second so late failures land in their phase.

Each scenario acts on the master (signals) or its workers (SIGKILL, SIGSTOP) and states its
own expectation, taken from what corral promises in docs/signals.md:

* ``kill``: a SIGKILLed worker loses the requests on its connections and nothing else, so
  the bound is the number of established connections it held at that instant (its socket
  inodes found ESTABLISHED in /proc/PID/net/tcp, or /stats ``connections`` if larger);
* ``hang``: a SIGSTOPped worker misses heartbeats, is killed after ``--timeout-s`` and
  replaced; bound as for kill, and the stopped pid must be gone and the count restored;
* ``bloat``: one request makes a worker cross ``--max-worker-memory-mib``; a ``memory``
  recycle must follow (spawn before kill), with 0 failures;
* ``reload`` (HUP) and ``scale`` (TTIN, then TTOU): 0 failures, and the workers follow;
* ``slowloris``: N connections trickle a request head; normal load sees 0 failures and a
  p99 within ``--slowloris-p99-factor`` of the baseline's (plus a 50 ms floor for noise).

The server's own view (/stats ``totals`` before and after) is reported next to the client's
and cross-checked: the client's 2xx responses cannot exceed the server's 2xx delta, and the
server's unplanned restarts must cover every kill and hang. ``--sla`` objectives are
evaluated on the whole run (the exit code) and on each phase (reported).

Everything is bounded: the whole session by ``--max-time-s``, every wait by its own
deadline within that. Cleanup always runs: stopped workers get SIGCONT, slowloris sockets
close, the load stops, and a server chaos started is stopped TERM, then KILL its group.

Exit codes: 0 all verdicts pass; 1 a scenario expectation, the SLA or a cross-check failed;
2 bad usage; 3 the target could not be started or reached; 130 interrupted (^C or SIGTERM,
after cleanup).
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import math
import os
import random
import re
import select
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlsplit

from corral.bench.config import BenchConfigError, LoadConfig
from corral.bench.result import (
    ERROR_CLASSES,
    FAILURE_CLASSES,
    LoadResult,
    Progress,
    SecondStats,
    add_counts,
    bucket_top_us,
    percentile_us,
)
from corral.bench.runner import run_load
from corral.bench.sla import Check, Measures, Objective, SlaError, all_met, evaluate, parse_sla
from corral.stats.scoreboard import PUBLISH_AFTER_S

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_ERROR, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
SCENARIOS = ("kill", "hang", "bloat", "reload", "scale", "slowloris")
DEFAULT_WORKERS = 2
DEFAULT_CONNECTIONS = 8
DEFAULT_PHASE_S = 5.0
DEFAULT_WORKER_TIMEOUT_S = 2.0  # corral's --timeout-s when chaos starts the server (gunicorn 30)
DEFAULT_REQUEST_TIMEOUT_S = 10.0  # longer than a hang's timeout + the 2 s ABRT->KILL grace
DEFAULT_BLOAT_LIMIT_MIB = 64.0
DEFAULT_BLOAT_MIB = 96  # comfortably over the limit in one request
DEFAULT_SLOWLORIS = 64
SLOWLORIS_P99_FACTOR = 10.0
SLOWLORIS_P99_FLOOR_MS = 50.0  # absolute slack: a 1 ms baseline p99 would make any factor flaky
SETTLE_S = 1  # seconds after a scenario's last effect before its phase ends
ACT_DELAY_S = 0.3  # into a phase before acting, so the phase's first second is not all fault
BOOT_TIMEOUT_S = 30.0
VERIFY_TIMEOUT_S = 20.0  # a replacement worker, a reload, a scale step
STOP_GRACE_S = 15.0
HTTP_TIMEOUT_S = 3.0
POLL_S = 0.05
WORKER_TAG = "corral worker"
PROGRESS = Callable[[str], None]


class ChaosError(Exception):
    """The session cannot go on (target gone, server failed to boot); one line for the user."""


# ----------------------------------------------------------------- scenario specs (pure)


@dataclass(frozen=True, slots=True)
class ScenarioSpec:
    """One ``--scenario`` value: a name and its optional argument (seconds or a count)."""

    name: str
    arg: float | None = None

    @property
    def label(self) -> str:
        return self.name if self.arg is None else f"{self.name}:{self.arg:g}"


def parse_scenario(text: str) -> list[ScenarioSpec]:
    """``kill``, ``kill:2``, ``slowloris:100``, ``all`` (every scenario once, in order)."""
    name, sep, arg = text.strip().partition(":")
    if name == "all" and not sep:
        return [ScenarioSpec(n) for n in SCENARIOS]
    if name not in SCENARIOS:
        raise ValueError(f"unknown scenario {name!r}; expected one of {(*SCENARIOS, 'all')}")
    if not sep:
        return [ScenarioSpec(name)]
    if name in ("hang", "bloat", "scale"):
        raise ValueError(f"scenario {name!r} takes no argument")
    try:
        value = float(arg)
    except ValueError:
        raise ValueError(f"bad argument in scenario {text!r}: expected a number") from None
    if not value > 0 or (name == "slowloris" and value != int(value)):
        raise ValueError(f"bad argument in scenario {text!r}: must be a positive number")
    return [ScenarioSpec(name, value)]


def action_times(start: float, end: float, every_s: float | None) -> list[float]:
    """When a repeated action fires in ``[start, end)``: once at ``start``, or every ``every_s``
    while at least half a second of the phase is left."""
    if every_s is None:
        return [start]
    times: list[float] = []
    t = start
    while t < end - 0.5 and len(times) < 1000:
        times.append(t)
        t += every_s
    return times or [start]


# ----------------------------------------------------------- phase windows and verdicts (pure)


@dataclass(slots=True)
class WindowStats:
    """The per-second series folded over one window of seconds."""

    seconds: int = 0
    requests: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    latency_us: dict[int, int] = field(default_factory=dict)

    def add(self, second: SecondStats) -> None:
        self.seconds += 1
        self.requests += second.requests
        for name, count in second.errors.items():
            self.errors[name] = self.errors.get(name, 0) + count
        add_counts(self.latency_us, second.latency_us)

    @property
    def failed(self) -> int:
        return sum(self.errors.get(name, 0) for name in FAILURE_CLASSES)

    @property
    def error_total(self) -> int:
        return sum(self.errors.values())

    @property
    def ok_responses(self) -> int:
        """Complete 2xx responses: complete responses less the non-2xx ones."""
        return self.requests - self.errors.get("non_2xx", 0)

    def latency_ms(self, percentile: float) -> float:
        return percentile_us(self.latency_us, percentile) / 1000.0

    def max_ms(self) -> float:
        return bucket_top_us(max(self.latency_us)) / 1000.0 if self.latency_us else 0.0

    def measures(self) -> Measures:
        latency = {
            "p50": self.latency_ms(50),
            "p90": self.latency_ms(90),
            "p99": self.latency_ms(99),
            "p999": self.latency_ms(99.9),
            "max": self.max_ms(),
        }
        rps = self.requests / self.seconds if self.seconds else 0.0
        return Measures(self.requests, self.failed, self.error_total, latency, rps)


def window_stats(series: Sequence[SecondStats], start: int, end: int | None) -> WindowStats:
    """Fold the seconds ``start <= s < end`` (``end`` None: to the end of the run)."""
    out = WindowStats()
    for second in series:
        if second.second >= start and (end is None or second.second < end):
            out.add(second)
    return out


@dataclass(frozen=True, slots=True)
class Expectation:
    """A named check a scenario makes about the server's behaviour."""

    name: str
    ok: bool
    detail: str = ""


def phase_ok(errors: int, allowed: int | None, checks: Sequence[Expectation]) -> bool:
    """A phase passes when its errors are within bound (None: unbounded) and every check holds."""
    return (allowed is None or errors <= allowed) and all(c.ok for c in checks)


def latency_within(phase_p99: float, baseline_p99: float, factor: float, floor_ms: float) -> bool:
    """Whether a phase's p99 stayed within ``factor`` x the baseline's, or ``floor_ms`` above it."""
    return phase_p99 <= max(baseline_p99 * factor, baseline_p99 + floor_ms)


def cross_checks(
    client_ok: int,
    server: dict[str, Any] | None,
    kills: int,
    hangs: int,
    peak_rps: float = 0.0,
) -> list[Expectation]:
    """The client's view against the server's /stats deltas (``None``: stats unavailable).

    A worker publishes what it served every ``PUBLISH_AFTER_S``; one killed by a signal it
    cannot handle loses its last batch, so each kill and hang may hide up to that long of the
    fleet's peak rate (``peak_rps``) from the server's count."""
    if server is None:
        return []
    server_2xx = int(server["by_status"].get("2xx", 0))
    restarts = int(server["restarts"])
    lost = math.ceil((kills + hangs) * peak_rps * PUBLISH_AFTER_S)
    slack = f" (+ up to {lost} unpublished by killed workers)" if lost else ""
    return [
        Expectation(
            "client 2xx <= server 2xx",
            client_ok <= server_2xx + lost,
            f"client {client_ok}, server +{server_2xx}{slack}",
        ),
        Expectation(
            "server restarts >= kills + hangs",
            restarts >= kills + hangs,
            f"restarts +{restarts}, kills {kills}, hangs {hangs}",
        ),
    ]


def stats_delta(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """``after - before`` of the /stats totals chaos reports: requests, by_status, restarts,
    recycles by reason."""

    def sub(key: str) -> dict[str, int]:
        return {k: int(v) - int(before[key].get(k, 0)) for k, v in after[key].items()}

    return {
        "requests": int(after["requests"]) - int(before["requests"]),
        "by_status": sub("by_status"),
        "restarts": int(after["restarts"]) - int(before["restarts"]),
        "recycles": sub("recycles"),
    }


def settled_stats(target: Target, timeout_s: float = 1.0) -> dict[str, Any] | None:
    """/stats once its request total holds still across two reads 20 ms apart (the load has
    stopped; workers publish what they counted within ~5 ms), or the last read at the deadline."""
    deadline = time.monotonic() + timeout_s
    doc = target.stats()
    while doc is not None and time.monotonic() < deadline:
        time.sleep(0.02)
        again = target.stats()
        if again is None or again["totals"]["requests"] == doc["totals"]["requests"]:
            return again or doc
        doc = again
    return doc


# ----------------------------------------------------------------------- /proc (parsing pure)


def established_inodes(proc_net_tcp: str, port: int) -> set[int]:
    """Socket inodes of ESTABLISHED (state 01) entries whose local port is ``port``."""
    out: set[int] = set()
    for line in proc_net_tcp.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 10 or fields[3] != "01":
            continue
        local_port = int(fields[1].rpartition(":")[2], 16)
        if local_port == port:
            out.add(int(fields[9]))
    return out


def socket_inodes(pid: int) -> set[int]:
    """Inodes of the sockets ``pid`` holds open (empty when /proc/PID/fd is unreadable)."""
    out: set[int] = set()
    try:
        names = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return out
    for name in names:
        with contextlib.suppress(OSError):
            link = os.readlink(f"/proc/{pid}/fd/{name}")
            if link.startswith("socket:["):
                out.add(int(link[8:-1]))
    return out


def established_connections(pid: int, port: int) -> int | None:
    """How many client connections on ``port`` the worker ``pid`` holds right now."""
    try:
        text = "".join(Path(f"/proc/{pid}/net/{n}").read_text() for n in ("tcp", "tcp6"))
    except OSError:
        return None
    held = socket_inodes(pid)
    return len(held & established_inodes(text, port)) if held else None


def _parent_and_cmdline(pid: int) -> tuple[int, str]:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return -1, ""
    return int(stat.rsplit(")", 1)[1].split()[1]), cmd.replace(b"\0", b" ").decode(errors="replace")


def worker_pids(master: int) -> list[int]:
    """The master's direct children that are workers (not its zygote), from /proc."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            ppid, cmd = _parent_and_cmdline(int(entry))
            if ppid == master and WORKER_TAG in cmd:
                out.append(int(entry))
    return sorted(out)


def is_worker_of(pid: int, master: int) -> bool:
    ppid, cmd = _parent_and_cmdline(pid)
    return ppid == master and WORKER_TAG in cmd


def wait_until(predicate: Callable[[], bool], deadline: float) -> bool:
    """Poll ``predicate`` until it holds or ``deadline`` (monotonic) passes."""
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(POLL_S)


# ---------------------------------------------------------------------------- the target


@dataclass
class Target:
    """The master under test: its pid, the URL to load, its stats address, and (when chaos
    started it) the process and log to clean up."""

    pid: int
    url: str
    stats_addr: str | None
    workers: int = 0
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    @property
    def port(self) -> int:
        return urlsplit(self.url).port or 80

    def worker_pids(self) -> list[int]:
        return worker_pids(self.pid)

    def alive(self) -> bool:
        if self.proc is not None:
            return self.proc.poll() is None
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def signal(self, sig: int) -> None:
        try:
            os.kill(self.pid, sig)
        except ProcessLookupError:
            raise ChaosError(f"the master (pid {self.pid}) is gone") from None

    def stats(self) -> dict[str, Any] | None:
        """/stats as a dict, or None when there is no stats server or it did not answer."""
        if self.stats_addr is None:
            return None
        host, _, port = self.stats_addr.rpartition(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=HTTP_TIMEOUT_S)
        try:
            conn.request("GET", "/stats")
            resp = conn.getresponse()
            body = resp.read()
            return json.loads(body) if resp.status == 200 else None  # type: ignore[no-any-return]
        except (OSError, ValueError, http.client.HTTPException):
            return None
        finally:
            conn.close()

    def log_tail(self, lines: int = 20) -> str:
        if self.log_path is None:
            return ""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def serve_command(opts: argparse.Namespace, ready_fd: int, bloat: bool) -> list[str]:
    """``corral serve`` as chaos starts it: port 0, stats on, short timeout; user args last."""
    cmd = [sys.executable, "-m", "corral", "serve"]
    cmd += [opts.app] if opts.app else []
    cmd += ["-b", "127.0.0.1:0", "-w", str(opts.workers), "--stats", "127.0.0.1:0"]
    cmd += ["--ready-fd", str(ready_fd), "--timeout-s", f"{opts.worker_timeout_s:g}"]
    if bloat:
        cmd += ["--max-worker-memory-mib", f"{opts.bloat_limit_mib:g}"]
        cmd += ["--min-worker-lifetime-s", "1", "--memory-sample-s", "0.5"]
    return cmd + list(opts.serve_arg)


def start_server(build: Callable[[int], list[str]], log_path: Path) -> Target:
    """Start ``build(ready_fd)`` in its own session; wait (bounded) for the ready line and the
    stats address."""
    ready_r, ready_w = os.pipe()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            build(ready_w),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            pass_fds=(ready_w,),
            start_new_session=True,
            env=env,
        )
    os.close(ready_w)
    target = Target(proc.pid, "", None, proc=proc, log_path=log_path)
    try:
        target.url = _read_ready(ready_r, proc, time.monotonic() + BOOT_TIMEOUT_S) + "/"
        target.stats_addr = _stats_from_log(log_path, time.monotonic() + 5.0)
    except ChaosError as exc:
        stop_server(target)
        raise ChaosError(f"{exc}\n{target.log_tail()}") from None
    finally:
        os.close(ready_r)
    return target


def _read_ready(fd: int, proc: subprocess.Popen[bytes], deadline: float) -> str:
    buf = b""
    while b"\n" not in buf:
        left = deadline - time.monotonic()
        if left <= 0 or proc.poll() is not None:
            raise ChaosError(f"corral serve did not become ready (exit status {proc.poll()})")
        readable, _, _ = select.select([fd], [], [], min(left, 0.5))
        if readable:
            chunk = os.read(fd, 1024)
            if not chunk and proc.poll() is not None:
                continue
            buf += chunk
    line = buf.decode(errors="replace").split("\n")[0].split()
    if len(line) < 2 or line[0] != "ready":
        raise ChaosError(f"unexpected ready line {buf!r}")
    return line[1]


_STATS_LOG = re.compile(r"stats on http://(\S+?)\)")


def _stats_from_log(log_path: Path, deadline: float) -> str | None:
    """The stats address from the master's ready log line (it is logged before the fd write)."""
    while True:
        match = _STATS_LOG.search(log_path.read_text(errors="replace"))
        if match is not None:
            return match.group(1)
        if time.monotonic() >= deadline:
            return None
        time.sleep(POLL_S)


def stop_server(target: Target) -> int | None:
    """TERM the master, wait, then KILL its whole session; returns its exit status."""
    proc = target.proc
    if proc is None:
        return None
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=STOP_GRACE_S)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)  # the session: anything the master left behind
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5.0)
    return proc.poll()


def attach(pid: int, url: str, stats_addr: str | None) -> Target:
    """A running master: it must exist and have workers."""
    target = Target(pid, url if url.endswith("/") else url + "/", stats_addr)
    if not target.alive():
        raise ChaosError(f"no process {pid}")
    target.workers = len(target.worker_pids())
    if target.workers == 0:
        raise ChaosError(f"process {pid} has no '{WORKER_TAG}' children: is it a corral master?")
    return target


# ------------------------------------------------------------------------- load in a thread


class LoadThread:
    """``run_load`` in a thread; ``t0`` (the run's start, monotonic) is learnt from progress."""

    def __init__(self, config: LoadConfig) -> None:
        self.config = config
        self.stop = threading.Event()
        self.started = threading.Event()
        self.t0 = 0.0
        self.result: LoadResult | None = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="chaos-load", daemon=True)

    def _progress(self, p: Progress) -> None:
        if not self.started.is_set():
            self.t0 = time.monotonic() - p.elapsed_s
            self.started.set()

    def _run(self) -> None:
        try:
            self.result = run_load(self.config, stop=self.stop, on_progress=self._progress)
        except BaseException as exc:  # reported by the main thread
            self.error = exc
        finally:
            self.started.set()

    def finish(self, timeout: float) -> LoadResult | None:
        self.stop.set()
        self.thread.join(timeout)
        return self.result


# ------------------------------------------------------------------------ scenarios (impure)


@dataclass
class Facts:
    """What a scenario did and expects: its error bound, its checks, notes for the report."""

    allowed: int | None = 0
    checks: list[Expectation] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    kills: int = 0
    hangs: int = 0
    p99_factor: float | None = None  # slowloris: compare this phase's p99 to the baseline's


@dataclass
class Session:
    """Shared state of one chaos session: the target, options, deadline and cleanup duties."""

    target: Target
    opts: argparse.Namespace
    deadline: float
    stopped: set[int] = field(default_factory=set)  # pids we SIGSTOPped and must SIGCONT
    sockets: list[socket.socket] = field(default_factory=list)
    rng: random.Random = field(default_factory=random.Random)

    def within(self, seconds: float) -> float:
        return min(time.monotonic() + seconds, self.deadline)

    def pause_until(self, when: float) -> None:
        """Let time pass until ``when`` (a phase boundary), never past the session deadline."""
        delay = min(when, self.deadline) - time.monotonic()
        if delay > 0:
            time.sleep(delay)

    def count_is(self, n: int) -> Callable[[], bool]:
        return lambda: len(self.target.worker_pids()) == n

    def restored(self, seconds: float = VERIFY_TIMEOUT_S) -> Expectation:
        n = self.target.workers
        ok = wait_until(self.count_is(n), self.within(seconds))
        return Expectation(f"{n} workers again", ok, f"now {len(self.target.worker_pids())}")

    def recycles(self, reason: str) -> int | None:
        doc = self.target.stats()
        return None if doc is None else int(doc["totals"]["recycles"].get(reason, 0))

    def connections_of(self, pid: int) -> int:
        """The kill bound for ``pid``: /proc's count, /stats' if larger, ``-c`` if neither."""
        counts = [established_connections(pid, self.target.port)]
        doc = self.target.stats()
        if doc is not None:
            counts += [w["connections"] for w in doc["workers"] if w["pid"] == pid]
        known = [c for c in counts if c is not None]
        return max(known) if known else int(self.opts.connections)

    def pick_worker(self) -> int | None:
        """A random worker among those holding client connections (a fault on an idle worker
        proves little), or among all when none does."""
        pids = self.target.worker_pids()
        busy = [p for p in pids if (established_connections(p, self.target.port) or 0) > 0]
        return self.rng.choice(busy or pids) if pids else None

    def cleanup(self) -> None:
        for pid in sorted(self.stopped):
            if is_worker_of(pid, self.target.pid):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGCONT)
        self.stopped.clear()
        for sock in self.sockets:
            sock.close()
        self.sockets.clear()


def run_kill(s: Session, spec: ScenarioSpec, start: float, end: float) -> Facts:
    """SIGKILL a busy worker (once or every ``spec.arg`` s); bound: the connections held."""
    facts = Facts(allowed=0)
    for when in action_times(start, end, spec.arg):
        s.pause_until(when)
        if not wait_until(s.count_is(s.target.workers), s.within(VERIFY_TIMEOUT_S)):
            facts.checks.append(Expectation("worker to kill", False, "fleet not at full strength"))
            break
        pid = s.pick_worker()
        if pid is None:
            break
        held = s.connections_of(pid)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        facts.kills += 1
        facts.allowed = (facts.allowed or 0) + held
        facts.notes.append(f"killed {pid} holding {held} connections")
    facts.checks.append(s.restored())
    return facts


def run_hang(s: Session, spec: ScenarioSpec, start: float, end: float) -> Facts:
    """SIGSTOP a busy worker; the master must kill and replace it after its timeout."""
    s.pause_until(start)
    before = s.recycles("timeout")
    pid = s.pick_worker()
    if pid is None:
        return Facts(checks=[Expectation("worker to stop", False, "no worker")])
    held = s.connections_of(pid)
    s.stopped.add(pid)  # before the signal: cleanup must SIGCONT it whatever happens next
    try:
        os.kill(pid, signal.SIGSTOP)
    except ProcessLookupError:
        return Facts(checks=[Expectation("worker to stop", False, f"{pid} exited first")])
    stopped_at = time.monotonic()
    wait_s = float(s.opts.hang_wait_s)
    gone = wait_until(lambda: not is_worker_of(pid, s.target.pid), s.within(wait_s))
    took = f"after {time.monotonic() - stopped_at:.1f} s" if gone else f"not in {wait_s:g} s"
    notes = [f"stopped {pid} holding {held} connections"]
    facts = Facts(allowed=held, hangs=int(gone), notes=notes)
    facts.checks.append(Expectation("hung worker replaced", gone, took))
    if gone:
        s.stopped.discard(pid)
    facts.checks.append(s.restored())
    after = s.recycles("timeout")
    if before is not None and after is not None:
        facts.checks.append(Expectation("timeout recycle", after > before, f"+{after - before}"))
    return facts


def http_get(url: str, timeout: float) -> int:
    """One GET with its own connection; the status, or 0 when no response came."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port or 80, timeout=timeout)
    try:
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        conn.request("GET", path)
        resp = conn.getresponse()
        resp.read()
        return resp.status
    except (OSError, http.client.HTTPException):
        return 0
    finally:
        conn.close()


def bloat_url(s: Session) -> str:
    """``--bloat-url`` (a path on the target, or a whole URL), else the demo app's hook."""
    given = s.opts.bloat_url or f"/__bloat?mib={s.opts.bloat_mib}"
    if given.startswith("http://"):
        return str(given)
    return s.target.url.rstrip("/") + (given if given.startswith("/") else "/" + given)


def run_bloat(s: Session, spec: ScenarioSpec, start: float, end: float) -> Facts:
    """Grow a worker past the memory limit; a 'memory' recycle must follow, 0 errors."""
    s.pause_until(start)
    before = s.recycles("memory")
    if before is None:
        return Facts(checks=[Expectation("memory recycle", False, "no /stats to verify with")])
    url = bloat_url(s)
    statuses: list[int] = []
    deadline = s.within(float(s.opts.bloat_wait_s))
    recycled = False
    while not recycled and time.monotonic() < deadline and len(statuses) < 10:
        statuses.append(http_get(url, DEFAULT_REQUEST_TIMEOUT_S))
        recycled = wait_until(lambda: (s.recycles("memory") or 0) > before, s.within(3.0))
    facts = Facts(allowed=0, notes=[f"GET {url} x{len(statuses)}: {statuses}"])
    facts.checks.append(Expectation("bloat request answered", 200 in statuses, str(statuses)))
    delta = (s.recycles("memory") or before) - before
    facts.checks.append(Expectation("memory recycle", recycled, f"+{delta}"))
    facts.checks.append(s.restored())
    return facts


def run_reload(s: Session, spec: ScenarioSpec, start: float, end: float) -> Facts:
    """SIGHUP (once or every ``spec.arg`` s); 0 errors and every old worker replaced."""
    old: set[int] = set()
    facts = Facts(allowed=0)
    for when in action_times(start, end, spec.arg):
        s.pause_until(when)
        old |= set(s.target.worker_pids())
        s.target.signal(signal.SIGHUP)
        facts.notes.append(f"HUP at +{when - start:.1f} s")

    def replaced() -> bool:
        now = set(s.target.worker_pids())
        return len(now) == s.target.workers and not now & old

    ok = wait_until(replaced, s.within(VERIFY_TIMEOUT_S + float(s.opts.phase_s)))
    facts.checks.append(Expectation("every old worker replaced", ok, f"{len(old)} old workers"))
    return facts


def run_scale(s: Session, spec: ScenarioSpec, start: float, end: float) -> Facts:
    """SIGTTIN, serve half the phase with N + 1, SIGTTOU; 0 errors, the count follows."""
    s.pause_until(start)
    n = s.target.workers
    s.target.signal(signal.SIGTTIN)
    up = wait_until(s.count_is(n + 1), s.within(VERIFY_TIMEOUT_S))
    s.pause_until(max(time.monotonic(), (start + end) / 2))  # serve a while with n + 1
    s.target.signal(signal.SIGTTOU)
    down = wait_until(s.count_is(n), s.within(VERIFY_TIMEOUT_S))
    return Facts(
        allowed=0,
        checks=[
            Expectation(f"TTIN -> {n + 1} workers", up),
            Expectation(f"TTOU -> {n} workers", down),
        ],
    )


def open_slowloris(s: Session, n: int, until: float) -> int:
    """Open up to ``n`` connections (by ``until``), each with a request head begun and never
    finished."""
    parts = urlsplit(s.target.url)
    head = f"GET / HTTP/1.1\r\nHost: {parts.netloc}\r\n".encode()
    for _ in range(n):
        if time.monotonic() >= min(until, s.deadline):
            break
        try:
            sock = socket.create_connection((parts.hostname, parts.port or 80), timeout=2.0)
        except OSError:
            break
        s.sockets.append(sock)
        with contextlib.suppress(OSError):
            sock.sendall(head)
            sock.setblocking(False)
    return len(s.sockets)


def trickle(s: Session, until: float, every_s: float = 1.0) -> int:
    """One header byte per socket every ``every_s`` until ``until``; how many the server closed."""
    closed: set[int] = set()
    while time.monotonic() < min(until, s.deadline):
        for i, sock in enumerate(s.sockets):
            if i in closed:
                continue
            try:
                if sock.recv(1024) == b"":
                    closed.add(i)
                    continue
            except BlockingIOError:
                pass
            except OSError:
                closed.add(i)
                continue
            try:
                sock.send(b"X")  # one more byte of a header line that never ends
            except BlockingIOError:
                pass  # buffer full: the server is not reading, which is the point
            except OSError:
                closed.add(i)
        s.pause_until(min(time.monotonic() + every_s, until))
    return len(closed)


def run_slowloris(s: Session, spec: ScenarioSpec, start: float, end: float) -> Facts:
    """Slow partial heads for the phase; normal load: 0 errors, p99 near the baseline."""
    s.pause_until(start)
    want = int(spec.arg) if spec.arg is not None else int(s.opts.slowloris_n)
    opened = open_slowloris(s, want, end)
    closed = trickle(s, end)
    s.cleanup()  # close them now: the phase's last second should see the recovery too
    notes = [f"{opened}/{want} slow connections opened, {closed} closed by the server"]
    return Facts(allowed=0, notes=notes, p99_factor=float(s.opts.slowloris_p99_factor))


RUNNERS: dict[str, Callable[[Session, ScenarioSpec, float, float], Facts]] = {
    "kill": run_kill,
    "hang": run_hang,
    "bloat": run_bloat,
    "reload": run_reload,
    "scale": run_scale,
    "slowloris": run_slowloris,
}


# ------------------------------------------------------------------------------- the session


@dataclass
class Phase:
    """One phase: where it sits in the run (whole seconds from t0) and what its scenario did."""

    label: str
    start_s: int
    end_s: int | None
    facts: Facts
    stats: WindowStats = field(default_factory=WindowStats)
    sla: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return phase_ok(self.stats.error_total, self.facts.allowed, self.facts.checks)


@dataclass
class Report:
    """Everything the session found; rendered as text or JSON."""

    target: str
    workers: int
    connections: int
    rate: float | None
    phases: list[Phase]
    totals: WindowStats
    duration_s: float
    sla: list[Check]
    server: dict[str, Any] | None
    cross: list[Expectation]
    problems: list[str]

    @property
    def ok(self) -> bool:
        return (
            all(p.ok for p in self.phases)
            and all_met(self.sla)
            and all(c.ok for c in self.cross)
            and not self.problems
        )


def run_phases(
    s: Session, load: LoadThread, specs: list[ScenarioSpec], say: PROGRESS
) -> list[Phase]:
    """Baseline, then each scenario, each on whole seconds of the load run's clock."""
    length = max(1, math.ceil(float(s.opts.phase_s)))
    phases = [Phase("baseline", 0, length, Facts(allowed=0))]
    say(f"baseline: seconds 0-{length}")
    for spec in specs:
        start_s = phases[-1].end_s or 0
        if time.monotonic() + length >= s.deadline:
            phases.append(Phase(spec.label, start_s, start_s, Facts(checks=[_skipped()])))
            continue
        s.pause_until(load.t0 + start_s)
        say(f"{spec.label}: from second {start_s}")
        begin = load.t0 + start_s
        facts = _run_one(s, spec, begin + ACT_DELAY_S, begin + length)
        end_s = max(start_s + length, math.ceil(time.monotonic() - load.t0) + SETTLE_S)
        phases.append(Phase(spec.label, start_s, end_s, facts))
        if not s.target.alive():
            facts.checks.append(Expectation("master alive", False, "the master exited"))
            break
    s.pause_until(load.t0 + (phases[-1].end_s or 0))
    phases[-1].end_s = None  # the last phase keeps the tail second the stop leaves
    return phases


def _run_one(s: Session, spec: ScenarioSpec, start: float, end: float) -> Facts:
    """One scenario; a target that vanished under it fails the phase instead of the session."""
    try:
        return RUNNERS[spec.name](s, spec, start, end)
    except ChaosError as exc:
        return Facts(checks=[Expectation("ran", False, str(exc))])
    finally:
        s.cleanup()


def _skipped() -> Expectation:
    return Expectation("ran", False, "skipped: --max-time-s reached")


def finish_report(
    s: Session,
    phases: list[Phase],
    result: LoadResult,
    objectives: tuple[Objective, ...],
    server: dict[str, Any] | None,
    problems: list[str],
) -> Report:
    """Attribute the series to phases and evaluate every expectation, SLA and cross-check."""
    for phase in phases:
        phase.stats = window_stats(result.series, phase.start_s, phase.end_s)
        phase.sla = evaluate(objectives, phase.stats.measures()) if objectives else []
    _slowloris_latency(phases)
    totals = window_stats(result.series, 0, None)
    kills = sum(p.facts.kills for p in phases)
    hangs = sum(p.facts.hangs for p in phases)
    opts = s.opts
    return Report(
        target=s.target.url,
        workers=s.target.workers,
        connections=int(opts.connections),
        rate=opts.rate,
        phases=phases,
        totals=totals,
        duration_s=result.duration_s,
        sla=evaluate(objectives, totals.measures()) if objectives else [],
        server=server,
        cross=cross_checks(
            totals.ok_responses,
            server,
            kills,
            hangs,
            peak_rps=max((sec.requests for sec in result.series), default=0),
        ),
        problems=problems + [f"load generator: {f}" for f in result.worker_failures],
    )


def _slowloris_latency(phases: list[Phase]) -> None:
    base = phases[0].stats.latency_ms(99)
    for phase in phases[1:]:
        factor = phase.facts.p99_factor
        if factor is not None:
            p99 = phase.stats.latency_ms(99)
            ok = latency_within(p99, base, factor, SLOWLORIS_P99_FLOOR_MS)
            detail = f"{p99:.2f} ms vs baseline {base:.2f} ms (x{factor:g} or +50 ms)"
            phase.facts.checks.append(Expectation("p99 near baseline", ok, detail))


def load_config(target: Target, opts: argparse.Namespace, max_time_s: float) -> LoadConfig:
    path = opts.path if opts.path.startswith("/") else "/" + opts.path
    return LoadConfig(
        urls=(target.url.rstrip("/") + path,),
        connections=opts.connections,
        rate=opts.rate,
        duration_s=max_time_s,
        timeout_s=opts.request_timeout_s,
        max_time_s=max_time_s + 5.0,
    )


def planned_max_time(opts: argparse.Namespace, specs: list[ScenarioSpec]) -> float:
    """The session's hard bound: as given, or the phases plus generous verification time."""
    if opts.max_time_s is not None:
        return float(opts.max_time_s)
    per_phase = float(opts.phase_s) + VERIFY_TIMEOUT_S
    hang = sum(float(opts.hang_wait_s) for spec in specs if spec.name == "hang")
    return float(opts.phase_s) + per_phase * len(specs) + hang + 30.0


def run_session(
    target: Target,
    opts: argparse.Namespace,
    specs: list[ScenarioSpec],
    objectives: tuple[Objective, ...],
    say: PROGRESS,
) -> Report:
    """Load + phases + verdicts against a ready ``target``; always cleans up what it did."""
    max_time = planned_max_time(opts, specs)
    s = Session(target, opts, time.monotonic() + max_time, rng=random.Random(opts.seed))
    before = target.stats()
    load = LoadThread(load_config(target, opts, max_time))
    load.thread.start()
    problems: list[str] = []
    try:
        if not load.started.wait(10.0) or load.error is not None:
            raise ChaosError(f"the load generator did not start: {load.error}")
        phases = run_phases(s, load, specs, say)
    finally:
        s.cleanup()
        result = load.finish(timeout=max_time + 30.0)
    if result is None:
        raise ChaosError(f"the load generator failed: {load.error}")
    if time.monotonic() > s.deadline:
        problems.append(f"session overran --max-time-s {max_time:g}")
    after = settled_stats(target) if before else None
    server = stats_delta(before["totals"], after["totals"]) if before and after else None
    return finish_report(s, phases, result, objectives, server, problems)


# -------------------------------------------------------------------------------- rendering


def _fmt_ms(v: float) -> str:
    return f"{v:.2f}"


def phase_row(p: Phase) -> list[str]:
    st = p.stats
    window = f"{p.start_s}-{'end' if p.end_s is None else p.end_s}"
    bound = "-" if p.facts.allowed is None else str(p.facts.allowed)
    return [
        p.label,
        window,
        str(st.requests),
        str(st.failed),
        str(st.errors.get("non_2xx", 0)),
        _fmt_ms(st.latency_ms(50)),
        _fmt_ms(st.latency_ms(99)),
        bound,
        "ok" if p.ok else "FAIL",
    ]


def _table(rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        ).rstrip()
        for r in rows
    ]


def render_text(r: Report) -> str:
    """The human report: one row per phase, then details, server view, SLA and verdict."""
    mode = f"rate {r.rate:g}/s" if r.rate else f"-c {r.connections}"
    lines = [f"corral chaos: {r.target} ({r.workers} workers, {mode}, {r.duration_s:.1f} s)", ""]
    head = [
        "phase",
        "seconds",
        "requests",
        "failed",
        "non-2xx",
        "p50 ms",
        "p99 ms",
        "bound",
        "verdict",
    ]
    rows = [head, *(phase_row(p) for p in r.phases)]
    t = r.totals
    rows.append(
        [
            "total",
            "",
            str(t.requests),
            str(t.failed),
            str(t.errors.get("non_2xx", 0)),
            _fmt_ms(t.latency_ms(50)),
            _fmt_ms(t.latency_ms(99)),
            "",
            "",
        ]
    )
    lines += _table(rows)
    lines += ["", *_details(r)]
    lines.append(f"verdict: {'PASS' if r.ok else 'FAIL'}")
    return "\n".join(lines) + "\n"


def _details(r: Report) -> list[str]:
    out = []
    for p in r.phases:
        classes = ", ".join(f"{k} {v}" for k, v in sorted(p.stats.errors.items()) if v)
        parts = p.facts.notes + [
            f"{c.name}: {'ok' if c.ok else 'FAILED'} {c.detail}".rstrip() for c in p.facts.checks
        ]
        if classes:
            parts.append(f"errors: {classes}")
        parts += [f"sla {c.describe()}" for c in p.sla if not c.ok]
        out += [f"{p.label}: {'; '.join(parts)}"] if parts else []
    if r.server is not None:
        rec = ", ".join(f"{k} +{v}" for k, v in r.server["recycles"].items() if v) or "none"
        d = r.server
        out.append(
            f"server view: requests +{d['requests']} (2xx +{d['by_status'].get('2xx', 0)}),"
            f" restarts +{d['restarts']}, recycles {rec}"
        )
    else:
        out.append("server view: unavailable (no --stats)")
    out.append(
        f"client view: {r.totals.ok_responses} 2xx responses, {r.totals.failed} failed attempts"
    )
    out += [f"cross-check {c.name}: {'ok' if c.ok else 'FAILED'} ({c.detail})" for c in r.cross]
    out += [f"SLA {c.describe()}" for c in r.sla]
    out += [f"problem: {p}" for p in r.problems]
    return out


def _stats_dict(st: WindowStats) -> dict[str, Any]:
    m = st.measures()
    return {
        "seconds": st.seconds,
        "requests": st.requests,
        "failed": st.failed,
        "errors": {name: st.errors.get(name, 0) for name in ERROR_CLASSES},
        "error_total": st.error_total,
        "ok_responses": st.ok_responses,
        "rps": round(m.rps, 3),
        "latency_ms": {k: round(v, 3) for k, v in m.latency_ms.items()},
    }


def _check_dict(c: Check) -> dict[str, Any]:
    return {"objective": c.objective.text, "actual": c.actual, "ok": c.ok}


def _expect_dict(e: Expectation) -> dict[str, Any]:
    return {"name": e.name, "ok": e.ok, "detail": e.detail}


def report_dict(r: Report) -> dict[str, Any]:
    """The ``--json`` document (see docs/chaos.md)."""
    return {
        "target": r.target,
        "workers": r.workers,
        "connections": r.connections,
        "rate": r.rate,
        "duration_s": round(r.duration_s, 3),
        "phases": [
            {
                "scenario": p.label,
                "start_s": p.start_s,
                "end_s": p.end_s,
                **_stats_dict(p.stats),
                "allowed_errors": p.facts.allowed,
                "kills": p.facts.kills,
                "checks": [_expect_dict(c) for c in p.facts.checks],
                "notes": p.facts.notes,
                "sla": [_check_dict(c) for c in p.sla],
                "ok": p.ok,
            }
            for p in r.phases
        ],
        "totals": _stats_dict(r.totals),
        "server": r.server,
        "cross_checks": [_expect_dict(c) for c in r.cross],
        "sla": [_check_dict(c) for c in r.sla],
        "problems": r.problems,
        "ok": r.ok,
    }


# -------------------------------------------------------------------------------------- CLI

EPILOG = """\
scenarios (repeatable; each is one phase of --phase-s after a baseline phase):
  kill[:every_s]   SIGKILL a random worker (once, or every every_s); bound: its connections
  hang             SIGSTOP a worker; it must be replaced after the server's --timeout-s
  bloat            GET --bloat-url so a worker crosses --max-worker-memory-mib; a 'memory'
                   recycle must follow, with 0 failures
  reload[:every_s] SIGHUP the master; 0 failures, every old worker replaced
  scale            SIGTTIN then SIGTTOU; 0 failures, the worker count follows
  slowloris[:n]    n connections trickle a request head; 0 failures, p99 near baseline
  all              every scenario once, in that order
sla: comma-separated terms p50|p90|p99|p999|max < DURATION (us, ms, s), errors < N or N%,
  rps > N; evaluated on the whole run (exit code) and on each phase (reported).
exit: 0 pass, 1 a scenario, the SLA or a cross-check failed, 2 bad usage, 3 target error.
"""


class _Usage(Exception):
    """Stop parsing: bad usage (code 2, message for stderr) or --help done (code 0)."""

    def __init__(self, message: str, code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.code = code


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of exiting: cli.py owns the process's exit."""

    def error(self, message: str) -> Any:
        raise _Usage(message)

    def exit(self, status: int = 0, message: str | None = None) -> Any:
        raise _Usage(message or "", status)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="corral chaos",
        description="Fault scenarios against a corral master under load, with an SLA verdict.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _target_args(p.add_argument_group("target (start a server, or attach: --pid and --url)"))
    _load_args(p.add_argument_group("load"))
    _scenario_args(p.add_argument_group("scenarios"))
    out = p.add_argument_group("verdict and output")
    out.add_argument("--sla", metavar="TERMS", help='objectives, e.g. "p99<200ms,errors<0.1%%"')
    out.add_argument("--json", action="store_true", help="print the report as JSON")
    out.add_argument("--quiet", "-q", action="store_true", help="no progress lines on stderr")
    return p


def _target_args(g: argparse._ArgumentGroup) -> None:
    g.add_argument("--app", metavar="MODULE:APP", help="start corral serve APP ('' = demo app)")
    g.add_argument(
        "-w",
        "--workers",
        type=int,
        default=DEFAULT_WORKERS,
        metavar="N",
        help=f"workers of the started server (default {DEFAULT_WORKERS})",
    )
    g.add_argument(
        "--serve-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="extra corral serve argument, repeatable (write --serve-arg=--x=1)",
    )
    g.add_argument(
        "--worker-timeout-s",
        type=float,
        default=DEFAULT_WORKER_TIMEOUT_S,
        metavar="S",
        help="the started server's --timeout-s (default %(default)s)",
    )
    g.add_argument("--server-log", metavar="FILE", help="keep the started server's log here")
    g.add_argument("--pid", type=int, help="attach: the running master's pid")
    g.add_argument("--url", help="attach: the server's URL, http://127.0.0.1:PORT/")
    g.add_argument("--stats", metavar="HOST:PORT", help="attach: the master's stats server")


def _load_args(g: argparse._ArgumentGroup) -> None:
    g.add_argument(
        "-c",
        "--connections",
        type=int,
        default=DEFAULT_CONNECTIONS,
        metavar="N",
        help="client connections (default %(default)s)",
    )
    g.add_argument("--rate", type=float, metavar="RPS", help="open model: requests per second")
    g.add_argument("--path", default="/", help="path to load (default /)")
    g.add_argument(
        "--request-timeout-s",
        type=float,
        default=DEFAULT_REQUEST_TIMEOUT_S,
        metavar="S",
        help="per-request timeout (default %(default)s)",
    )


def _scenario_args(g: argparse._ArgumentGroup) -> None:
    g.add_argument(
        "--scenario",
        action="append",
        default=[],
        metavar="NAME[:ARG]",
        help="a fault phase (see below); repeatable",
    )
    g.add_argument(
        "--phase-s",
        type=float,
        default=DEFAULT_PHASE_S,
        metavar="S",
        help="length of each phase, baseline included (default %(default)s)",
    )
    g.add_argument(
        "--max-time-s",
        type=float,
        metavar="S",
        help="hard bound on the session (default: phases + 20 s each + 30 s)",
    )
    g.add_argument("--seed", type=int, help="seed for choosing victim workers")
    g.add_argument(
        "--hang-wait-s",
        type=float,
        metavar="S",
        help="time a hung worker has to be replaced (default: timeout + 10 s)",
    )
    g.add_argument(
        "--bloat-url",
        metavar="PATH|URL",
        help="request that grows a worker (default /__bloat?mib=N, the demo app's)",
    )
    g.add_argument(
        "--bloat-mib",
        type=int,
        default=DEFAULT_BLOAT_MIB,
        metavar="N",
        help="N for the default bloat URL (default %(default)s)",
    )
    g.add_argument(
        "--bloat-limit-mib",
        type=float,
        default=DEFAULT_BLOAT_LIMIT_MIB,
        metavar="M",
        help="the started server's --max-worker-memory-mib (default %(default)s)",
    )
    g.add_argument(
        "--bloat-wait-s",
        type=float,
        default=VERIFY_TIMEOUT_S,
        metavar="S",
        help="time the memory recycle has to happen (default %(default)s)",
    )
    g.add_argument(
        "--slowloris-n",
        type=int,
        default=DEFAULT_SLOWLORIS,
        metavar="N",
        help="slow connections when slowloris has no :n (default %(default)s)",
    )
    g.add_argument(
        "--slowloris-p99-factor",
        type=float,
        default=SLOWLORIS_P99_FACTOR,
        metavar="X",
        help="allowed p99 vs baseline under slowloris (default %(default)s, or +50 ms)",
    )


def parse_args(
    argv: list[str],
) -> tuple[argparse.Namespace, list[ScenarioSpec], tuple[Objective, ...]]:
    """Parse and cross-validate argv; ``_Usage`` for anything wrong."""
    opts = build_parser().parse_args(argv)
    specs = [spec for text in opts.scenario for spec in _scenario(text)]
    objectives = _sla(opts.sla) if opts.sla is not None else ()
    attach_mode = opts.pid is not None or opts.url is not None
    if attach_mode and (opts.pid is None or opts.url is None or opts.app is not None):
        raise _Usage("attach needs both --pid and --url, and no --app")
    if not attach_mode and opts.app is None:
        raise _Usage("give --app MODULE:APP (or --app '' for the demo) or --pid and --url")
    if any(sp.name == "bloat" for sp in specs) and attach_mode and opts.stats is None:
        raise _Usage("bloat verifies its recycle through /stats: give --stats")
    for name in ("workers", "connections", "slowloris_n", "bloat_mib"):
        if getattr(opts, name) < 1:
            raise _Usage(f"--{name.replace('_', '-')} must be at least 1")
    for name in ("phase_s", "worker_timeout_s", "request_timeout_s", "bloat_wait_s"):
        if not getattr(opts, name) > 0:
            raise _Usage(f"--{name.replace('_', '-')} must be greater than zero")
    if opts.hang_wait_s is None:
        base = opts.worker_timeout_s if not attach_mode else 30.0  # corral's default timeout
        opts.hang_wait_s = base + 10.0
    return opts, specs, objectives


def _scenario(text: str) -> list[ScenarioSpec]:
    try:
        return parse_scenario(text)
    except ValueError as exc:
        raise _Usage(str(exc)) from None


def _sla(text: str) -> tuple[Objective, ...]:
    try:
        return parse_sla(text)
    except SlaError as exc:
        raise _Usage(str(exc)) from None


@contextlib.contextmanager
def target_for(opts: argparse.Namespace, specs: list[ScenarioSpec]) -> Iterator[Target]:
    """The target to test: started here (and always stopped again) or attached to."""
    if opts.pid is not None:
        yield attach(opts.pid, opts.url, opts.stats)
        return
    bloat = any(sp.name == "bloat" for sp in specs)
    with tempfile.TemporaryDirectory(prefix="corral-chaos-") as tmp:
        log = Path(opts.server_log) if opts.server_log else Path(tmp) / "corral-serve.log"
        target = start_server(lambda fd: serve_command(opts, fd, bloat), log)
        target.workers = len(target.worker_pids())  # ready: all serve (--serve-arg may set -w)
        try:
            yield target
        finally:
            stop_server(target)


def main(argv: list[str], stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    """``corral chaos``: returns the exit code (never raises for usage or target errors)."""
    out, err = stdout or sys.stdout, stderr or sys.stderr
    try:
        opts, specs, objectives = parse_args(argv)
    except _Usage as exc:
        if exc.code == EXIT_USAGE:
            print(f"corral chaos: {exc}", file=err)
        return exc.code

    def say(msg: str) -> None:
        if not opts.quiet:
            print(f"chaos: {msg}", file=err, flush=True)

    try:
        with _term_interrupts():
            report = _session(opts, specs, objectives, say)
    except (ChaosError, BenchConfigError) as exc:
        print(f"corral chaos: {exc}", file=err)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("corral chaos: interrupted (cleanup done)", file=err)
        return EXIT_INTERRUPTED
    text = json.dumps(report_dict(report), indent=2) + "\n" if opts.json else render_text(report)
    out.write(text)
    return EXIT_OK if report.ok else EXIT_FAILED


def _session(
    opts: argparse.Namespace,
    specs: list[ScenarioSpec],
    objectives: tuple[Objective, ...],
    say: PROGRESS,
) -> Report:
    with target_for(opts, specs) as target:
        say(f"target {target.url} (master {target.pid}, {target.workers} workers)")
        report = run_session(target, opts, specs, objectives, say)
        status = stop_server(target)  # inside: a server that will not stop is a finding
        if status not in (None, 0):
            report.problems.append(f"corral serve exited with status {status} on TERM")
    return report


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


@contextlib.contextmanager
def _term_interrupts() -> Iterator[None]:
    """SIGTERM (a CI job cancelled) unwinds like ^C, so cleanup still stops the server chaos
    started in its own session and resumes any worker it stopped."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
