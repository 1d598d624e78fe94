"""The master: owns the listeners, runs generations of zygotes and workers, and changes the fleet
(respawn, reload, recycle, scale, stop) without a client noticing.

Theory of operation.
- One loop. Signal handlers do nothing but let Python write the signal number to a wakeup pipe
  (``signal.set_wakeup_fd``); the loop reads the numbers and acts. Nothing is logged from a handler.
- A *generation* is a zygote (which imported the app) plus the workers it forked. HUP starts
  generation N+1 beside N; only when all of N+1's workers report READY on the scoreboard are N's
  workers told to drain (SIGTERM). If N+1 fails to import or boot, it is discarded and N serves on.
  The listeners never close, so no connection is refused.
- Replacing one worker (max-requests, memory) is the same "spawn before kill": the replacement is
  READY before the old one stops accepting; one replacement at a time.
- Workers are adopted by the master (child subreaper), so ``waitpid`` here sees every exit and
  decodes it: crash, timeout, probable OOM (SIGKILL nobody here sent), boot failure.
- Heartbeats come from each worker's own loop through its scoreboard slot; a stale one means the
  app is stuck: SIGABRT (faulthandler prints the stack), then SIGKILL, then a replacement.
"""

from __future__ import annotations

import errno
import logging
import os
import selectors
import signal
import socket
import time
from dataclasses import dataclass, field
from typing import Any

from corral.config import Config
from corral.master import exitcodes, policy, sysdeps
from corral.master.listeners import Address, bind, bound_address, parse_address
from corral.master.zygote import ZygoteContext, zygote_main
from corral.memory.recycle import jittered_max_requests
from corral.stats.protocol import WorkerState

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
)
ABORT_GRACE_S = 2.0  # after SIGABRT a stuck worker gets this long to dump its stack


@dataclass
class Worker:
    wid: int
    slot: int
    gen: int
    spawned_at: float
    requests_limit: int = 0
    pid: int = 0  # 0 until the zygote reports it
    ready: bool = False
    stopping: bool = False
    stop_reason: str = ""
    retiring: str = ""  # reason, while a replacement boots
    replaces: int = 0  # wid of the worker this one replaces
    timed_out: bool = False
    kill_at: float = 0.0


@dataclass
class Generation:
    number: int
    zygote_pid: int
    cmd_w: int
    reply_r: int
    started_at: float
    state: str = "loading"  # loading -> serving | failed -> retired
    buf: bytes = b""
    boot_failures: int = 0
    ever_ready: bool = False
    crashes: int = 0
    next_spawn_at: float = 0.0
    zygote_alive: bool = True
    failure: str = ""


@dataclass
class Fleet:
    workers: dict[int, Worker] = field(default_factory=dict)  # by wid
    by_pid: dict[int, int] = field(default_factory=dict)
    early_exits: dict[int, int] = field(default_factory=dict)  # pid -> status, before "spawned"


