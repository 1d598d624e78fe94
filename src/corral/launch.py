"""Start a server in its own session, wait until it says it is ready, stop its whole group.

Theory of operation. ``corral chaos``, the system tests and the benchmarks all need the same
three steps, and each step has one way to go wrong quietly, so they live here once:

* **Start** (``spawn``): the command runs in a new session (``start_new_session``), so its
  process group is exactly the server's family (master, zygote, workers) and nothing else;
  stdin is closed, stdout and stderr go to a log file, ``PYTHONUNBUFFERED`` is set so the log
  is current. With ``ready_pipe`` a pipe is made and its write end passed to the child; the
  argv builder is given that fd number for ``corral serve --ready-fd``.
* **Ready** (``Launched.wait_ready``): corral writes ``ready URL...\\n`` on that fd once every
  worker of the first generation is ready (master/arbiter.py). The wait is ``select`` on the
  pipe *and* on a pidfd of the child, so both "ready" and "died first" wake it at once: no
  sleep, no polling, one hard deadline. (Without pidfd, Linux < 5.3, the wait falls back to
  half-second slices that re-check the child's status.) Servers that have no ready fd (the
  peers a benchmark compares against) are probed by the caller instead.
* **Stop** (``Launched.stop`` / ``stop_group``): TERM (the main process, which stops its
  own family as corral's master does, or the whole group for servers that need it), wait up to
  a grace period, then KILL the whole group (stragglers of that session only) and reap.

Every wait has a deadline; ``stop`` is idempotent and never raises for a process already gone.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType

READY_TIMEOUT_S = 30.0
STOP_GRACE_S = 15.0  # corral's own --graceful-timeout-s default is shorter: TERM is enough
REAP_TIMEOUT_S = 5.0  # after KILL: the kernel is quick, a wait past this is a zombie elsewhere
_FALLBACK_SLICE_S = 0.5

Argv = Sequence[str] | Callable[[int], Sequence[str]]


class LaunchError(Exception):
    """The server did not become ready (exited, timed out, or wrote something unexpected)."""


def corral_serve(*args: str, python: str = sys.executable) -> Callable[[int], list[str]]:
    """The argv builder for ``python -m corral serve --ready-fd FD ARGS...``."""
    return lambda fd: [python, "-m", "corral", "serve", "--ready-fd", str(fd), *args]


class Launched:
    """A server started by ``spawn``: its process, log and (optional) ready pipe."""

    def __init__(
        self, proc: subprocess.Popen[bytes], log_path: Path | None, ready_r: int | None
    ) -> None:
        self.proc = proc
        self.log_path = log_path
        self.ready_r = ready_r
        self.ready_line = ""
        self.urls: list[str] = []

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def url(self) -> str:
        """The first URL of the ready line ("" before it came)."""
        return self.urls[0] if self.urls else ""

    def wait_ready(self, timeout_s: float = READY_TIMEOUT_S) -> str:
        """Block until the ready line (returns the first URL); ``LaunchError`` if the server
        exits first, the deadline passes, or the line is not ``ready URL...``."""
        if self.ready_r is None:
            raise LaunchError("started without a ready pipe")
        line = _read_line(self.ready_r, self.proc, time.monotonic() + timeout_s)
        words = line.split()
        if len(words) < 2 or words[0] != "ready":
            raise LaunchError(f"unexpected ready line {line!r}")
        self.ready_line, self.urls = line, words[1:]
        return self.url

    def log(self) -> str:
        if self.log_path is None:
            return ""
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 20) -> str:
        return "\n".join(self.log().splitlines()[-lines:])

    def stop(self, grace_s: float = STOP_GRACE_S, term_group: bool = False) -> int | None:
        """TERM -> wait ``grace_s`` -> KILL the group; the exit status (None if unreaped)."""
        status = stop_group(self.proc, grace_s, term_group)
        if self.ready_r is not None:
            os.close(self.ready_r)
            self.ready_r = None
        return status

    def __enter__(self) -> Launched:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def spawn(
    argv: Argv,
    *,
    log_path: Path | None = None,
    env: Mapping[str, str] | None = None,
    cwd: Path | str | None = None,
    ready_pipe: bool = True,
    pass_fds: Sequence[int] = (),
) -> Launched:
    """Start ``argv`` (a list, or a builder given the ready fd) in its own session.

    ``env`` is added to this process's environment. The log is appended to (``None``: the
    output is discarded)."""
    ready_r, ready_w = os.pipe() if ready_pipe else (None, None)
    try:
        cmd = list(argv(ready_w if ready_w is not None else -1) if callable(argv) else argv)
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        with contextlib.ExitStack() as stack:
            out = stack.enter_context(open(log_path, "ab")) if log_path else subprocess.DEVNULL
            proc = subprocess.Popen(
                cmd,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                pass_fds=(*pass_fds, *((ready_w,) if ready_w is not None else ())),
                start_new_session=True,
                env=full_env,
                cwd=cwd,
            )
    except BaseException:
        for fd in (ready_r, ready_w):
            if fd is not None:
                os.close(fd)
        raise
    if ready_w is not None:
        os.close(ready_w)  # only the child holds it now: its exit closes the pipe
    return Launched(proc, log_path, ready_r)


def start(
    argv: Argv,
    *,
    log_path: Path | None = None,
    env: Mapping[str, str] | None = None,
    cwd: Path | str | None = None,
    timeout_s: float = READY_TIMEOUT_S,
) -> Launched:
    """``spawn`` with a ready pipe and ``wait_ready``; the server is stopped again if it does
    not become ready, and the ``LaunchError`` carries the end of its log."""
    launched = spawn(argv, log_path=log_path, env=env, cwd=cwd)
    try:
        launched.wait_ready(timeout_s)
    except LaunchError as exc:
        launched.stop()
        raise LaunchError(f"{exc}\n{launched.log_tail()}".rstrip()) from None
    except BaseException:
        launched.stop()
        raise
    return launched


def stop_group(
    proc: subprocess.Popen[bytes], grace_s: float = STOP_GRACE_S, term_group: bool = False
) -> int | None:
    """TERM the process (``term_group``: its whole group), wait up to ``grace_s``, then KILL
    the group it leads and reap it. Returns its exit status, None if it could not be reaped."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if term_group:
                os.killpg(proc.pid, signal.SIGTERM)
            else:
                os.kill(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=grace_s)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)  # the session: anything the server left behind
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=REAP_TIMEOUT_S)
    return proc.poll()


def _read_line(fd: int, proc: subprocess.Popen[bytes], deadline: float) -> str:
    """One line from ``fd``, waking on data, on the child's exit (pidfd) or at ``deadline``."""
    pidfd = _pidfd(proc.pid)
    try:
        buf = b""
        while b"\n" not in buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise LaunchError(f"not ready within the deadline (pid {proc.pid})")
            if proc.poll() is not None:
                raise LaunchError(f"exited with status {proc.returncode} before it was ready")
            watch = [fd] if pidfd is None else [fd, pidfd]
            slice_s = left if pidfd is not None else min(left, _FALLBACK_SLICE_S)
            readable, _, _ = select.select(watch, [], [], slice_s)
            if fd in readable:
                chunk = os.read(fd, 1024)
                if not chunk:  # EOF: the child (and all it forked) closed the pipe
                    proc.wait(timeout=max(0.0, deadline - time.monotonic()))
                buf += chunk
            elif readable:
                proc.wait(timeout=REAP_TIMEOUT_S)  # the pidfd: the child exited
    except subprocess.TimeoutExpired:
        raise LaunchError(f"closed its ready pipe but did not exit (pid {proc.pid})") from None
    finally:
        if pidfd is not None:
            os.close(pidfd)
    return buf.decode(errors="replace").split("\n")[0]


def _pidfd(pid: int) -> int | None:
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):
        return None
