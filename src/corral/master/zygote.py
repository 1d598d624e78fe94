"""The zygote: the process that imports the app once and forks the workers of one generation.

Theory of operation. The master never imports the application, so that a reload can start from
fresh code in a fresh process and the master's own memory stays small. For each code generation
the master forks a zygote, which:

1. applies the GC/copy-on-write policy (GC off from the start, then warm-up, immortal heap and
   ``gc.freeze()`` after the import), imports the app and says ``loaded`` (or ``failed``) on the
   reply pipe;
2. then sits blocked in ``os.read`` on its command pipe. It is single-threaded and idle: any page
   it wrote after forking would stop being shared with every worker.
3. On ``spawn WID SLOT`` it forks an intermediate process, which forks the worker and exits at
   once; the worker is adopted by the master (a child subreaper), which reaps and signals it
   directly. The intermediate reports ``spawned WID PID`` on the same reply pipe (writes under
   PIPE_BUF bytes are atomic, so lines never interleave).

The pipe messages are encoded and decoded by ``corral.lifecycle``. The zygote dies with the
master (PR_SET_PDEATHSIG) and exits when its command pipe closes.
"""

from __future__ import annotations

import logging
import os
import random
import signal
import socket
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NoReturn

from corral import hooks
from corral.asgi import AsgiApp, choose_interface, interface_for
from corral.choices import EventLoop
from corral.config import Config
from corral.lifecycle import Failed, Loaded, Spawn, Spawned, ZygoteMessage, decode, encode
from corral.master import exitcodes, sysdeps
from corral.master.appload import AppLoadError, load_app
from corral.stats.scoreboard import Scoreboard
from corral.tlsconfig import build_context

log = logging.getLogger("corral.zygote")


@dataclass
class ZygoteContext:
    """Everything a zygote inherits from the master at fork."""

    cfg: Config
    generation: int
    master_pid: int
    cmd_r: int  # commands from the master
    reply_w: int  # replies to the master (shared by the zygote and its intermediates)
    listeners: list[socket.socket]
    scoreboard: Scoreboard
    master_fds: list[int]  # fds of the master's own that children must not hold
    tls: Any = None  # this generation's ssl.SSLContext, built in the zygote (corral.tlsconfig)


def _say(fd: int, msg: ZygoteMessage) -> None:
    os.write(fd, encode(msg))


def zygote_main(ctx: ZygoteContext) -> NoReturn:
    """Entry point in the freshly forked zygote; never returns."""
    from corral.memory import gcpolicy
    from corral.memory.warmup import make_warmup

    _reset_signals()
    sysdeps.die_with_parent(ctx.master_pid, signal.SIGKILL, wait_s=0.0)
    if os.getppid() != ctx.master_pid:
        os._exit(exitcodes.ERROR)
    for fd in ctx.master_fds:
        _close_quietly(fd)
    sysdeps.set_title(f"corral zygote [{ctx.cfg.app or 'demo'}] gen {ctx.generation}")
    preset = gcpolicy.GcPreset(ctx.cfg.gc)
    try:  # once per generation, so HUP reloads the certificate; workers inherit it
        ctx.tls = build_context(ctx.cfg)
    except ValueError as exc:
        _report_failure(ctx, f"TLS: {exc}", exc)
    try:
        gcpolicy.begin_preload(preset)
        _import_worker_code()
        app = choose_interface(
            load_app(ctx.cfg.app, ctx.cfg.chdir, ctx.cfg.pythonpath),
            interface_for(ctx.cfg.interface, ctx.cfg.worker_class),
        )
        if isinstance(app, AsgiApp):
            _import_asgi_worker_code(ctx.cfg.loop)
        warmup = make_warmup(app, list(ctx.cfg.warmup)) if ctx.cfg.warmup else None
        report = gcpolicy.finish_preload(
            preset, warmup=warmup, collect_before_freeze=ctx.cfg.gc_collect_before_freeze
        )
    except AppLoadError as exc:
        _report_failure(ctx, str(exc), exc.__cause__ or exc)
    except BaseException as exc:
        _report_failure(ctx, f"preloading failed: {exc!r}", exc)
    _say(ctx.reply_w, Loaded(_describe(report)))
    _serve_commands(ctx, app)


def _import_worker_code() -> None:
    """Import what every worker runs before the heap is frozen, so it is shared too."""
    import corral.stats.scoreboard
    import corral.worker  # noqa: F401


