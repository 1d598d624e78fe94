"""The arbiter's tick, driven without processes: a fake clock, fake scoreboard readings and fake
waitpid results in, the signals it sends and the spawn commands it writes out.

This is where a worker's fate is decided (respawn, boot failure, timeout, recycling, stop), so
these tests pin the decisions; the system tests in tests/system/test_master.py show the same
with real processes.
"""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from corral.config import Config, load
from corral.lifecycle import ExitReason, Lifecycle, Spawn, ZygoteMessage
from corral.master import exitcodes
from corral.master.arbiter import Arbiter
from corral.master.monitor import Monitor, MonitorInput, MonitorSettings
from corral.master.processes import Processes
from corral.master.workers import Generation, GenState, Recycle, WorkerRecord
from corral.memory.recycle import Metric
from corral.stats.protocol import WorkerState

pytestmark = pytest.mark.timeout(30)

ZYGOTE_PID = 900


def exited(code: int) -> int:
    """A wait status for a process that exited with ``code``."""
    return code << 8


def killed(sig: int) -> int:
    return int(sig)


class FakeProcesses(Processes):
    def __init__(self) -> None:
        self.signals: list[tuple[int, int]] = []
        self.commands: list[ZygoteMessage] = []
        self.exits: list[tuple[int, int]] = []

    def kill(self, pid: int, sig: int) -> None:
        self.signals.append((pid, sig))

    def reap(self) -> list[tuple[int, int]]:
        out, self.exits = self.exits, []
        return out

    def command(self, fd: int, msg: ZygoteMessage) -> None:
        self.commands.append(msg)


@dataclass
class FakeScoreboard:
    nslots: int = 16
    states: dict[int, WorkerState] = field(default_factory=dict)
    heartbeats: dict[int, float] = field(default_factory=dict)
    served: dict[int, int] = field(default_factory=dict)

    def reset(self, index: int, pid: int, worker_id: int, generation: int, now: float) -> None:
        self.states[index] = WorkerState.BOOTING
        self.heartbeats[index] = now
        self.served[index] = 0

    def set_pid(self, index: int, pid: int) -> None:
        pass

    def state(self, index: int) -> WorkerState:
        return self.states.get(index, WorkerState.EMPTY)

    def heartbeat(self, index: int) -> float:
        return self.heartbeats.get(index, 0.0)

    def requests(self, index: int) -> int:
        return self.served.get(index, 0)


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass
class Rig:
    arbiter: Arbiter
    procs: FakeProcesses
    board: FakeScoreboard
    clock: Clock

    def tick(self, advance: float = 0.1) -> None:
        self.clock.now += advance
        self.arbiter.tick(self.clock.now)

    def workers(self) -> list[WorkerRecord]:
        return list(self.arbiter.table.workers.values())

    def report_spawned(self) -> None:
        """The zygote's intermediates say which pid each commanded worker got."""
        for worker in self.workers():
            if not worker.pid:
                self.arbiter._on_spawned(worker.wid, 5000 + worker.wid)

    def all_ready(self) -> None:
        self.report_spawned()
        for worker in self.workers():
            self.board.states[worker.slot] = WorkerState.READY
            self.board.heartbeats[worker.slot] = self.clock.now
        self.tick()

    def heartbeat_all(self) -> None:
        for worker in self.workers():
            self.board.heartbeats[worker.slot] = self.clock.now

    def spawns(self) -> list[Spawn]:
        return [c for c in self.procs.commands if isinstance(c, Spawn)]


def config(**values: object) -> Config:
    return Config(**{**load(environ={}).values, "workers": 2, **values})


@pytest.fixture
def rig() -> Iterator[Rig]:
    yield from _rig(config())


def _rig(cfg: Config) -> Iterator[Rig]:
    clock, procs, board = Clock(), FakeProcesses(), FakeScoreboard()
    arbiter = Arbiter(cfg, procs=procs, clock=clock)
    arbiter.scoreboard = board  # type: ignore[assignment]
    arbiter.free_slots = list(range(board.nslots - 1, -1, -1))
    cmd_r, cmd_w = os.pipe()  # a real fd: the arbiter closes it to end a generation
    gen = Generation(1, ZYGOTE_PID, cmd_w, -1, clock())
    gen.state = GenState.SERVING
    arbiter.gens[1] = gen
    arbiter.current = gen
    started: list[int] = []

    def start_generation() -> Generation:  # would fork a zygote
        started.append(1)
        return gen

    arbiter._start_generation = start_generation  # type: ignore[method-assign]
    yield Rig(arbiter, procs, board, clock)
    assert not started, "a new generation was started"
    for fd in (cmd_r, gen.cmd_w):
        if fd >= 0:
            os.close(fd)


def test_boots_the_target_and_announces_ready(rig: Rig) -> None:
    rig.tick()
    assert [s.slot for s in rig.spawns()] == [0, 1]
    assert all(w.state is Lifecycle.BOOTING for w in rig.workers())
    assert rig.arbiter.phase == "booting"
    rig.all_ready()
    assert all(w.state is Lifecycle.READY for w in rig.workers())
    assert rig.arbiter.phase == "running"


def test_a_crash_is_logged_and_respawned_at_once(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    rig.tick()
    rig.all_ready()
    rig.clock.now += 5.0  # served a while: no backoff
    victim = rig.workers()[0]
    rig.procs.exits.append((victim.pid, exited(17)))
    rig.tick()
    assert victim.wid not in rig.arbiter.table.workers
    assert victim.state is Lifecycle.GONE
    assert len(rig.spawns()) == 3 and rig.spawns()[-1].slot == victim.slot
    assert "exited with code 17 (crash)" in caplog.text


def test_workers_that_never_boot_stop_the_master_with_code_3(rig: Rig) -> None:
    for _ in range(3):
        rig.tick()
        rig.report_spawned()
        rig.procs.exits += [(w.pid, exited(3)) for w in rig.workers()]
        rig.clock.now += 6.0  # past any respawn backoff
    rig.tick()
    rig.tick()
    assert rig.arbiter.phase == "stopping"
    assert rig.arbiter.exit_code == exitcodes.WORKER_BOOT_ERROR


def test_a_stuck_worker_gets_sigabrt_then_sigkill(rig: Rig) -> None:
    rig.tick()
    rig.all_ready()
    stuck = rig.workers()[0]
    timeout = rig.arbiter.cfg.timeout_s
    rig.clock.now += timeout + 1
    rig.board.heartbeats[rig.workers()[1].slot] = rig.clock.now
    rig.tick()
    assert rig.procs.signals == [(stuck.pid, signal.SIGABRT)]
    assert stuck.stop_reason is ExitReason.TIMEOUT
    rig.heartbeat_all()
    rig.tick(advance=5.0)  # the 2 s abort grace (+1) is over
    assert rig.procs.signals[-1] == (stuck.pid, signal.SIGKILL)


def test_max_requests_spawns_before_it_stops() -> None:
    for rig in _rig(config(max_requests=100)):
        rig.arbiter.monitor = _QuietMonitor(rig.arbiter.cfg)
        rig.tick()
        rig.all_ready()
        rig.clock.now += 10.0
        rig.heartbeat_all()
        old = rig.workers()[0]
        rig.board.served[old.slot] = 10_000
        rig.tick()
        assert old.state is Lifecycle.RETIRING and old.retire_reason is ExitReason.MAX_REQUESTS
        assert len(rig.spawns()) == 3 and not rig.procs.signals  # nothing stopped yet
        rig.tick()
        assert len(rig.spawns()) == 3  # one replacement at a time
        rig.heartbeat_all()
        rig.all_ready()  # the replacement is READY: now the old one drains
        assert rig.procs.signals == [(old.pid, signal.SIGTERM)]
        assert old.stopping


def test_term_that_arrives_with_the_exits_it_caused(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    """systemd's KillMode=control-group: TERM reaches master, zygote and workers at once. The
    master reaps the clean exits before its select saw its own TERM: none is a crash, and the
    zygote's death starts no new generation (the rig asserts that)."""
    rig.tick()
    rig.all_ready()
    sig_r, sig_w = os.pipe()
    os.set_blocking(sig_r, False)
    rig.arbiter.sig_r = sig_r
    try:
        os.write(sig_w, bytes([signal.SIGTERM]))
        rig.procs.exits = [(ZYGOTE_PID, killed(signal.SIGTERM))]
        rig.procs.exits += [(w.pid, exited(0)) for w in rig.workers()]
        caplog.set_level(logging.INFO, "corral.master")
        rig.tick()
    finally:
        os.close(sig_r)
        os.close(sig_w)
    assert rig.arbiter.phase == "stopping" and not rig.arbiter.table.workers
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text
    assert "exited with code 0 (shutdown)" in caplog.text
    assert rig.arbiter._finished()


def test_a_clean_exit_nobody_here_asked_for_is_no_crash(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    rig.tick()
    rig.all_ready()
    rig.clock.now += 5.0
    worker = rig.workers()[0]
    rig.procs.exits.append((worker.pid, exited(0)))
    rig.tick()
    assert "stopped by someone else" in caplog.text and "crash" not in caplog.text
    assert len(rig.spawns()) == 3  # still replaced: the master is not stopping


class _QuietMonitor(Monitor):
    """The real decisions without reading /proc of pids that do not exist."""

    def __init__(self, cfg: Config) -> None:
        super().__init__(MonitorSettings.from_config(cfg), seed=1)

    def _sample(self, worker: WorkerRecord, now: float, zygotes: object) -> None:
        pass


class _BrokenMonitor(Monitor):
    def __init__(self) -> None:
        super().__init__(MonitorSettings(1.0, Metric("uss"), 0, 0.0, 0), seed=1)
        self.broken = True
        self.calls = 0

    def tick(self, now: float, seen: MonitorInput) -> list[Recycle]:
        self.calls += 1
        if self.broken:
            raise OSError(24, "Too many open files")
        return []


def test_an_error_in_periodic_work_is_logged_once_and_supervision_goes_on(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    monitor = _BrokenMonitor()
    rig.arbiter.monitor = monitor
    rig.tick()
    rig.all_ready()
    for _ in range(30):
        rig.heartbeat_all()
        rig.tick()
    failures = [r for r in caplog.records if "memory monitoring failed" in r.getMessage()]
    assert len(failures) == 1 and "Too many open files" in caplog.text
    assert 1 < monitor.calls < 30  # retried, with backoff
    crashed = rig.workers()[0]  # supervision goes on: a crash is still seen and replaced
    rig.procs.exits.append((crashed.pid, exited(17)))
    rig.tick(advance=5.0)
    assert crashed.wid not in rig.arbiter.table.workers and len(rig.spawns()) == 3
    monitor.broken = False
    rig.tick(advance=10.0)
    assert "memory monitoring works again" in caplog.text


def test_ttou_drains_the_newest_worker_and_never_goes_below_one(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    rig.tick()
    rig.all_ready()
    rig.clock.now += 5.0
    crashed = rig.workers()[0]
    rig.procs.exits.append((crashed.pid, exited(17)))  # its replacement is the newest worker
    rig.tick()
    rig.all_ready()
    newest = max(rig.workers(), key=lambda w: w.spawned_at)
    assert newest.slot == crashed.slot and newest.wid != crashed.wid
    rig.procs.signals.clear()
    caplog.set_level(logging.INFO, "corral.master")

    rig.arbiter.on_signal(signal.SIGTTOU)
    assert rig.arbiter.target == 1
    assert rig.procs.signals == [(newest.pid, signal.SIGTERM)]
    assert newest.state is Lifecycle.STOPPING and newest.stop_reason is ExitReason.SCALE_DOWN
    rig.procs.exits.append((newest.pid, exited(0)))
    rig.tick()
    assert newest.wid not in rig.arbiter.table.workers
    assert len(rig.spawns()) == 3  # asked for: not replaced
    assert "exited with code 0 (scale-down)" in caplog.text

    rig.arbiter.on_signal(signal.SIGTTOU)
    rig.heartbeat_all()
    rig.tick()
    assert rig.arbiter.target == 1 and rig.procs.signals == [(newest.pid, signal.SIGTERM)]
    assert len(rig.workers()) == 1


def test_a_sigkill_nobody_sent_is_a_probable_oom_and_replaced(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    rig.tick()
    rig.all_ready()
    rig.clock.now += 5.0
    victim = rig.workers()[1]
    rig.procs.exits.append((victim.pid, killed(signal.SIGKILL)))
    rig.tick()
    assert victim.wid not in rig.arbiter.table.workers
    assert "probably the OOM killer" in caplog.text
    assert len(rig.spawns()) == 3 and rig.spawns()[-1].slot == victim.slot
