"""The six scenarios, impure: each acts on the master (signals) or a worker (SIGKILL,
SIGSTOP, sockets) within its phase and returns ``Facts``: its error bound, its checks, notes.
``Session`` holds what they share (target, options, deadline) and what cleanup must undo
(stopped workers get SIGCONT, slowloris sockets close). Expectations follow docs/signals.md;
see docs/chaos.md for the table.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import os
import random
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from corral.chaos.spec import (
    DEFAULT_REQUEST_TIMEOUT_S,
    VERIFY_TIMEOUT_S,
    ScenarioSpec,
    action_times,
)
from corral.chaos.target import (
    Target,
    established_connections,
    is_worker_of,
    wait_until,
)
from corral.chaos.verdicts import Expectation
from corral.lifecycle import RecycleReason

MEMORY = RecycleReason.MEMORY

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

    def recycles(self, reason: RecycleReason) -> int | None:
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
    before = s.recycles(RecycleReason.TIMEOUT)
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
    after = s.recycles(RecycleReason.TIMEOUT)
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
    before = s.recycles(MEMORY)
    if before is None:
        return Facts(checks=[Expectation("memory recycle", False, "no /stats to verify with")])
    url = bloat_url(s)
    statuses: list[int] = []
    deadline = s.within(float(s.opts.bloat_wait_s))
    recycled = False
    while not recycled and time.monotonic() < deadline and len(statuses) < 10:
        statuses.append(http_get(url, DEFAULT_REQUEST_TIMEOUT_S))
        recycled = wait_until(lambda: (s.recycles(MEMORY) or 0) > before, s.within(3.0))
    facts = Facts(allowed=0, notes=[f"GET {url} x{len(statuses)}: {statuses}"])
    facts.checks.append(Expectation("bloat request answered", 200 in statuses, str(statuses)))
    delta = (s.recycles(RecycleReason.MEMORY) or before) - before
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