def _import_asgi_worker_code(loop: EventLoop) -> None:
    """An ASGI app's worker code (asyncio, wsproto, uvloop) is shared too; no loop is made here:
    a loop holds fds and state that must not cross a fork."""
    import asyncio  # noqa: F401

    from corral.worker import aio

    aio.loop_factory(loop)  # imports uvloop when it is to be used (ImportError: a clear failure)


def _describe(report: Any) -> str:
    heap = (
        f"immortal heap of {report.objects_immortalized} objects in {report.immortalize_s:.2f}s"
        if report.immortal
        else f"not immortal: {report.refused}"
        if report.refused
        else ""
    )
    parts = [
        f"gc={report.preset.value}",
        f"{report.frozen_objects} objects frozen",
        heap,
        f"preload finished in {report.total_s:.2f}s",
    ]
    return ", ".join(p for p in parts if p)


def _report_failure(ctx: ZygoteContext, message: str, exc: BaseException) -> NoReturn:
    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    sys.stderr.write(f"corral: generation {ctx.generation}: {message}\n{tb}")
    sys.stderr.flush()
    _say(ctx.reply_w, Failed(message))
    os._exit(exitcodes.APP_LOAD_ERROR)


def _serve_commands(ctx: ZygoteContext, app: Callable[..., Any]) -> NoReturn:
    buf = b""
    while True:
        try:
            chunk = os.read(ctx.cmd_r, 4096)
        except InterruptedError:
            continue
        if not chunk:  # the master closed our pipe: this generation is over
            os._exit(exitcodes.OK)
        buf += chunk
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            msg = decode(line)
            if isinstance(msg, Spawn):
                _spawn(ctx, app, msg.wid, msg.slot)


def _spawn(ctx: ZygoteContext, app: Callable[..., Any], wid: int, slot: int) -> None:
    pid = os.fork()
    if pid == 0:  # the intermediate: fork the worker, report it, vanish
        try:
            hooks.pre_fork(ctx.cfg, ctx.master_pid, wid)
            worker_pid = os.fork()
            if worker_pid == 0:
                _worker_main(ctx, app, wid, slot)
            _say(ctx.reply_w, Spawned(wid, worker_pid))
        finally:
            os._exit(0)
    while True:
        try:
            os.waitpid(pid, 0)
            return
        except InterruptedError:
            continue
        except ChildProcessError:
            return


def _worker_main(ctx: ZygoteContext, app: Callable[..., Any], wid: int, slot: int) -> NoReturn:
    from corral.memory import gcpolicy

    code = exitcodes.WORKER_BOOT_ERROR
    try:
        if not sysdeps.die_with_parent(ctx.master_pid, signal.SIGTERM):
            os._exit(exitcodes.ERROR)
        _close_quietly(ctx.cmd_r)
        _close_quietly(ctx.reply_w)
        random.seed()
        sysdeps.set_title(f"corral worker {wid} [{ctx.cfg.app or 'demo'}] gen {ctx.generation}")
        gcpolicy.in_worker(gcpolicy.GcPreset(ctx.cfg.gc))
        hooks.post_fork(ctx.cfg, ctx.master_pid, wid)
        hooks.post_worker_init(ctx.cfg, ctx.master_pid, wid)
        code = _run_worker(ctx, app, slot)
    except BaseException:
        log.exception("worker %d failed", wid)
    hooks.worker_exit(ctx.cfg, ctx.master_pid, wid)
    gcpolicy.fast_exit(code)


def _run_worker(ctx: ZygoteContext, app: Callable[..., Any], slot: int) -> int:
    from corral.stats.scoreboard import install_gc_callbacks
    from corral.worker import serve

    from .worker_settings import worker_settings

    writer = ctx.scoreboard.writer(slot)
    install_gc_callbacks(writer)
    census = ctx.scoreboard.census  # connections balanced across workers
    settings = worker_settings(ctx.cfg, ctx.tls)
    if isinstance(app, AsgiApp):
        from corral.worker.aio import serve as serve_asgi

        board = ctx.scoreboard
        return serve_asgi(
            app, ctx.listeners, settings, writer, census, lambda n: board.set_websockets(slot, n)
        )
    return int(serve(app, ctx.listeners, settings, writer, census))


def _reset_signals() -> None:
    for sig in (
        signal.SIGTERM,
        signal.SIGINT,
        signal.SIGQUIT,
        signal.SIGHUP,
        signal.SIGCHLD,
        signal.SIGUSR1,
        signal.SIGUSR2,
        signal.SIGTTIN,
        signal.SIGTTOU,
    ):
        signal.signal(sig, signal.SIG_DFL)
    signal.set_wakeup_fd(-1)


def _close_quietly(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass
