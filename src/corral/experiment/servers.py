"""Start one configuration of the experiment, find its workers, read their memory, stop it.

Every process is started by ``corral.launch`` (its own session, so the group is exactly the
server's family) and stopped by ``Server.stop`` (TERM, wait, KILL the group), which the caller
runs in a ``finally``. A corral preset is ``corral serve APP --gc PRESET`` with port 0, a stats
server on port 0 and pymalloc reports every second; it says it is ready on its ready fd. The
gunicorn comparison (``--preload``, sync workers) has no ready signal: it is probed, as
``corral.launch`` leaves to the caller, by ``GET`` on the first traffic path until it answers and
all its workers exist, with a deadline.

Memory of a worker (``sample_worker``): ``smaps_rollup`` (RSS, PSS, USS = private, shared =
Shared_Clean + Shared_Dirty) and ``pagemap`` bit 56 over the anonymous ranges of the process it
was forked from (corral's zygote, gunicorn's master), taken once when the server is ready:
the share of the inherited heap pages the worker still shares.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import re
import socket
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from corral import launch
from corral.chaos.target import read_stats
from corral.memory import attribution
from corral.memory.proc import (
    AddressRange,
    MemoryProbeError,
    anonymous_ranges,
    pagemap_cow,
    read_smaps_rollup,
)

BOOT_TIMEOUT_S = 180.0  # a large monolith imports for 5-10 s, more on a shared machine
HTTP_TIMEOUT_S = 10.0
PROBE_S = 0.1
STOP_GRACE_S = 15.0
MALLOC_STATS_S = 1.0
CORRAL_PRESETS = ("cpython", "freeze", "instagram", "auto")
GUNICORN = "gunicorn"
_STATS_LOG = re.compile(r"stats on http://(\S+?)\)")
_SEVERE = re.compile(r"\[(ERROR|CRITICAL)\]")
_LOG_PREFIX = re.compile(
    r"^\[?\d{4}-\d\d-\d\d [\d:,]+(?: [+-]\d{4})?\]? \[\d+\] \[[A-Z]+\] (?:[\w.]+: )?"
)
ASGI_GUNICORN_WORKERS = ("uvicorn_worker.UvicornWorker", "uvicorn.workers.UvicornWorker")
_INTERFACE = (
    "import sys\n"
    "from corral.asgi.detect import is_asgi\n"
    "from corral.master.appload import load_app\n"
    "print('asgi' if is_asgi(load_app(sys.argv[1], sys.argv[2])) else 'wsgi')\n"
)
MIB = 1 << 20


class ServerError(Exception):
    """A configuration could not be started or read; one line for the user."""


@dataclass(frozen=True)
class Options:
    """What every configuration shares."""

    app: str
    workers: int
    python: str
    chdir: str
    env: dict[str, str]
    serve_args: tuple[str, ...] = ()
    probe_path: str = "/"
    gunicorn_worker: str = "sync"  # -k for the comparison: an ASGI app needs uvicorn's


@dataclass
class Server:
    """A started configuration. ``prefork`` maps a worker pid to the pid it was forked from."""

    name: str
    launched: launch.Launched
    url: str
    command: list[str]
    stats_addr: str | None = None
    ranges: dict[int, list[AddressRange]] = field(default_factory=dict)  # by parent pid

    @property
    def pid(self) -> int:
        return self.launched.pid

    def stats(self) -> dict[str, Any] | None:
        """/stats of a corral server (None for gunicorn or when it does not answer)."""
        return None if self.stats_addr is None else read_stats(self.stats_addr, HTTP_TIMEOUT_S)

    def workers(self) -> list[tuple[int, int]]:
        """(worker pid, pid it was forked from) for each live worker: gunicorn's are its
        master's children; corral's are in /stats (its master's children include the zygote,
        which must never be sampled as a worker)."""
        if self.stats_addr is None:
            return [(pid, self.pid) for pid in children(self.pid)]
        doc = self.stats()
        if doc is None:
            raise ServerError(f"corral --gc {self.name}: its stats server does not answer")
        out = []
        for w in doc["workers"]:
            if w["state"] == "ready":
                zygote = attribution.find_zygote(self.pid, int(w["generation"]))
                out.append((int(w["pid"]), zygote or self.pid))
        return sorted(out)

    def prefork_ranges(self, parent: int) -> list[AddressRange]:
        """The parent's anonymous ranges, read once (the parent is idle after the fork)."""
        if parent not in self.ranges:
            self.ranges[parent] = anonymous_ranges(parent)
        return self.ranges[parent]

    def stop(self) -> int | None:
        return self.launched.stop(STOP_GRACE_S)


