"""The master: owns the listeners, runs generations of zygotes and workers, and changes the fleet
(respawn, reload, recycle, scale, stop) without a client noticing.

Theory of operation.
- One loop. Signal handlers do nothing but let Python write the signal number to a wakeup pipe
  (``signal.set_wakeup_fd``); the loop reads the numbers and acts. Nothing is logged from a handler.
- A *generation* is a zygote (which imported the app) plus the workers it forked. HUP starts
  generation N+1 beside N; only when all of N+1's workers report READY on the scoreboard are N's
  workers told to drain (SIGTERM). If N+1 fails to import or boot, it is discarded and N serves on.
  The listeners stay open, so no connection is refused.
- Replacing one worker (max-requests, memory) is the same "spawn before kill": the replacement is
  READY before the old one stops accepting; one replacement at a time.
- Workers are adopted by the master (child subreaper), so ``waitpid`` here sees every exit and
  decodes it: crash, timeout, probable OOM (SIGKILL nobody here sent), boot failure, or a clean
  exit someone else asked for.
- Heartbeats come from each worker's own loop through its scoreboard slot; a stale one means the
  app is stuck: SIGABRT (faulthandler prints the stack), then SIGKILL, then a replacement.
- The arbiter is the only place that decides a worker's fate. Its helpers (``policy``, the
  memory ``Monitor``, the stats glue) get narrow inputs and return values; the tick applies them.
  Everything it does to other processes goes through ``Processes`` (kill, reap, command), so
  ``tick`` runs in unit tests against fakes (tests/unit/test_master_tick.py).
- Exits are interpreted only after the signals already pending are handled: when every process
  of the service is signalled at once (systemd's KillMode=control-group), the master's own TERM
  is known before the exits it caused, so none of them is taken for a crash.
- Each periodic step runs under a ``Guard``: an error in the master's own work is logged once and
  backed off, and supervision goes on.
"""

from __future__ import annotations

import logging
import os
import selectors
import signal
import socket
import time
from collections.abc import Callable
from typing import Any

from corral import hooks
from corral.config import Config
from corral.lifecycle import ExitReason, Failed, Lifecycle, Loaded, Spawn, Spawned, decode
from corral.logfiles import reopen_log_files
from corral.master import exitcodes, policy, sysdeps
from corral.master.devreload import watcher_for
from corral.master.guard import Guard
from corral.master.handoff import Handoff, Listener, open_listeners
from corral.master.listeners import Address
from corral.master.monitor import MemoryReport, Monitor, MonitorInput, MonitorSettings
from corral.master.processes import Processes
from corral.master.statsglue import StatsGlue, start_stats_server
from corral.master.stopping import WORKER_SIGNAL, ZYGOTE_STEPS, Step, StopSequence
from corral.master.workers import Generation, GenState, Recycle, WorkerRecord, WorkerTable
from corral.master.zygote import ZygoteContext, zygote_main
from corral.memory.recycle import jittered_max_requests
from corral.stats.protocol import WorkerState
from corral.stats.scoreboard import Scoreboard

log = logging.getLogger("corral.master")

TICK_S = 0.1
HANDLED_SIGNALS = (
    signal.SIGTERM,
    signal.SIGINT,
    signal.SIGQUIT,
    signal.SIGHUP,
    signal.SIGCHLD,
    signal.SIGTTIN,
    signal.SIGTTOU,
    signal.SIGUSR1,
    signal.SIGUSR2,
)
ABORT_GRACE_S = 2.0  # after SIGABRT a stuck worker gets this long to dump its stack


