"""``run_load``: one engine in this process, or N forked engines whose results are merged.

With ``procs == 1`` the engine runs in the calling thread and reports each second straight
to the aggregator. With ``procs > 1`` the parent forks N children (fork, never spawn: the
plan and code are already in memory) and each child gets:

* its share -- connections and ``-n`` split evenly, and for the open model the arrivals
  ``k`` with ``k % N == index`` of the one global schedule (``schedule.py``);
* the same start time ``t0`` on ``CLOCK_MONOTONIC``, which every process shares, so second
  ``s`` means the same wall interval in every child and per-second slices merge exactly;
* a data pipe for length-prefixed pickled frames (one per second, then the summary), and a
  control pipe the child watches in its epoll set: the parent closing it (stop requested, or
  the parent died) makes the child stop, report and exit.

Children close every inherited descriptor but their two pipes, so a server socket owned by
the caller (a chaos scenario's listener) is never held open by a load generator, and they
ignore SIGINT: a terminal ^C reaches the parent, which asks them to stop. A child that
overruns the hard deadline is SIGKILLed and reported as a worker failure, never waited on.
"""

from __future__ import annotations

import gc
import os
import pickle
import resource
import select
import signal
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NoReturn

from corral.bench.config import LoadConfig, Plan, prepare
from corral.bench.engine import EngineSpec, run_engine
from corral.bench.result import (
    LoadResult,
    ProcSummary,
    Progress,
    SecondStats,
    build_result,
)
from corral.bench.schedule import split_evenly

ProgressCallback = Callable[[Progress], None]
STARTUP_S = 0.05  # head start for forking before the shared t0; later is caught up, not lost
KILL_GRACE_S = 5.0  # after the hard deadline, children still running are SIGKILLed
CHILD_FAILED = 70  # EX_SOFTWARE (sysexits.h)
FD_HEADROOM = 64  # descriptors beyond one per connection: pipes, epoll, the caller's own
_FRAME = struct.Struct("!I")


def run_load(
    config: LoadConfig,
    *,
    stop: threading.Event | None = None,
    on_progress: ProgressCallback | None = None,
) -> LoadResult:
    """Drive load as ``config`` says and return the merged result.

    ``stop`` ends the run early (checked every 50 ms); what was in flight is "abandoned".
    ``on_progress`` is called in the calling thread once per completed second with a
    ``Progress`` (the merged second, the series so far); an exception from it aborts the
    run. Raises ``BenchConfigError`` for a config that cannot run; connection failures are
    results, not exceptions.
    """
    plan = prepare(config)
    _ensure_fd_limit(max(split_evenly(config.connections, config.procs)))
    if config.procs == 1:
        return _run_inline(plan, stop, on_progress)
    return _run_forked(plan, stop, on_progress)


def _ensure_fd_limit(connections: int) -> None:
    """Raise the soft open-files limit (often 1024) toward the hard one if -c needs it; a
    connection that still cannot get a descriptor is counted as a connect error."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = connections + FD_HEADROOM
    if soft == resource.RLIM_INFINITY or soft >= want:
        return
    new_soft = want if hard == resource.RLIM_INFINITY else min(want, hard)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (new_soft, hard))
    except (OSError, ValueError):
        pass  # keep what we have


def make_specs(plan: Plan, t0: float) -> list[EngineSpec]:
    """Each process's share of ``plan``, all starting at ``t0``."""
    config = plan.config
    n = config.procs
    conns = split_evenly(config.connections, n)
    counts: list[int | None] = (
        [None] * n if config.requests is None else list(split_evenly(config.requests, n))
    )
    duration = config.effective_duration_s()
    end = None if duration is None else t0 + duration
    hard_end = t0 + config.hard_deadline_s()
    return [
        EngineSpec(plan, conns[i], counts[i], config.rate, i, n, t0, end, hard_end)
        for i in range(n)
    ]