class Arbiter:
    clock = staticmethod(time.monotonic)

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.target = cfg.effective_workers()
        self.fleet = Fleet()
        self.gens: dict[int, Generation] = {}
        self.current: Generation | None = None
        self.next_gen: Generation | None = None
        self.reload_again = False
        self.phase = "booting"  # booting -> running -> stopping
        self.exit_code = exitcodes.OK
        self.stop_deadline = 0.0
        self.next_wid = 1
        self.listeners: list[socket.socket] = []
        self.addresses: list[Address] = []
        self.pid = os.getpid()
        self.sel = selectors.DefaultSelector()
        self.stats: Any = None
        self.monitor: Any = None  # memory sampling + recycling, see corral.master.monitor

    # ---- start -----------------------------------------------------------------------------
    def setup(self) -> None:
        """Bind listeners and build shared state; raises OSError/ValueError for the CLI."""
        from corral.stats.scoreboard import Scoreboard

        for text in self.cfg.bind:
            address = parse_address(text)
            sock = bind(address, self.cfg.backlog)
            self.listeners.append(sock)
            self.addresses.append(bound_address(sock, address))
        self.scoreboard = Scoreboard.create(max(16, 4 * self.target + 8))
        self.free_slots = list(range(self.scoreboard.nslots - 1, -1, -1))
        self._setup_signals()
        self._setup_stats()
        from corral.master.monitor import Monitor

        self.monitor = Monitor(self)

    def _setup_signals(self) -> None:
        self.sig_r, self.sig_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(self.sig_w, warn_on_full_buffer=False)
        for sig in HANDLED_SIGNALS:
            signal.signal(sig, _noop_handler)
        self.sel.register(self.sig_r, selectors.EVENT_READ, self._on_signal_pipe)

    def _setup_stats(self) -> None:
        if not self.cfg.stats:
            return
        from corral.master.statsglue import start_stats_server

        self.stats = start_stats_server(self)

    def run(self) -> int:
        _set_title(f"corral master [{self.cfg.app or 'demo'}]")
        sysdeps.set_child_subreaper()
        if self.cfg.pidfile:
            _write_pidfile(self.cfg.pidfile)
        self.current = self._start_generation()
        try:
            while not self._finished():
                for key, mask in self.sel.select(TICK_S):
                    key.data(key.fileobj, mask)
                self._tick(time.monotonic())
        finally:
            self._cleanup()
        return self.exit_code

    def _finished(self) -> bool:
        if self.phase != "stopping":
            return False
        return not self.fleet.workers and not any(g.zygote_alive for g in self.gens.values())

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
        gen = Generation(number, pid, cmd_w, reply_r, time.monotonic())
        self.gens[number] = gen
        self.sel.register(reply_r, selectors.EVENT_READ, lambda f, m: self._on_reply(gen))
        _set_title(f"corral master [{self.cfg.app or 'demo'}] gen {number}")
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
            self._on_reply_line(gen, line.decode("utf-8", "replace"))

    def _close_reply(self, gen: Generation) -> None:
        if gen.reply_r >= 0:
            self.sel.unregister(gen.reply_r)
            os.close(gen.reply_r)
            gen.reply_r = -1

    def _on_reply_line(self, gen: Generation, line: str) -> None:
        word, _, rest = line.partition(" ")
        if word == "loaded":
            log.info("generation %d: app loaded (%s)", gen.number, rest)
            gen.state = "serving"
        elif word == "failed":
            gen.failure = rest
            log.error("generation %d: %s", gen.number, rest)
        elif word == "spawned":
            wid_text, _, pid_text = rest.partition(" ")
            self._on_spawned(int(wid_text), int(pid_text))

    def _on_spawned(self, wid: int, pid: int) -> None:
        worker = self.fleet.workers.get(wid)
        if worker is None:  # stopped before it was even reported
            _kill(pid, signal.SIGTERM)
            return
        worker.pid = pid
        self.fleet.by_pid[pid] = wid
        self.scoreboard.set_pid(worker.slot, pid)
        if worker.stopping:
            _kill(pid, signal.SIGTERM)
        status = self.fleet.early_exits.pop(pid, None)
        if status is not None:
            self._on_worker_exit(worker, status)

    # ---- workers -----------------------------------------------------------------------------
    def _spawn(self, gen: Generation, replaces: int = 0) -> Worker | None:
        if not self.free_slots or gen.cmd_w < 0:
            log.error("no free scoreboard slot for a new worker")
            return None
        now = time.monotonic()
        wid, slot = self.next_wid, self.free_slots.pop()
        self.next_wid += 1
        self.scoreboard.reset(slot, 0, wid, gen.number, now)
        limit = jittered_max_requests(
            self.cfg.max_requests, self.cfg.max_requests_jitter, seed=self.pid, worker_id=wid
        )
        worker = Worker(wid, slot, gen.number, now, limit, replaces=replaces)
        self.fleet.workers[wid] = worker
        try:
            os.write(gen.cmd_w, f"spawn {wid} {slot}\n".encode())
        except OSError as exc:
            log.error("generation %d: zygote unreachable (%s)", gen.number, exc)
            self._forget(worker, None)
            return None
        return worker

    def event(self, kind: str, wid: int | None, detail: str = "") -> None:
        if self.stats is not None:
            self.stats.event(kind, wid, detail)

    def _stop(self, worker: Worker, reason: str, sig: int = signal.SIGTERM) -> None:
        if worker.stopping:
            return
        worker.stopping = True
        worker.stop_reason = reason
        grace = self.cfg.graceful_timeout_s if sig == signal.SIGTERM else ABORT_GRACE_S
        worker.kill_at = time.monotonic() + grace + 1.0
        if worker.pid:
            _kill(worker.pid, sig)
        log.info("worker %d (pid %d) stopping: %s", worker.wid, worker.pid, reason)

    def replace(self, worker: Worker, reason: str) -> bool:
        """Spawn-before-kill: start a replacement; the old worker drains once it is READY."""
        gen = self.gens.get(worker.gen)
        if gen is None or gen is not self.current or worker.retiring or worker.stopping:
            return False
        new = self._spawn(gen, replaces=worker.wid)
        if new is None:
            return False
        worker.retiring = reason
        log.info(
            "worker %d (pid %d) to be replaced (%s) by worker %d",
            worker.wid,
            worker.pid,
            reason,
            new.wid,
        )
        return True

    def replacing(self) -> bool:
        return any(w.retiring and not w.stopping for w in self.fleet.workers.values())

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            except InterruptedError:
                continue
            if pid == 0:
                return
            self._on_exit(pid, status)

    def _on_exit(self, pid: int, status: int) -> None:
        for gen in self.gens.values():
            if gen.zygote_pid == pid:
                self._on_zygote_exit(gen, status)
                return
        wid = self.fleet.by_pid.get(pid)
        if wid is None:
            self.fleet.early_exits[pid] = status
            return
        self._on_worker_exit(self.fleet.workers[wid], status)

    def _on_worker_exit(self, worker: Worker, status: int) -> None:
        info = policy.decode_status(status)
        if not worker.stopping and (why := policy.stopped_itself(info)):
            worker.stopping, worker.stop_reason = True, why  # a recycle, not a crash
        now = time.monotonic()
        gen = self.gens[worker.gen]
        reason = (
            worker.stop_reason
            if worker.stopping
            else policy.exit_reason(info, asked_to_stop=False, timed_out=worker.timed_out)
        )
        if worker.stopping and not worker.timed_out:
            log.info("worker %d (pid %d) %s (%s)", worker.wid, worker.pid, info.describe(), reason)
        elif reason == "oom?":
            log.error(
                "worker %d (pid %d) was SIGKILLed by someone else: probably the OOM "
                "killer; check dmesg",
                worker.wid,
                worker.pid,
            )
        else:
            log.error("worker %d (pid %d) %s (%s)", worker.wid, worker.pid, info.describe(), reason)
        if not worker.ready and not worker.stopping:
            gen.boot_failures += 1
            log.error(
                "worker %d failed to boot (%d in generation %d)",
                worker.wid,
                gen.boot_failures,
                gen.number,
            )
        if not worker.stopping:
            lived = now - worker.spawned_at
            gen.crashes = policy.crash_streak(gen.crashes, worker.ready, lived)
            gen.next_spawn_at = now + policy.respawn_delay(gen.crashes)
        self._forget(worker, reason)

    def _forget(self, worker: Worker, reason: str | None) -> None:
        self.fleet.workers.pop(worker.wid, None)
        self.fleet.by_pid.pop(worker.pid, None)
        if self.monitor is not None:
            self.monitor.forget(worker)
        if reason is not None:
            self.on_retired(worker, reason)
        if worker.replaces:  # a replacement died before taking over: the old one serves on
            old = self.fleet.workers.get(worker.replaces)
            if old is not None and not old.stopping:
                old.retiring = ""
        self.free_slots.append(worker.slot)

    def on_retired(self, worker: Worker, reason: str) -> None:
        """Hook for the stats layer (totals survive worker replacement)."""
        if self.stats is not None:
            self.stats.retire(worker, reason)

    def _on_zygote_exit(self, gen: Generation, status: int) -> None:
        gen.zygote_alive = False
        self._close_reply_later(gen)
        if gen.cmd_w >= 0:
            os.close(gen.cmd_w)
            gen.cmd_w = -1
        if gen.state == "loading":
            gen.state = "failed"
            code = policy.decode_status(status)
            gen.failure = gen.failure or f"zygote {code.describe()} before loading the app"
        elif self.phase != "stopping" and gen is self.current and gen.state == "serving":
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
    def _tick(self, now: float) -> None:
        self._reap()
        self._observe_ready()
        if self.phase != "stopping":
            self._advance_generations(now)
            if self.current is not None and self.current.state == "serving":
                self._ensure_workers(self.current, now)
            self._check_timeouts(now)
            if self.monitor is not None and self.phase == "running":
                self.monitor.tick(now)
        if self.stats is not None:
            self.stats.tick(now)
        self._escalate(now)
        if self.phase == "stopping" and now > self.stop_deadline:
            for worker in self.fleet.workers.values():
                if worker.pid:
                    _kill(worker.pid, signal.SIGKILL)

    def _observe_ready(self) -> None:
        for worker in list(self.fleet.workers.values()):
            if worker.ready or not worker.pid:
                continue
            if self.scoreboard.state(worker.slot) == WorkerState.READY:
                worker.ready = True
                gen = self.gens[worker.gen]
                gen.ever_ready = True
                gen.boot_failures = 0
                old = self.fleet.workers.get(worker.replaces) if worker.replaces else None
                if old is not None and not old.stopping:
                    self._stop(old, old.retiring or "replaced")
        self._announce_ready()

    def _announce_ready(self) -> None:
        gen = self.current
        if self.phase != "booting" or gen is None:
            return
        if self._ready_count(gen) >= self.target:
            self.phase = "running"
            urls = " ".join(a.url() for a in self.addresses)
            stats = f", stats on http://{self.stats.address}" if self.stats else ""
            log.info(
                "ready: %s (%d workers, generation %d%s)", urls, self.target, gen.number, stats
            )
            if self.cfg.ready_fd >= 0:
                try:
                    os.write(self.cfg.ready_fd, f"ready {urls}\n".encode())
                    os.close(self.cfg.ready_fd)
                except OSError:
                    pass

    def _ready_count(self, gen: Generation) -> int:
        return sum(
            1
            for w in self.fleet.workers.values()
            if w.gen == gen.number and w.ready and not w.stopping and not w.retiring
        )

    def _live(self, gen: Generation) -> list[Worker]:
        return [
            w
            for w in self.fleet.workers.values()
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
        if gen.ever_ready or gen.state == "failed":
            return gen.state == "failed"
        timed_out = now - gen.started_at > self.cfg.boot_timeout_s
        if gen.boot_failures < policy.MAX_BOOT_FAILURES and not timed_out:
            return False
        gen.state = "failed"
        gen.failure = "boot timeout" if timed_out else f"{gen.boot_failures} workers failed to boot"
        log.error("generation %d: %s", gen.number, gen.failure)
        return True

    def _advance_generations(self, now: float) -> None:
        cur = self.current
        if cur is not None and cur.state == "failed" and self.phase == "booting":
            boot = "workers failed to boot" in cur.failure or cur.failure == "boot timeout"
            self._begin_stop(
                fast=True, code=exitcodes.WORKER_BOOT_ERROR if boot else exitcodes.APP_LOAD_ERROR
            )
            return
        nxt = self.next_gen
        if nxt is None:
            return
        if nxt.state == "serving":
            self._ensure_workers(nxt, now)
        if nxt.state == "failed" or self._generation_broken(nxt, now):
            self._abandon(nxt)
        elif nxt.state == "serving" and self._ready_count(nxt) >= self.target:
            self._promote(nxt)

    def _promote(self, nxt: Generation) -> None:
        old, self.current, self.next_gen = self.current, nxt, None
        if old is not None:
            self._retire_generation(old, "reload")
        log.info("reload complete: generation %d serving", nxt.number)
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
        self._retire_generation(gen, "reload-failed")
        self.next_gen = None

    def _retire_generation(self, gen: Generation, reason: str) -> None:
        gen.state = "retired" if gen.state != "failed" else "failed"
        for worker in list(self.fleet.workers.values()):
            if worker.gen == gen.number:
                self._stop(worker, reason)
        if gen.cmd_w >= 0:
            os.close(gen.cmd_w)  # EOF: the zygote exits
            gen.cmd_w = -1

    def _check_timeouts(self, now: float) -> None:
        timeout = self.cfg.timeout_s
        for worker in self.fleet.workers.values():
            if not worker.ready or worker.stopping or not worker.pid:
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
                self._stop(worker, "timeout", sig=signal.SIGABRT)

    def _escalate(self, now: float) -> None:
        for worker in self.fleet.workers.values():
            if worker.stopping and worker.pid and worker.kill_at and now > worker.kill_at:
                log.warning(
                    "worker %d (pid %d) did not stop in time: SIGKILL", worker.wid, worker.pid
                )
                _kill(worker.pid, signal.SIGKILL)
                worker.kill_at = 0.0

    # ---- signals -----------------------------------------------------------------------------
    def _on_signal_pipe(self, fileobj: Any, mask: int) -> None:
        try:
            data = os.read(self.sig_r, 256)
        except BlockingIOError:
            return
        for signum in data:
            self._on_signal(signum)

    def _on_signal(self, signum: int) -> None:
        if signum == signal.SIGCHLD:
            return  # the tick reaps
        name = signal.Signals(signum).name
        log.info("received %s", name)
        if signum == signal.SIGTERM:
            self._begin_stop(fast=False)
        elif signum in (signal.SIGINT, signal.SIGQUIT):
            self._begin_stop(fast=True)
        elif signum == signal.SIGHUP:
            self._request_reload()
        elif signum == signal.SIGTTIN:
            self._scale(+1)
        elif signum == signal.SIGTTOU:
            self._scale(-1)
        elif signum == signal.SIGUSR1:
            self._reopen_logs()

    def _request_reload(self) -> None:
        if self.phase == "stopping":
            return
        if self.next_gen is not None:
            self.reload_again = True
            return
        self.next_gen = self._start_generation()

    def _scale(self, delta: int) -> None:
        if self.phase == "stopping":
            return
        self.target = max(1, self.target + delta)
        max_target = (self.scoreboard.nslots - 4) // 2
        self.target = min(self.target, max_target)
        log.info("target is now %d workers", self.target)
        self.event("scale", None, f"target {self.target}")
        if delta < 0 and self.current is not None:
            live = self._live(self.current)
            if len(live) > self.target:
                wid = policy.pick_scale_down([(w.wid, w.spawned_at) for w in live])
                if wid is not None:
                    self._stop(self.fleet.workers[wid], "scale-down")

    def _reopen_logs(self) -> None:
        for handler in logging.getLogger().handlers:
            if isinstance(handler, logging.FileHandler):
                handler.close()  # reopened on the next emit
        for worker in self.fleet.workers.values():
            if worker.pid:
                _kill(worker.pid, signal.SIGUSR1)

    def _begin_stop(self, fast: bool, code: int = exitcodes.OK) -> None:
        if self.phase == "stopping" and not fast:
            return
        self.phase = "stopping"
        self.exit_code = code or self.exit_code
        grace = ABORT_GRACE_S if fast else self.cfg.graceful_timeout_s
        self.stop_deadline = time.monotonic() + grace + 1.0
        for worker in list(self.fleet.workers.values()):
            if fast:
                worker.stopping = False
            self._stop(worker, "shutdown", sig=signal.SIGQUIT if fast else signal.SIGTERM)
        for gen in self.gens.values():
            if gen.cmd_w >= 0:
                os.close(gen.cmd_w)
                gen.cmd_w = -1
            if gen.zygote_alive:
                _kill(gen.zygote_pid, signal.SIGTERM)

    def _cleanup(self) -> None:
        if self.stats is not None:
            self.stats.close()
        for sock in self.listeners:
            sock.close()
        for address in self.addresses:
            if address.family == socket.AF_UNIX:
                try:
                    os.unlink(address.path)
                except OSError:
                    pass
        if self.cfg.pidfile:
            try:
                os.unlink(self.cfg.pidfile)
            except OSError:
                pass
        log.info("master exiting with code %d", self.exit_code)


def _noop_handler(signum: int, frame: Any) -> None:
    """The wakeup fd already carries the signal number to the loop; nothing to do here."""


def _kill(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except OSError as exc:
        if exc.errno != errno.ESRCH:
            raise


def _write_pidfile(path: str) -> None:
    with open(path, "w") as f:
        f.write(f"{os.getpid()}\n")


def _set_title(title: str) -> None:
    try:
        import setproctitle

        setproctitle.setproctitle(title)
    except Exception:
        pass