class Arbiter:
    def __init__(
        self,
        cfg: Config,
        *,
        procs: Processes | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.cfg = cfg
        self.procs = procs or Processes()
        self.clock = clock
        self.target = cfg.effective_workers()
        self.table = WorkerTable()
        self.gens: dict[int, Generation] = {}
        self.current: Generation | None = None
        self.next_gen: Generation | None = None
        self.reload_again = False
        self.phase = "booting"  # booting -> running -> stopping
        self.exit_code = exitcodes.OK
        self.stopping = StopSequence(cfg.shutdown_delay_s, cfg.graceful_timeout_s, ABORT_GRACE_S)
        self.next_wid = 1
        self.listeners: list[socket.socket] = []
        self.addresses: list[Address] = []
        self.pid = os.getpid()
        self.sel = selectors.DefaultSelector()
        self.sig_r = self.sig_w = -1
        self.stats: StatsGlue | None = None
        self.monitor: Monitor | None = None  # memory sampling + recycling decisions
        self.guards: dict[str, Guard] = {}
        self.handoff = Handoff(cfg.pidfile, cfg.reexec_stop_old, cfg.ready_fd, os.environ)
        self.opened: list[Listener] = []  # (bind text, socket, address), for a USR2 re-exec
        self.watcher = watcher_for(cfg.reload, cfg.chdir, cfg.reload_extra_files)  # --reload

    # ---- start -----------------------------------------------------------------------------
    def setup(self) -> None:
        """Bind listeners and build shared state; raises OSError/ValueError for the CLI."""
        self.opened = open_listeners(self.cfg.bind, self.cfg.backlog, self.handoff.passed)
        self.listeners = [sock for _, sock, _ in self.opened]
        self.addresses = [address for _, _, address in self.opened]
        self.scoreboard = Scoreboard.create(max(16, 4 * self.target + 8))
        self.free_slots = list(range(self.scoreboard.nslots - 1, -1, -1))
        self._setup_signals()
        self._setup_stats()
        self.monitor = Monitor(MonitorSettings.from_config(self.cfg))

    def _setup_signals(self) -> None:
        self.sig_r, self.sig_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(self.sig_w, warn_on_full_buffer=False)
        for sig in HANDLED_SIGNALS:
            signal.signal(sig, _noop_handler)
        self.sel.register(self.sig_r, selectors.EVENT_READ, lambda f, m: self._drain_signals())

    def _setup_stats(self) -> None:
        if not self.cfg.stats:
            return
        self.stats = start_stats_server(
            self.cfg.stats,
            self.scoreboard,
            allow_remote=self.cfg.stats_allow_remote,
            allowed_hosts=self.cfg.stats_allowed_hosts,
            healthy=lambda: self.phase != "stopping",
            memory=self._memory_report,
        )
        self.stats.register(self.sel)

    def _memory_report(self) -> MemoryReport | None:
        if self.monitor is None:
            return None
        return self.monitor.report(list(self.table.workers.values()))

    def run(self) -> int:
        sysdeps.set_title(f"corral master [{self.cfg.app or 'demo'}]")
        sysdeps.set_child_subreaper()
        if self.cfg.pidfile:
            sysdeps.write_pidfile(self.cfg.pidfile)
        self.current = self._start_generation()
        try:
            while not self._finished():
                for key, mask in self.sel.select(TICK_S):
                    self._guard(f"handling fd {key.fd}", key.data, key.fileobj, mask, pause=False)
                self.tick(self.clock())
        except BaseException:
            self.exit_code = exitcodes.ERROR  # never "exiting with code 0" on the way down
            raise
        finally:
            self._cleanup()
        return self.exit_code

    def _guard(
        self, name: str, step: Callable[..., object], *args: Any, pause: bool = True
    ) -> None:
        """Run one step of the loop under its last-resort guard (see corral.master.guard).
        An event handler is not paused: its fd would stay readable and the loop would spin."""
        guard = self.guards.get(name) or self.guards.setdefault(name, Guard(name, pause=pause))
        guard.run(self.clock(), lambda: step(*args))

    def _finished(self) -> bool:
        if self.phase != "stopping":
            return False
        return not self.table.workers and not any(g.zygote_alive for g in self.gens.values())

    # ---- generations -------------------------------------------------------------------------
    def _start_generation(self) -> Generation:
        number = max(self.gens, default=0) + 1
        cmd_r, cmd_w = os.pipe2(os.O_CLOEXEC)
        reply_r, reply_w = os.pipe2(os.O_CLOEXEC)
        ctx = ZygoteContext(
            cfg=self.cfg,
            generation=number,
            master_pid=self.pid,
            cmd_r=cmd_r,
            reply_w=reply_w,
            listeners=self.listeners,
            scoreboard=self.scoreboard,
            master_fds=[*self._master_fds(), cmd_w, reply_r],
        )
        pid = os.fork()
        if pid == 0:
            zygote_main(ctx)
        os.close(cmd_r)
        os.close(reply_w)
        os.set_blocking(reply_r, False)
        gen = Generation(number, pid, cmd_w, reply_r, self.clock())
        self.gens[number] = gen
        self.sel.register(reply_r, selectors.EVENT_READ, lambda f, m: self._on_reply(gen))
        sysdeps.set_title(f"corral master [{self.cfg.app or 'demo'}] gen {number}")
        log.info(
            "generation %d: zygote pid %d is loading %s",
            number,
            pid,
            self.cfg.app or "the demo app",
        )
        return gen

    def _master_fds(self) -> list[int]:
        fds = [self.sig_r, self.sig_w, self.sel.fileno()]
        fds += [g.cmd_w for g in self.gens.values() if g.cmd_w >= 0]
        fds += [g.reply_r for g in self.gens.values() if g.reply_r >= 0]
        if self.stats is not None:
            fds += self.stats.fds()
        return fds

    def _on_reply(self, gen: Generation) -> None:
        if gen.reply_r < 0:
            return
        try:
            data = os.read(gen.reply_r, 65536)
        except BlockingIOError:
            return
        if not data:
            self._close_reply(gen)
            return
        gen.buf += data
        while b"\n" in gen.buf:
            line, gen.buf = gen.buf.split(b"\n", 1)
            self._on_reply_line(gen, line)

    def _close_reply(self, gen: Generation) -> None:
        if gen.reply_r >= 0:
            self.sel.unregister(gen.reply_r)
            os.close(gen.reply_r)
            gen.reply_r = -1

    def _on_reply_line(self, gen: Generation, line: bytes) -> None:
        match decode(line):
            case Loaded(detail):
                log.info("generation %d: app loaded (%s)", gen.number, detail)
                gen.state = GenState.SERVING
            case Failed(message):
                gen.failure = message
                log.error("generation %d: %s", gen.number, message)
            case Spawned(wid, pid):
                self._on_spawned(wid, pid)

    def _on_spawned(self, wid: int, pid: int) -> None:
        worker = self.table.workers.get(wid)
        if worker is None:  # stopped before it was even reported
            self.procs.kill(pid, signal.SIGTERM)
            return
        worker.pid = pid
        self.table.by_pid[pid] = wid
        self.scoreboard.set_pid(worker.slot, pid)
        if worker.stopping:
            self.procs.kill(pid, signal.SIGTERM)
        status = self.table.early_exits.pop(pid, None)
        if status is not None:
            self._on_worker_exit(worker, status)

    # ---- workers -----------------------------------------------------------------------------
    def _spawn(self, gen: Generation, replaces: int = 0) -> WorkerRecord | None:
        if not self.free_slots or gen.cmd_w < 0:
            log.error("no free scoreboard slot for a new worker")
            return None
        now = self.clock()
        wid, slot = self.next_wid, self.free_slots.pop()
        self.next_wid += 1
        self.scoreboard.reset(slot, 0, wid, gen.number, now)
        limit = jittered_max_requests(
            self.cfg.max_requests, self.cfg.max_requests_jitter, seed=self.pid, worker_id=wid
        )
        worker = WorkerRecord(wid, slot, gen.number, now, limit, replaces=replaces)
        self.table.workers[wid] = worker
        try:
            self.procs.command(gen.cmd_w, Spawn(wid, slot))
        except OSError as exc:
            log.error("generation %d: zygote unreachable (%s)", gen.number, exc)
            self._forget(worker, None)
            return None
        return worker

    def event(self, kind: str, wid: int | None, detail: str = "") -> None:
        if self.stats is not None:
            self.stats.event(kind, wid, detail)

    def _stop(
        self,
        worker: WorkerRecord,
        reason: ExitReason,
        sig: int = signal.SIGTERM,
        *,
        again: bool = False,
    ) -> None:
        """Signal a worker to stop; ``again`` re-signals one already stopping (fast stop)."""
        if worker.stopping and not again:
            return
        worker.move(Lifecycle.STOPPING)
        worker.stop_reason = reason
        grace = self.cfg.graceful_timeout_s if sig == signal.SIGTERM else ABORT_GRACE_S
        worker.kill_at = self.clock() + grace + 1.0
        if worker.pid:
            self.procs.kill(worker.pid, sig)
        log.info("worker %d (pid %d) stopping: %s", worker.wid, worker.pid, reason)

    def replace(self, worker: WorkerRecord, reason: ExitReason) -> bool:
        """Spawn-before-kill: start a replacement; the old worker drains once it is READY."""
        gen = self.gens.get(worker.gen)
        if gen is None or gen is not self.current or not worker.serving:
            return False
        new = self._spawn(gen, replaces=worker.wid)
        if new is None:
            return False
        worker.move(Lifecycle.RETIRING)
        worker.retire_reason = reason
        log.info(
            "worker %d (pid %d) to be replaced (%s) by worker %d",
            worker.wid,
            worker.pid,
            reason,
            new.wid,
        )
        return True

    def replacing(self) -> bool:
        return any(w.retiring for w in self.table.workers.values())

    def _on_exit(self, pid: int, status: int) -> None:
        if self.handoff.on_exit(pid, status):
            return
        for gen in self.gens.values():
            if gen.zygote_pid == pid:
                self._on_zygote_exit(gen, status)
                return
        wid = self.table.by_pid.get(pid)
        if wid is None:  # not reported yet, or an orphan we adopted (as PID 1, say): bounded
            self.table.early_exits[pid] = status
            while len(self.table.early_exits) > 256:
                self.table.early_exits.pop(next(iter(self.table.early_exits)))
            return
        self._on_worker_exit(self.table.workers[wid], status)

    def _on_worker_exit(self, worker: WorkerRecord, status: int) -> None:
        hooks.child_exit(self.cfg, worker.wid, worker.pid)
        info = policy.decode_status(status)
        if not worker.stopping and (why := policy.stopped_itself(info)):
            worker.move(Lifecycle.STOPPING)  # a recycle, not a crash
            worker.stop_reason = why
        now = self.clock()
        gen = self.gens[worker.gen]
        stopping = worker.stopping
        reason = (
            worker.stop_reason
            if stopping and worker.stop_reason is not None
            else policy.exit_reason(info, asked_to_stop=False, timed_out=worker.timed_out)
        )
        level, message = policy.exit_message(info, reason, stopping and not worker.timed_out)
        log.log(level, "worker %d (pid %d) %s", worker.wid, worker.pid, message)
        if not worker.was_ready and not stopping:
            gen.boot_failures += 1
            log.error(
                "worker %d failed to boot (%d in generation %d)",
                worker.wid,
                gen.boot_failures,
                gen.number,
            )
        if not stopping:
            lived = now - worker.spawned_at
            gen.crashes = policy.crash_streak(gen.crashes, worker.was_ready, lived)
            gen.next_spawn_at = now + policy.respawn_delay(gen.crashes)
        self._forget(worker, reason)

    def _forget(self, worker: WorkerRecord, reason: ExitReason | None) -> None:
        self.table.workers.pop(worker.wid, None)
        self.table.by_pid.pop(worker.pid, None)
        worker.move(Lifecycle.GONE)
        if self.monitor is not None:
            self.monitor.forget(worker.wid)
        if reason is not None and self.stats is not None:
            self.stats.retire(worker.slot, reason)  # totals survive worker replacement
        if worker.replaces:  # a replacement died before taking over: the old one serves on
            old = self.table.workers.get(worker.replaces)
            if old is not None and old.retiring:
                old.move(Lifecycle.READY)
                old.retire_reason = None
        self.free_slots.append(worker.slot)

    def _on_zygote_exit(self, gen: Generation, status: int) -> None:
        gen.zygote_alive = False
        self._close_reply_later(gen)
        gen.close_commands()
        if gen.state == GenState.LOADING:
            gen.state = GenState.FAILED
            code = policy.decode_status(status)
            gen.failure = gen.failure or f"zygote {code.describe()} before loading the app"
        elif self.phase != "stopping" and gen is self.current and gen.state == GenState.SERVING:
            log.error(
                "generation %d: zygote died (%s); starting a new generation",
                gen.number,
                policy.decode_status(status).describe(),
            )
            self._request_reload()

    def _close_reply_later(self, gen: Generation) -> None:
        # Drain what the zygote said before dying (its "failed" line), then close.
        if gen.reply_r >= 0:
            self._on_reply(gen)
            self._on_reply(gen)

    # ---- the tick ----------------------------------------------------------------------------
    def tick(self, now: float) -> None:
        """One round of supervision; each step under its own guard."""
        self._guard("reaping", self._reap)
        self._guard("readiness", self._observe_ready)
        if self.phase != "stopping":
            self._guard("generations", self._advance_generations, now)
            if self.current is not None and self.current.state == GenState.SERVING:
                self._guard("spawning", self._ensure_workers, self.current, now)
            self._guard("timeouts", self._check_timeouts, now)
            if self.phase == "running":
                self._guard("memory monitoring", self._monitor_tick, now)
                self._guard("reload watch", self._watch, now)
        if self.stats is not None:
            self._guard("stats", self.stats.tick, now)
        self._guard("escalation", self._escalate, now)
        self._guard("watchdog", self.handoff.tick, now)
        if self.phase == "stopping":
            self._apply_stop(self.stopping.tick(now))

    def _watch(self, now: float) -> None:
        if self.watcher is not None and (files := self.watcher.tick(now)):
            log.info("--reload: %s changed; reloading", ", ".join(files[:3]))
            self._request_reload()

    def _reap(self) -> None:
        exits = self.procs.reap()
        if exits:
            self._drain_signals()  # a TERM sent with these exits is acted on before they are
        for pid, status in exits:
            self._on_exit(pid, status)

    def _monitor_tick(self, now: float) -> None:
        if self.monitor is None:
            return
        workers = list(self.table.workers.values())
        seen = MonitorInput(
            workers=workers,
            zygotes={g.number: g.zygote_pid for g in self.gens.values() if g.zygote_alive},
            readings=self.scoreboard,
            replacing=self.replacing(),
        )
        self._apply(self.monitor.tick(now, seen))

    def _apply(self, decisions: list[Recycle]) -> None:
        """Act on a helper's decisions, most urgent first: every urgent one, then others until
        one is carried out."""
        urgent_done = False
        for decision in decisions:
            if urgent_done and not decision.urgent:
                return  # one replacement is booting now: the others wait their turn
            worker = self.table.workers.get(decision.wid)
            if decision.why:
                log.warning("%s", decision.why)
            if worker is not None and self.replace(worker, decision.reason):
                if not decision.urgent:
                    return
                urgent_done = True

    def _observe_ready(self) -> None:
        for worker in list(self.table.workers.values()):
            if worker.was_ready or not worker.pid:
                continue
            if self.scoreboard.state(worker.slot) == WorkerState.READY:
                worker.was_ready = True
                if worker.state is Lifecycle.BOOTING:
                    worker.move(Lifecycle.READY)
                gen = self.gens[worker.gen]
                gen.ever_ready = True
                gen.boot_failures = 0
                old = self.table.workers.get(worker.replaces) if worker.replaces else None
                if old is not None and not old.stopping:
                    self._stop(old, old.retire_reason or ExitReason.REPLACED)
        self._announce_ready()

    def _announce_ready(self) -> None:
        gen = self.current
        if self.phase != "booting" or gen is None:
            return
        if self._ready_count(gen) < self.target:
            return
        self.phase = "running"
        urls = " ".join(a.url() for a in self.addresses)
        stats = f", stats on http://{self.stats.address}" if self.stats else ""
        log.info("ready: %s (%d workers, generation %d%s)", urls, self.target, gen.number, stats)
        hooks.when_ready(self.cfg)
        self.handoff.ready(urls, f"serving {self.target} workers on {urls}")

    def _ready_count(self, gen: Generation) -> int:
        return sum(1 for w in self.table.workers.values() if w.gen == gen.number and w.serving)

    def _live(self, gen: Generation) -> list[WorkerRecord]:
        return [
            w
            for w in self.table.workers.values()
            if w.gen == gen.number and not w.stopping and not w.retiring
        ]

    def _ensure_workers(self, gen: Generation, now: float) -> None:
        if self._generation_broken(gen, now):
            return
        missing = self.target - len(self._live(gen))
        if missing <= 0 or now < gen.next_spawn_at:
            return
        for _ in range(missing if gen.crashes == 0 else 1):
            self._spawn(gen)
        if gen.crashes:
            gen.next_spawn_at = now + policy.respawn_delay(gen.crashes)

    def _generation_broken(self, gen: Generation, now: float) -> bool:
        """A generation whose workers never became ready is abandoned after a few tries."""
        if gen.ever_ready or gen.state == GenState.FAILED:
            return gen.state == GenState.FAILED
        timed_out = now - gen.started_at > self.cfg.boot_timeout_s
        if gen.boot_failures < policy.MAX_BOOT_FAILURES and not timed_out:
            return False
        gen.state = GenState.FAILED
        gen.failure = "boot timeout" if timed_out else f"{gen.boot_failures} workers failed to boot"
        log.error("generation %d: %s", gen.number, gen.failure)
        return True

    def _advance_generations(self, now: float) -> None:
        cur = self.current
        if cur is not None and cur.state == GenState.FAILED and self.phase == "booting":
            boot = "workers failed to boot" in cur.failure or cur.failure == "boot timeout"
            self._begin_stop(
                fast=True, code=exitcodes.WORKER_BOOT_ERROR if boot else exitcodes.APP_LOAD_ERROR
            )
            return
        nxt = self.next_gen
        if nxt is None:
            return
        if nxt.state == GenState.SERVING:
            self._ensure_workers(nxt, now)
        if nxt.state == GenState.FAILED or self._generation_broken(nxt, now):
            self._abandon(nxt)
        elif nxt.state == GenState.SERVING and self._ready_count(nxt) >= self.target:
            self._promote(nxt)

    def _promote(self, nxt: Generation) -> None:
        old, self.current, self.next_gen = self.current, nxt, None
        if old is not None:
            self._retire_generation(old, ExitReason.RELOAD)
        log.info("reload complete: generation %d serving", nxt.number)
        self.handoff.reloaded(f"generation {nxt.number} serving")
        self.event("reload", None, f"generation {nxt.number} serving")
        if self.reload_again:
            self.reload_again = False
            self._request_reload()

    def _abandon(self, gen: Generation) -> None:
        log.error(
            "reload failed (%s); generation %d keeps serving",
            gen.failure or "error",
            self.current.number if self.current else 0,
        )
        self.event("reload-failed", None, gen.failure)
        self.handoff.reloaded(f"reload failed: {gen.failure or 'error'}")
        self._retire_generation(gen, ExitReason.RELOAD_FAILED)
        self.next_gen = None

    def _retire_generation(self, gen: Generation, reason: ExitReason) -> None:
        gen.state = GenState.RETIRED if gen.state != GenState.FAILED else GenState.FAILED
        for worker in list(self.table.workers.values()):
            if worker.gen == gen.number:
                self._stop(worker, reason)
        gen.close_commands()  # EOF: the zygote exits

    def _check_timeouts(self, now: float) -> None:
        timeout = self.cfg.timeout_s
        for worker in list(self.table.workers.values()):
            if not worker.was_ready or worker.stopping or not worker.pid:
                continue
            if policy.is_stuck(self.scoreboard.heartbeat(worker.slot), now, timeout):
                log.error(
                    "worker %d (pid %d) timed out (no heartbeat for %.0f s); dumping "
                    "its stack and replacing it",
                    worker.wid,
                    worker.pid,
                    timeout,
                )
                worker.timed_out = True
                self._stop(worker, ExitReason.TIMEOUT, sig=signal.SIGABRT)

    def _escalate(self, now: float) -> None:
        for worker in self.table.workers.values():
            if worker.stopping and worker.pid and worker.kill_at and now > worker.kill_at:
                log.warning(
                    "worker %d (pid %d) did not stop in time: SIGKILL", worker.wid, worker.pid
                )
                self.procs.kill(worker.pid, signal.SIGKILL)
                worker.kill_at = 0.0

    # ---- signals -----------------------------------------------------------------------------
    def _drain_signals(self) -> None:
        if self.sig_r < 0:
            return
        try:
            data = os.read(self.sig_r, 256)
        except BlockingIOError:
            return
        for signum in data:
            self.on_signal(signum)

    def on_signal(self, signum: int) -> None:
        if signum == signal.SIGCHLD:
            return  # the tick reaps
        log.info("received %s", signal.Signals(signum).name)
        actions: dict[int, Callable[[], None]] = {
            signal.SIGTERM: lambda: self._begin_stop(fast=False),
            signal.SIGINT: lambda: self._begin_stop(fast=True),
            signal.SIGQUIT: lambda: self._begin_stop(fast=True),
            signal.SIGHUP: self._request_reload,
            signal.SIGTTIN: lambda: self._scale(+1),
            signal.SIGTTOU: lambda: self._scale(-1),
            signal.SIGUSR1: self._reopen_logs,
            signal.SIGUSR2: lambda: self.handoff.upgrade(self.opened),
        }
        action = actions.get(signum)
        if action is not None:
            action()

    def _request_reload(self) -> None:
        if self.phase == "stopping":
            return
        if self.next_gen is not None:
            self.reload_again = True
            return
        self.handoff.reloading()
        self.next_gen = self._start_generation()

    def _scale(self, delta: int) -> None:
        if self.phase == "stopping":
            return
        old = self.target
        self.target = max(1, self.target + delta)
        max_target = (self.scoreboard.nslots - 4) // 2
        self.target = min(self.target, max_target)
        log.info("target is now %d workers", self.target)
        hooks.nworkers_changed(self.cfg, self.target, old)
        self.event("scale", None, f"target {self.target}")
        if delta < 0 and self.current is not None:
            live = self._live(self.current)
            if len(live) > self.target:
                wid = policy.pick_scale_down([(w.wid, w.spawned_at) for w in live])
                if wid is not None:
                    self._stop(self.table.workers[wid], ExitReason.SCALE_DOWN)

    def _reopen_logs(self) -> None:
        reopen_log_files()
        for worker in self.table.workers.values():
            if worker.pid:
                self.procs.kill(worker.pid, signal.SIGUSR1)

    def _begin_stop(self, fast: bool, code: int = exitcodes.OK) -> None:
        if self.phase != "stopping":
            self.handoff.stopping()
        self.phase = "stopping"  # the stats port's /healthz answers 503 from now on
        self.exit_code = code or self.exit_code
        self._apply_stop(self.stopping.begin(self.clock(), fast=fast))

    def _apply_stop(self, steps: list[Step]) -> None:
        """Carry out the stop sequence's decisions (corral.master.stopping)."""
        for step in steps:
            for gen in self.gens.values() if step in ZYGOTE_STEPS else ():
                gen.close_commands()  # and TERM: a zygote holds copies of the listeners
                if gen.zygote_alive:
                    self.procs.kill(gen.zygote_pid, signal.SIGTERM)
            for sock in self.listeners if step is Step.CLOSE_LISTENERS else ():
                sock.close()  # with the workers' copies gone, connections are refused
            sig = WORKER_SIGNAL.get(step, 0)
            for worker in list(self.table.workers.values()) if sig else ():
                if step in (Step.DRAIN, Step.STOP_NOW):
                    self._stop(worker, ExitReason.SHUTDOWN, sig, again=step is Step.STOP_NOW)
                elif worker.pid:
                    self.procs.kill(worker.pid, sig)

    def _cleanup(self) -> None:
        if self.stats is not None:
            self.stats.close()
        for sock in self.listeners:
            sock.close()
        self.handoff.cleanup(self.addresses)
        log.info("master exiting with code %d", self.exit_code)


def _noop_handler(signum: int, frame: Any) -> None:
    """The wakeup fd already carries the signal number to the loop; nothing to do here."""