def children(pid: int) -> list[int]:
    """Direct children of ``pid`` (from /proc)."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(MemoryProbeError, ValueError, IndexError, PermissionError):
                if attribution.parent_pid(int(entry)) == pid:
                    out.append(int(entry))
    return sorted(out)


def family(pid: int) -> list[int]:
    """``pid`` and all its descendants."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children(p))
    return out


def sample_worker(server: Server, pid: int, parent: int) -> dict[str, Any]:
    """One worker's figures in bytes, and its still-shared share of the inherited heap."""
    mem = read_smaps_rollup(pid)
    cow = pagemap_cow(pid, server.prefork_ranges(parent))
    return {
        "pid": pid,
        "rss": mem.rss,
        "pss": mem.pss,
        "uss": mem.uss,
        "shared": mem.shared,
        "prefork_shared_pct": round(100 * cow.shared_fraction, 2),
    }


def fleet_pss(pid: int) -> int:
    """PSS of the server's whole family: what it costs, shared pages counted once."""
    total = 0
    for p in family(pid):
        with contextlib.suppress(MemoryProbeError, PermissionError):
            total += read_smaps_rollup(p).pss
    return total


# --- starting -----------------------------------------------------------------------------------


def start(name: str, opts: Options, log_path: Path) -> Server:
    """Start the configuration ``name`` (a corral preset or ``gunicorn``), ready to serve."""
    if name == GUNICORN:
        return _start_gunicorn(opts, log_path)
    return _start_corral(name, opts, log_path)


def _start_corral(preset: str, opts: Options, log_path: Path) -> Server:
    args = [opts.app, "-b", "127.0.0.1:0", "-w", str(opts.workers), "--gc", preset]
    args += ["--stats", "127.0.0.1:0", "--malloc-stats-s", f"{MALLOC_STATS_S:g}"]
    args += ["--chdir", opts.chdir, *opts.serve_args]
    build = launch.corral_serve(*args, python=opts.python)
    start_at = log_path.stat().st_size if log_path.exists() else 0  # the log is appended to
    try:
        launched = launch.start(build, log_path=log_path, env=opts.env, timeout_s=BOOT_TIMEOUT_S)
    except launch.LaunchError as exc:
        raise ServerError(f"corral --gc {preset} did not start: {why_failed(str(exc))}") from None
    with open(log_path, "rb") as f:  # this start's lines only, not an earlier run's
        f.seek(start_at)
        match = _STATS_LOG.search(f.read().decode(errors="replace"))
    server = Server(preset, launched, launched.url, ["corral", "serve", *args])
    if match is None:  # logged before the ready fd is written
        server.stop()
        raise ServerError(f"corral --gc {preset} did not log its stats address")
    server.stats_addr = match.group(1)
    return server


def _start_gunicorn(opts: Options, log_path: Path) -> Server:
    port = _free_port()
    args = ["--preload", "-w", str(opts.workers), "-b", f"127.0.0.1:{port}"]
    args += ["-k", opts.gunicorn_worker, "--chdir", opts.chdir, "--timeout", "120", opts.app]
    cmd = [opts.python, "-m", "gunicorn", *args]
    launched = launch.spawn(cmd, log_path=log_path, env=opts.env, ready_pipe=False)
    server = Server(GUNICORN, launched, f"http://127.0.0.1:{port}", ["gunicorn", *args])
    try:
        _probe(server, opts, time.monotonic() + BOOT_TIMEOUT_S)
    except BaseException:
        server.stop()
        raise
    return server