@dataclass
class Aggregator:
    """Merges per-second slices from every process; publishes each second once all sent it."""

    nprocs: int
    t0: float
    on_progress: ProgressCallback | None
    seconds: dict[int, SecondStats] = field(default_factory=dict)
    received: list[int] = field(default_factory=list)  # per process: seconds received
    published: int = 0
    requests: int = 0
    errors: int = 0

    def __post_init__(self) -> None:
        self.received = [0] * self.nprocs

    def add(self, proc: int, stats: SecondStats) -> None:
        merged = self.seconds.get(stats.second)
        if merged is None:
            self.seconds[stats.second] = merged = SecondStats(stats.second)
        merged.merge(stats)
        self.requests += stats.requests
        self.errors += stats.error_total()
        self.received[proc] = max(self.received[proc], stats.second + 1)
        self._publish()

    def _publish(self) -> None:
        complete = min(self.received)
        while self.published < complete:
            second = self.seconds.setdefault(self.published, SecondStats(self.published))
            self.published += 1
            if self.on_progress is not None:
                series = [self.seconds[s] for s in range(self.published)]
                elapsed = time.monotonic() - self.t0
                self.on_progress(Progress(elapsed, self.requests, self.errors, second, series))


def _run_inline(
    plan: Plan, stop: threading.Event | None, on_progress: ProgressCallback | None
) -> LoadResult:
    t0 = time.monotonic()
    spec = make_specs(plan, t0)[0]
    agg = Aggregator(1, t0, on_progress)
    should_stop = stop.is_set if stop is not None else None
    summary = run_engine(spec, lambda s: agg.add(0, s), should_stop=should_stop)
    return _result(plan, summary, agg, t0, [])


def _result(
    plan: Plan, summary: ProcSummary, agg: Aggregator, t0: float, failures: list[str]
) -> LoadResult:
    config = plan.config
    return build_result(
        summary, agg.seconds, t0, config.connections, config.procs, config.rate, failures
    )


# ------------------------------------------------------------------ forked processes


@dataclass
class _Child:
    index: int
    pid: int
    data_fd: int
    ctrl_fd: int  # -1 once closed (stop sent)
    buffer: bytearray = field(default_factory=bytearray)
    summary: ProcSummary | None = None
    failure: str | None = None
    open: bool = True


def _run_forked(
    plan: Plan, stop: threading.Event | None, on_progress: ProgressCallback | None
) -> LoadResult:
    t0 = time.monotonic() + STARTUP_S + 0.01 * plan.config.procs
    specs = make_specs(plan, t0)
    agg = Aggregator(len(specs), t0, on_progress)
    children: list[_Child] = []
    try:
        for spec in specs:
            children.append(_fork(spec))
        _collect(children, agg, stop, t0 + plan.config.hard_deadline_s() + KILL_GRACE_S)
    finally:
        _reap(children)
    return _merge(plan, children, agg, t0)


def _fork(spec: EngineSpec) -> _Child:
    data_r, data_w = os.pipe()
    ctrl_r, ctrl_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        _child_main(spec, data_w, ctrl_r)
    os.close(data_w)
    os.close(ctrl_r)
    return _Child(spec.index, pid, data_r, ctrl_w)


def _child_main(spec: EngineSpec, data_fd: int, ctrl_fd: int) -> NoReturn:
    """The forked child: run the engine, stream frames to the parent, never return."""
    code = 0
    try:
        gc.freeze()  # the parent's objects are not ours to collect (or to close fds of)
        _reset_signals()
        _close_inherited_fds(keep={0, 1, 2, data_fd, ctrl_fd})

        def emit(stats: SecondStats) -> None:
            _write_frame(data_fd, ("second", stats))

        summary = run_engine(spec, emit, stop_fd=ctrl_fd)
        _write_frame(data_fd, ("summary", summary))
    except BaseException as exc:  # report anything, then leave without unwinding the parent's stack
        code = CHILD_FAILED
        try:
            _write_frame(data_fd, ("failure", f"{type(exc).__name__}: {exc}"))
        except BaseException:
            pass
    os._exit(code)


def _reset_signals() -> None:
    """The caller's Python handlers are not ours; ^C is the parent's to handle."""
    for sig in signal.valid_signals():
        try:
            if callable(signal.getsignal(sig)):
                signal.signal(sig, signal.SIG_DFL)
        except (OSError, ValueError):
            pass  # SIGKILL, SIGSTOP and friends
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _close_inherited_fds(keep: set[int]) -> None:
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass  # the fd listing /proc/self/fd itself, already gone


def _write_frame(fd: int, message: object) -> None:
    payload = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    data = memoryview(_FRAME.pack(len(payload)) + payload)
    while data:
        data = data[os.write(fd, data) :]


def _collect(
    children: list[_Child], agg: Aggregator, stop: threading.Event | None, deadline: float
) -> None:
    """Read frames until every child closed its pipe; stop or kill them as needed."""
    while any(c.open for c in children):
        if stop is not None and stop.is_set():
            _send_stop(children)
        if time.monotonic() > deadline:
            _kill_overrunning(children)
            return
        fds = {c.data_fd: c for c in children if c.open}
        poller = select.poll()  # not select(): the caller may hold fds numbered past 1023
        for fd in fds:
            poller.register(fd, select.POLLIN)
        for fd, _ in poller.poll(50):
            _read_child(fds[fd], agg)


def _send_stop(children: list[_Child]) -> None:
    for child in children:
        if child.ctrl_fd >= 0:
            os.close(child.ctrl_fd)
            child.ctrl_fd = -1


def _kill_overrunning(children: list[_Child]) -> None:
    for child in children:
        if child.open:
            os.kill(child.pid, signal.SIGKILL)
            child.failure = child.failure or "overran the hard deadline and was killed"
            _close_data(child)


def _read_child(child: _Child, agg: Aggregator) -> None:
    data = os.read(child.data_fd, 1 << 20)
    if not data:
        _close_data(child)
        return
    child.buffer += data
    while len(child.buffer) >= _FRAME.size:
        (size,) = _FRAME.unpack_from(child.buffer)
        if len(child.buffer) < _FRAME.size + size:
            break
        message = pickle.loads(child.buffer[_FRAME.size : _FRAME.size + size])
        del child.buffer[: _FRAME.size + size]
        _handle(child, message, agg)


def _handle(child: _Child, message: tuple[str, object], agg: Aggregator) -> None:
    kind, body = message
    if kind == "second" and isinstance(body, SecondStats):
        agg.add(child.index, body)
    elif kind == "summary" and isinstance(body, ProcSummary):
        child.summary = body
    else:
        child.failure = str(body)


def _close_data(child: _Child) -> None:
    if child.open:
        os.close(child.data_fd)
        child.open = False


def _reap(children: list[_Child]) -> None:
    """Never leave a child behind: kill what still runs, then wait for every pid."""
    for child in children:
        if child.open:
            os.kill(child.pid, signal.SIGKILL)
            _close_data(child)
        if child.ctrl_fd >= 0:
            os.close(child.ctrl_fd)
            child.ctrl_fd = -1
        _, status = os.waitpid(child.pid, 0)
        if child.summary is None and child.failure is None:
            child.failure = f"exited without a result ({_describe(status)})"


def _describe(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"killed by signal {os.WTERMSIG(status)}"
    return f"exit status {os.waitstatus_to_exitcode(status)}"


def _merge(plan: Plan, children: list[_Child], agg: Aggregator, t0: float) -> LoadResult:
    total = ProcSummary()
    failures: list[str] = []
    for child in children:
        if child.summary is not None:
            total.merge(child.summary)
        if child.failure is not None:
            failures.append(f"worker {child.index} (pid {child.pid}): {child.failure}")
    if total.ended == 0.0:
        total.ended = time.monotonic()
    return _result(plan, total, agg, t0, failures)