def _probe(server: Server, opts: Options, deadline: float) -> None:
    port = int(server.url.rpartition(":")[2])
    while time.monotonic() < deadline:
        if server.launched.proc.poll() is not None:
            tail = why_failed(server.launched.log_tail())
            raise ServerError(f"gunicorn exited before it was ready: {tail}")
        if len(children(server.pid)) >= opts.workers and _answers(port, opts.probe_path):
            return
        time.sleep(PROBE_S)
    raise ServerError(f"gunicorn not ready within {BOOT_TIMEOUT_S:g}s")


def _answers(port: int, path: str) -> bool:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=HTTP_TIMEOUT_S)
    try:
        conn.request("GET", path)
        conn.getresponse().read()
        return True
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _last_line(text: str) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1].strip() if lines else "no output"


def why_failed(log: str) -> str:
    """The line of a failed start's log that says why: the last ``ERROR``/``CRITICAL`` record
    (``master exiting with code 4`` after it says nothing), else the last line; without the
    timestamp and pid prefix."""
    lines = [ln.strip() for ln in log.strip().splitlines() if ln.strip()]
    errors = [ln for ln in lines if _SEVERE.search(ln)]
    line = errors[-1] if errors else (lines[-1] if lines else "no output")
    return _LOG_PREFIX.sub("", line, count=1)


def has_gunicorn(python: str) -> bool:
    """Whether ``python`` can import gunicorn (the optional comparison)."""
    import subprocess

    try:
        done = subprocess.run(
            [python, "-c", "import gunicorn"], capture_output=True, timeout=HTTP_TIMEOUT_S
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def app_interface(opts: Options) -> str | None:
    """``asgi`` or ``wsgi``: how corral would serve the app (one throwaway import, only to pick
    gunicorn's worker class); ``None`` when the import fails (the corral start reports why)."""
    import subprocess

    env = {**os.environ, **opts.env}
    try:
        done = subprocess.run(
            [opts.python, "-c", _INTERFACE, opts.app, opts.chdir],
            capture_output=True,
            text=True,
            timeout=BOOT_TIMEOUT_S,
            cwd=opts.chdir,
            env=env,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    out = done.stdout.strip().splitlines()
    return out[-1] if done.returncode == 0 and out and out[-1] in ("asgi", "wsgi") else None


def asgi_gunicorn_worker(python: str) -> str | None:
    """The uvicorn worker class ``python`` can import for gunicorn (an ASGI app), or None."""
    import subprocess

    for worker in ASGI_GUNICORN_WORKERS:
        module = worker.rpartition(".")[0]
        try:
            done = subprocess.run(
                [python, "-c", f"import {module}"], capture_output=True, timeout=HTTP_TIMEOUT_S
            )
        except (OSError, subprocess.TimeoutExpired):
            continue
        if done.returncode == 0:
            return worker
    return None


def python_version(python: str) -> str:
    """``3.13.0`` for ``python`` (raises ServerError when it is not a Python with corral)."""
    import subprocess

    code = "import sys, corral; print('%d.%d.%d' % sys.version_info[:3])"
    try:
        done = subprocess.run(
            [python, "-c", code], capture_output=True, text=True, timeout=HTTP_TIMEOUT_S * 3
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ServerError(f"cannot run --python {python}: {exc}") from None
    version = done.stdout.strip()
    if done.returncode != 0 and "corral" in done.stderr and "ModuleNotFoundError" in done.stderr:
        raise ServerError(f"--python {python} cannot import corral: install corral into it")
    if done.returncode != 0 or not re.fullmatch(r"\d+\.\d+\.\d+", version):
        raise ServerError(f"--python {python}: not a Python interpreter that can run corral")
    return version


def default_python() -> str:
    return sys.executable


def check_workers(server: Server, expected: int) -> Sequence[tuple[int, int]]:
    found = server.workers()
    if len(found) < expected:
        raise ServerError(f"{server.name}: {len(found)} of {expected} workers are serving")
    return found
