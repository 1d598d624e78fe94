"""Copy-on-write benchmark: how much of a preloaded heap each server's workers keep shared.

Theory of operation. The Instagram experiment done properly: for each interpreter and server
configuration, start the server with 2 workers on 127.0.0.1 (a free port), wait until it answers
and every worker's RSS has settled, then drive the app's heaviest read-only view with ``wrk``
(keep-alive, ``-t2 -c8``) in slices that stop at exact request counts, and after each slice read
every process's ``/proc/PID/smaps_rollup`` (and, for preloading servers, the pagemap of each
worker over the parent's anonymous ranges). Reading shared objects is what copies their pages
(reference counts, GC headers), so the figures are taken *after* real traffic, never only at fork.

Stopping at a request count: ``wrk`` has no ``-n``; a Lua ``response()`` hook counts replies and
calls ``wrk.thread:stop()`` at ``N / threads`` per thread, so each slice sends N requests (plus
at most the ones in flight on each connection when a thread stops; the real total from wrk's
summary is what is recorded and summed).

One wrk thread (``-t1 -c8``), not two: a thread that has had its share stops, and the
connections it leaves open (accepted, no request sent) block a worker that serves one
connection at a time (gunicorn's sync worker) in ``recv`` until the master's 30 s timeout kills
it, so the workers measured would be fresh ones. With one thread, wrk exits (closing every
connection) a few ms after the last response. One wrk thread is far faster than these servers.

Definitions (all MiB = 2**20 bytes, from smaps_rollup):

* private = USS = Private_Clean + Private_Dirty of a worker: what killing it would free;
* shared = Shared_Clean + Shared_Dirty of a worker; shared % = shared / Rss;
* fleet PSS = sum of Pss over the server's main process and all its descendants (master,
  zygote, workers): the memory the whole server costs, shared pages counted once;
* baseline = fleet PSS - sum of the workers' USS: what the server costs with no worker-private
  memory (the shared heap counted once, plus master and zygote private memory);
* workers in 8 GiB = floor((8 GiB - baseline) / mean worker USS): how many workers of this
  size fit in a machine with 8 GiB for the server, if every added worker costs its USS;
* pre-fork pages shared (pagemap): of the parent's anonymous heap pages present in a worker,
  the share still mapped by more than one process (bit 56 clear). Parent = corral's zygote,
  gunicorn's and uWSGI's master; granian loads the app in each worker (no parent heap).

Usage (from the repository root; venvs per interpreter, created with ``--setup``)::

    /tmp/cowbench-3.12/bin/python benchmarks/cow.py --setup --pythons 3.11,3.12,3.13
    /tmp/cowbench-3.12/bin/python benchmarks/cow.py --quick
    /tmp/cowbench-3.12/bin/python benchmarks/cow.py --pythons 3.12 --servers corral-auto,gunicorn
    /tmp/cowbench-3.12/bin/python benchmarks/cow.py --report-only

Writes ``benchmarks/results/cow-<app>-py<ver>-<server>.json`` per run, then (from every JSON
file there) ``benchmarks/COW.md`` and ``benchmarks/results/cow.png``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from corral.launch import stop_group
from corral.memory.proc import (
    MemoryProbeError,
    anonymous_ranges,
    pagemap_cow,
    read_smaps_rollup,
)

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"
REPORT = REPO / "benchmarks" / "COW.md"
REQUIREMENTS = REPO / "benchmarks" / "requirements.txt"
GUNICORN_FREEZE_CONF = REPO / "examples" / "gunicorn_freeze.conf.py"
INTERPRETERS = {
    "3.11": "/root/.pyenv/versions/3.11.7/bin/python3",
    "3.12": "/root/.pyenv/versions/3.12.1/bin/python3",
    "3.13": "/root/.pyenv/versions/3.13.0/bin/python3",
}
CORRAL_PRESETS = ("auto", "freeze", "cpython", "instagram")
SERVERS = (
    *(f"corral-{p}" for p in CORRAL_PRESETS),
    "gunicorn",
    "gunicorn-freeze",
    "uwsgi",
    "granian",
)
WORKERS = 2
MIB = 1 << 20
BUDGET_BYTES = 8 << 30  # "workers that fit in 8 GiB"
READY_TIMEOUT_S = 240.0  # the monolith takes ~10 s to import; granian imports it per worker
SETTLE_INTERVAL_S = 1.0
SETTLE_TOLERANCE = 0.01  # RSS of every worker within 1% across one interval
STOP_TIMEOUT_S = 30.0
ATTRIBUTION_TIMEOUT_S = 300.0
ATTRIBUTION_WORKER_TIMEOUT_S = 600
ATTRIBUTION_TOP = 12
WRK_LUA = """\
-- Stop each wrk thread after a fixed number of responses (wrk has no -n).
local limit = 0
local count = 0
function init(args)
  limit = tonumber(args[1])
end
function response(status, headers, body)
  count = count + 1
  if count == limit then
    io.write("cowbench: thread done\\n")
    io.flush()
    wrk.thread:stop()
  end
end
"""
THREAD_DONE = b"cowbench: thread done"


@dataclass(frozen=True)
class App:
    name: str
    module: str
    directory: Path
    path: str  # the view the load hits (and corral warms up)


APPS = {
    "monolith": App("monolith", "monolith.wsgi:application", REPO / "examples" / "monolith", "/"),
    "flaskheap": App("flaskheap", "flaskheap:app", REPO / "examples" / "flaskheap", "/users"),
}


@dataclass
class ProcMem:
    pid: int
    role: str
    rss_mib: float
    pss_mib: float
    uss_mib: float
    shared_mib: float
    cow_shared_mib: float | None = None
    cow_copied_mib: float | None = None

    @property
    def shared_pct(self) -> float:
        return 100.0 * self.shared_mib / self.rss_mib if self.rss_mib else 0.0


@dataclass
class Checkpoint:
    requests: int  # cumulative requests answered when this was taken
    procs: list[ProcMem]
    wrk: dict[str, float] = field(default_factory=dict)  # the slice that led here

    def workers(self) -> list[ProcMem]:
        return [p for p in self.procs if p.role == "worker"]


@dataclass
class Run:
    app: str
    python: str
    python_version: str
    server: str
    command: list[str]
    load_command: list[str]
    started_at: str
    ready_s: float
    checkpoints: list[Checkpoint]
    log_tail: str
    error: str | None = None
    corral_src: str | None = None  # PYTHONPATH override for corral runs (None: the venv's)
    attribution: dict[str, Any] | None = None  # corral's SIGUSR2 report for one worker


# --- server configurations ----------------------------------------------------------------------


def server_command(server: str, venv: Path, app: App, port: int) -> list[str]:
    """The exact command line that starts ``server`` with ``WORKERS`` workers."""
    bind, binpath = f"127.0.0.1:{port}", venv / "bin"
    if server.startswith("corral-"):
        preset = server.removeprefix("corral-")
        return [
            str(binpath / "corral"), "serve", app.module, "-b", bind, "-w", str(WORKERS),
            "--gc", preset, "--warmup", app.path, "--chdir", str(app.directory),
            "--log-level", "info",
        ]  # fmt: skip
    if server in ("gunicorn", "gunicorn-freeze"):
        cmd = [
            str(binpath / "gunicorn"), "--preload", "-k", "sync", "-w", str(WORKERS),
            "-b", bind, "--chdir", str(app.directory), "--log-level", "warning",
        ]  # fmt: skip
        if server == "gunicorn-freeze":
            cmd += ["-c", str(GUNICORN_FREEZE_CONF)]
        return [*cmd, app.module]
    if server == "uwsgi":
        return [
            str(binpath / "uwsgi"), "--master", "--http11-socket", bind, "--module", app.module,
            "--chdir", str(app.directory), "--processes", str(WORKERS), "--die-on-term",
            "--disable-logging", "--need-app",
        ]  # fmt: skip
    if server == "granian":
        return [
            str(binpath / "granian"), "--interface", "wsgi", "--workers", str(WORKERS),
            "--host", "127.0.0.1", "--port", str(port), "--working-dir", str(app.directory),
            "--log-level", "warning", app.module,
        ]  # fmt: skip
    raise ValueError(f"unknown server {server!r}; known: {', '.join(SERVERS)}")


# --- processes ----------------------------------------------------------------------------------


def children(pid: int) -> list[int]:
    """Direct children, from /proc/PID/task/*/children (Linux >= 3.5)."""
    out: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except FileNotFoundError:
        return out
    for tid in tasks:
        try:
            out += [int(c) for c in Path(f"/proc/{pid}/task/{tid}/children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue
    return out


def descendants(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        kids = children(todo.pop())
        found += kids
        todo += kids
    return found


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except (FileNotFoundError, ProcessLookupError):
        return ""


def classify(server: str, main: int) -> dict[int, str]:
    """pid -> role (main, zygote, worker, helper) for the server's process tree."""
    roles = {main: "main"}
    if server.startswith("corral-"):
        for pid in children(main):
            line = cmdline(pid)
            roles[pid] = "worker" if "corral worker" in line else (
                "zygote" if "corral zygote" in line else "helper")  # fmt: skip
        return roles
    for pid in children(main):
        roles[pid] = "worker"
    for pid in descendants(main):
        roles.setdefault(pid, "helper")
    return roles


def parent_of_heap(roles: dict[int, str], server: str) -> int | None:
    """The process the workers were forked from with the app loaded (None: no shared heap)."""
    if server == "granian":
        return None
    if server.startswith("corral-"):
        return next((p for p, r in roles.items() if r == "zygote"), None)
    return next(p for p, r in roles.items() if r == "main")


def measure(server: str, main: int) -> list[ProcMem]:
    roles = classify(server, main)
    parent = parent_of_heap(roles, server)
    ranges = anonymous_ranges(parent) if parent is not None else None
    out: list[ProcMem] = []
    for pid, role in roles.items():
        try:
            out.append(_measure_one(pid, role, ranges))
        except MemoryProbeError:
            continue  # exited between listing and reading
    return out


def _measure_one(pid: int, role: str, ranges: Any) -> ProcMem:
    s = read_smaps_rollup(pid)
    mem = ProcMem(pid, role, s.rss / MIB, s.pss / MIB, s.uss / MIB, s.shared / MIB)
    if role == "worker" and ranges is not None:
        cow = pagemap_cow(pid, ranges)
        mem.cow_shared_mib = cow.shared_bytes / MIB
        mem.cow_copied_mib = cow.exclusive_bytes / MIB
    return mem


# --- lifecycle ----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def http_ok(port: int, path: str, timeout_s: float = 5.0) -> bool:
    """One GET with Connection: close; True on a 200."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as s:
            s.sendall(
                f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode()
            )
            head = s.recv(64)
    except OSError:
        return False
    return head.startswith((b"HTTP/1.1 200", b"HTTP/1.0 200"))


def wait_ready(proc: subprocess.Popen[bytes], server: str, port: int, app: App) -> None:
    """Ready = the port answers 200, WORKERS workers exist and their RSS stopped moving."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while not http_ok(port, app.path):
        _check_alive(proc, deadline)
        time.sleep(0.2)
    last: dict[int, int] = {}
    while True:
        _check_alive(proc, deadline)
        rss = _worker_rss(server, proc.pid)
        if len(rss) == WORKERS and last and _settled(last, rss):
            return
        last = rss
        time.sleep(SETTLE_INTERVAL_S)


def _check_alive(proc: subprocess.Popen[bytes], deadline: float) -> None:
    if proc.poll() is not None:
        raise RuntimeError(f"server exited with {proc.returncode} before it was ready")
    if time.monotonic() > deadline:
        raise RuntimeError(f"server not ready after {READY_TIMEOUT_S:.0f} s")


def _worker_rss(server: str, main: int) -> dict[int, int]:
    out = {}
    for pid, role in classify(server, main).items():
        if role == "worker":
            try:
                out[pid] = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
            except (FileNotFoundError, ProcessLookupError, IndexError):
                continue
    return out


def _settled(before: dict[int, int], now: dict[int, int]) -> bool:
    if before.keys() != now.keys():
        return False
    return all(abs(now[p] - before[p]) <= SETTLE_TOLERANCE * max(before[p], 1) for p in now)


def stop(proc: subprocess.Popen[bytes]) -> None:
    """TERM the main process, wait, then KILL its whole session (it runs in its own)."""
    stop_group(proc, STOP_TIMEOUT_S)


# --- load ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Load:
    threads: int
    connections: int
    script: Path
    max_slice_s: int

    def command(self, port: int, path: str, requests: int) -> list[str]:
        per_thread = max(1, math.ceil(requests / self.threads))
        return [
            "wrk", f"-t{self.threads}", f"-c{self.connections}", f"-d{self.max_slice_s}s",
            "-s", str(self.script), f"http://127.0.0.1:{port}{path}", "--", str(per_thread),
        ]  # fmt: skip


_WRK_TOTAL = re.compile(r"(\d+) requests in ([\d.]+)(us|ms|s|m)")
_WRK_NON2XX = re.compile(r"Non-2xx or 3xx responses: (\d+)")
_WRK_SOCKET = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")
_UNIT_S = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}


def parse_wrk(text: str) -> dict[str, float]:
    """requests, seconds, rps, non_2xx, socket_errors from wrk's summary."""
    m = _WRK_TOTAL.search(text)
    if not m:
        raise RuntimeError(f"wrk printed no summary:\n{text}")
    requests, seconds = int(m.group(1)), float(m.group(2)) * _UNIT_S[m.group(3)]
    non2xx = _WRK_NON2XX.search(text)
    sock = _WRK_SOCKET.search(text)
    return {
        "requests": requests,
        "seconds": seconds,
        "rps": requests / seconds if seconds else 0.0,
        "non_2xx": int(non2xx.group(1)) if non2xx else 0,
        "socket_errors": sum(int(g) for g in sock.groups()) if sock else 0,
    }


def run_slice(load: Load, port: int, path: str, requests: int) -> dict[str, float]:
    """One wrk run that ends once every thread has had its share of responses.

    ``wrk.thread:stop()`` stops a thread's event loop, but wrk's main thread still sleeps
    for the whole ``-d``; SIGINT ends that sleep and wrk then prints its summary, with the
    elapsed time measured up to the signal (a few ms after the last response).
    """
    cmd = load.command(port, path, requests)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert proc.stdout is not None
    fd = proc.stdout.fileno()  # raw reads: a buffered reader would hide lines from select()
    deadline = time.monotonic() + load.max_slice_s + 30
    out = b""
    with selectors.DefaultSelector() as sel:
        sel.register(fd, selectors.EVENT_READ)
        while out.count(THREAD_DONE) < load.threads and time.monotonic() < deadline:
            if not sel.select(timeout=1.0):
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                break  # wrk exited on its own (its -d ran out, or an error)
            out += chunk
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    rest, _ = proc.communicate(timeout=60)
    return parse_wrk((out + rest).decode(errors="replace"))


# --- one run ------------------------------------------------------------------------------------


def run_one(
    app: App,
    python: str,
    venv: Path,
    server: str,
    targets: Sequence[int],
    load: Load,
    corral_src: Path | None = None,
    attribute: bool = False,
) -> Run:
    port = free_port()
    cmd = server_command(server, venv, app, port)
    if attribute and server.startswith("corral-"):
        # The attribution walk runs in the worker's loop and can outlast the 30 s heartbeat
        # timeout on a contended machine; the master would then kill the worker mid-report.
        cmd += ["--timeout-s", str(ATTRIBUTION_WORKER_TIMEOUT_S)]
    log = tempfile.TemporaryFile()  # noqa: SIM115 (closed in the finally below)
    started = time.monotonic()
    proc = subprocess.Popen(
        cmd, cwd=app.directory, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        env=_server_env(server, corral_src),
    )  # fmt: skip
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    run = Run(
        app.name, python, _python_version(venv), server, cmd,
        load.command(port, app.path, targets[0]), stamp, 0.0, [], "",
    )  # fmt: skip
    try:
        wait_ready(proc, server, port, app)
        run.ready_s = time.monotonic() - started
        _drive(run, proc, server, port, app, targets, load)
        if attribute and server.startswith("corral-"):
            run.attribution = attribute_worker(proc.pid, port)
    except (RuntimeError, subprocess.TimeoutExpired, MemoryProbeError) as exc:
        run.error = str(exc)
    finally:
        stop(proc)
        log.seek(0)
        run.log_tail = log.read().decode(errors="replace")[-4000:]
        log.close()
    return run


def _drive(
    run: Run,
    proc: subprocess.Popen[bytes],
    server: str,
    port: int,
    app: App,
    targets: Sequence[int],
    load: Load,
) -> None:
    run.checkpoints.append(Checkpoint(0, measure(server, proc.pid)))
    done = 0
    for target in targets:
        stats = run_slice(load, port, app.path, target - done)
        done += int(stats["requests"])
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} under load")
        run.checkpoints.append(Checkpoint(done, measure(server, proc.pid), stats))
        _progress(run)


def attribute_worker(main: int, port: int) -> dict[str, Any]:
    """Ask one corral worker (SIGUSR2) which objects sit on its copied pages; wait for its report.

    The worker acts on the signal from its loop, so /health requests are sent until the report
    file appears (one of them reaches that worker). Done after the last measurement: the walk
    itself touches objects, so this worker's figures would mean nothing afterwards.
    """
    roles = classify("corral-auto", main)
    pid = min(p for p, r in roles.items() if r == "worker")
    path = Path(tempfile.gettempdir()) / f"corral-cow-{pid}.json"  # attribution.report_path
    path.unlink(missing_ok=True)
    os.kill(pid, signal.SIGUSR2)
    deadline = time.monotonic() + ATTRIBUTION_TIMEOUT_S
    while time.monotonic() < deadline:
        if path.exists():
            report: dict[str, Any] = json.loads(path.read_text())
            path.unlink(missing_ok=True)
            return {k: v[:ATTRIBUTION_TOP] if isinstance(v, list) else v for k, v in report.items()}
        http_ok(port, "/health")
        time.sleep(0.2)
    return {"pid": pid, "error": f"no report after {ATTRIBUTION_TIMEOUT_S:.0f} s"}


def _server_env(server: str, corral_src: Path | None) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)  # the venv's own packages only...
    if corral_src is not None and server.startswith("corral-"):
        env["PYTHONPATH"] = str(corral_src / "src")  # ...unless told to test another corral tree
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _python_version(venv: Path) -> str:
    out = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import sys; print(sys.version.split()[0])"],
        capture_output=True, text=True, timeout=30, check=True,
    )  # fmt: skip
    return out.stdout.strip()


def _progress(run: Run) -> None:
    cp = run.checkpoints[-1]
    ws = cp.workers()
    priv = sum(w.uss_mib for w in ws) / max(len(ws), 1)
    print(
        f"  {run.server:<17} {cp.requests:>7} req  {cp.wrk.get('rps', 0):7.0f} rps  "
        f"private/worker {priv:7.1f} MiB",
        flush=True,
    )


# --- venvs --------------------------------------------------------------------------------------


def venv_path(root: Path, python: str) -> Path:
    return root / f"cowbench-{python}"


def setup_venv(python: str, venv: Path) -> None:
    if not (venv / "bin" / "python").exists():
        subprocess.run([INTERPRETERS[python], "-m", "venv", str(venv)], check=True)
    subprocess.run(
        [str(venv / "bin" / "pip"), "install", "-q", "-r", str(REQUIREMENTS), "-e", str(REPO)],
        check=True,
    )


# --- summary ------------------------------------------------------------------------------------


def summarize(cp: Checkpoint, server: str) -> dict[str, float | None]:
    """The figures reported for one checkpoint (means over the workers)."""
    ws = cp.workers()
    n = max(len(ws), 1)
    fleet_pss = sum(p.pss_mib for p in cp.procs)
    private = sum(w.uss_mib for w in ws) / n
    baseline = fleet_pss - sum(w.uss_mib for w in ws)
    cow = [w for w in ws if w.cow_shared_mib is not None]
    cow_pct = None
    if cow:
        shared = sum(w.cow_shared_mib or 0.0 for w in cow)
        copied = sum(w.cow_copied_mib or 0.0 for w in cow)
        cow_pct = 100.0 * shared / (shared + copied) if shared + copied else None
    return {
        "private_mib": private,
        "shared_mib": sum(w.shared_mib for w in ws) / n,
        "shared_pct": sum(w.shared_pct for w in ws) / n,
        "pss_mib": sum(w.pss_mib for w in ws) / n,
        "rss_mib": sum(w.rss_mib for w in ws) / n,
        "fleet_pss_mib": fleet_pss,
        "baseline_mib": baseline,
        "fit_8gib": math.floor((BUDGET_BYTES / MIB - baseline) / private) if private > 0 else None,
        "cow_shared_pct": cow_pct,
        "copied_mib": (sum(w.cow_copied_mib or 0.0 for w in cow) / len(cow)) if cow else None,
    }


def load_runs(directory: Path) -> list[dict[str, Any]]:
    runs = []
    for path in sorted(directory.glob("cow-*.json")):
        runs.append(json.loads(path.read_text()))
    return runs


def _checkpoint(run: dict[str, Any], index: int) -> Checkpoint:
    raw = run["checkpoints"][index]
    return Checkpoint(raw["requests"], [ProcMem(**p) for p in raw["procs"]], raw.get("wrk", {}))


def _fmt(v: float | None, spec: str = ".1f") -> str:
    return "-" if v is None else format(v, spec)


def _groups(runs: list[dict[str, Any]]) -> Iterator[tuple[str, str, list[dict[str, Any]]]]:
    keys = sorted({(r["app"], r["python"]) for r in runs})
    for app, py in keys:
        rows = [r for r in runs if r["app"] == app and r["python"] == py and r["checkpoints"]]
        rows.sort(key=lambda r: SERVERS.index(r["server"]) if r["server"] in SERVERS else 99)
        yield app, py, rows


def markdown(runs: list[dict[str, Any]]) -> str:
    out = [_main_table(runs), "", _trajectory_table(runs), "", _attributions(runs), _commands(runs)]
    return "\n".join(out)


def _attributions(runs: list[dict[str, Any]]) -> str:
    """What sits on the pages corral workers copied (only runs made with --attribute)."""
    lines: list[str] = []
    for r in runs:
        rep = r.get("attribution")
        if not rep or "types" not in rep:
            continue
        lines.append(
            f"Copied pages of one {r['server']} worker ({r['app']}, Python {r['python_version']}, "
            f"after the last checkpoint): {rep['copied_bytes'] / MIB:.1f} MiB copied, "
            f"{rep['attributed_bytes'] / MIB:.1f} MiB of it under live objects. By type: "
            + ", ".join(f"{t['name']} {t['bytes'] / MIB:.2f}" for t in rep["types"][:8])
            + " MiB. By module: "
            + ", ".join(f"{m['name']} {m['bytes'] / MIB:.2f}" for m in rep["modules"][:8])
            + " MiB."
        )
        lines.append("")
    return "\n".join(lines)


def _main_table(runs: list[dict[str, Any]]) -> str:
    lines = [
        "| app | Python | server | requests | req/s | private/worker MiB | x gunicorn | "
        "shared/worker MiB | shared % of RSS | pre-fork pages shared | PSS/worker MiB | "
        "fleet PSS MiB | workers in 8 GiB |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for app, _py, rows in _groups(runs):
        for r in rows:
            cp = _checkpoint(r, -1)
            s = summarize(cp, r["server"])
            ref = _reference_private(rows, cp.requests)
            ratio = s["private_mib"] / ref if ref and s["private_mib"] is not None else None
            lines.append(
                f"| {app} | {r['python_version']} | {r['server']} | {cp.requests} | "
                f"{_rps(r)} | {_fmt(s['private_mib'])} | {_fmt(ratio, '.3f')} | "
                f"{_fmt(s['shared_mib'])} | {_fmt(s['shared_pct'])}% | "
                f"{_fmt(s['cow_shared_pct'])}{'%' if s['cow_shared_pct'] is not None else ''} | "
                f"{_fmt(s['pss_mib'])} | {_fmt(s['fleet_pss_mib'], '.0f')} | "
                f"{_fmt(s['fit_8gib'], 'd') if s['fit_8gib'] is not None else '-'} |"
                + (f" ERROR: {r['error']}" if r.get("error") else "")
            )
    return "\n".join(lines)


def _reference_private(rows: list[dict[str, Any]], requests: int) -> float | None:
    """gunicorn --preload's private MiB per worker at the checkpoint nearest ``requests``."""
    for r in rows:
        if r["server"] == "gunicorn":
            points = [_checkpoint(r, i) for i in range(1, len(r["checkpoints"]))]
            if not points:
                return None
            cp = min(points, key=lambda c: abs(c.requests - requests))
            return summarize(cp, "gunicorn")["private_mib"]
    return None


def _rps(run: dict[str, Any]) -> str:
    slices = [cp.get("wrk", {}) for cp in run["checkpoints"][1:]]
    reqs = sum(s.get("requests", 0) for s in slices)
    secs = sum(s.get("seconds", 0) for s in slices)
    return f"{reqs / secs:.0f}" if secs else "-"


def _trajectory_table(runs: list[dict[str, Any]]) -> str:
    lines = [
        "Private MiB per worker (mean of 2) and shared % of RSS, at each checkpoint:",
        "",
        "| app | Python | server | " + " | ".join(["at requests: private MiB (shared %)"]) + " |",
        "|---|---|---|---|",
    ]
    for app, _py, rows in _groups(runs):
        for r in rows:
            cells = []
            for i in range(len(r["checkpoints"])):
                cp = _checkpoint(r, i)
                s = summarize(cp, r["server"])
                cells.append(f"{cp.requests}: {_fmt(s['private_mib'])} ({_fmt(s['shared_pct'])}%)")
            lines.append(f"| {app} | {r['python_version']} | {r['server']} | {'; '.join(cells)} |")
    return "\n".join(lines)


def _commands(runs: list[dict[str, Any]]) -> str:
    lines = ["Exact command lines (ports vary per run; the venv path is per interpreter):", ""]
    seen: set[str] = set()
    for r in runs:
        key = f"{r['app']}-{r['python']}-{r['server']}"
        if key in seen:
            continue
        seen.add(key)
        lines.append(f"- `{' '.join(r['command'])}`")
    sample = runs[0]["load_command"] if runs else []
    lines += ["", f"Load (each slice): `{' '.join(sample)}` (the argument after `--` is requests "
              "per thread of that slice)."]  # fmt: skip
    return "\n".join(lines)


def chart(runs: list[dict[str, Any]], path: Path) -> None:
    """Stacked bars per server: shared and private MiB per worker at the last checkpoint."""
    import matplotlib  # type: ignore[import-not-found, unused-ignore]

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # type: ignore[import-not-found, unused-ignore]

    groups = [g for g in _groups(runs) if g[2]]
    if not groups:
        return
    fig, axes = plt.subplots(1, len(groups), figsize=(4.2 * len(groups), 5.2), squeeze=False)
    for ax, (app, _py, rows) in zip(axes[0], groups, strict=True):
        points = [_checkpoint(r, -1) for r in rows]
        pairs = list(zip(rows, points, strict=True))
        names = [f"{r['server']}\n{cp.requests / 1000:.0f}k req" for r, cp in pairs]
        sums = [summarize(cp, r["server"]) for r, cp in pairs]
        shared = [s["shared_mib"] or 0.0 for s in sums]
        private = [s["private_mib"] or 0.0 for s in sums]
        ax.bar(names, shared, label="shared", color="#4c8c4a")
        ax.bar(names, private, bottom=shared, label="private (USS)", color="#c8553d")
        ax.set_title(f"{app}, Python {rows[0]['python_version']}", fontsize=9)
        ax.set_ylabel("MiB per worker")
        ax.tick_params(axis="x", rotation=60, labelsize=8)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=2, fontsize=8)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --- main ---------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--pythons", default="3.11,3.12,3.13")
    p.add_argument("--servers", default=",".join(SERVERS))
    p.add_argument("--apps", default="monolith")
    p.add_argument("--requests", default="20000,100000",
                   help="cumulative request counts at which memory is measured")  # fmt: skip
    p.add_argument("--quick", action="store_true", help="2000,10000 requests (smoke run)")
    p.add_argument("--venv-root", type=Path, default=Path("/tmp"))
    p.add_argument("--setup", action="store_true", help="create/update the venvs and exit")
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--report", type=Path, default=REPORT, help="Markdown file to update")
    p.add_argument("--report-only", action="store_true")
    p.add_argument("--attribute", action="store_true",
                   help="after the last checkpoint, ask one corral worker (SIGUSR2) what "
                   "objects sit on its copied pages (kept in the JSON and report)")  # fmt: skip
    p.add_argument("--corral-src", type=Path, default=None,
                   help="run corral from this source tree (PYTHONPATH=DIR/src) instead of the "
                   "venv's editable install")  # fmt: skip
    p.add_argument("--threads", type=int, default=1,
                   help="wrk threads (1: see 'One wrk thread' in the docstring)")  # fmt: skip
    p.add_argument("--connections", type=int, default=8)
    p.add_argument("--max-slice-s", type=int, default=900)
    return p.parse_args(list(argv))


def main(argv: Sequence[str]) -> int:
    args = parse_args(argv)
    pythons = [p for p in args.pythons.split(",") if p]
    if args.setup:
        for py in pythons:
            setup_venv(py, venv_path(args.venv_root, py))
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    if not args.report_only:
        _run_matrix(args, pythons)
    runs = load_runs(args.out)
    text = markdown(runs)
    print(text)
    _write_report(text, args.report)
    chart(runs, args.out / "cow.png")
    return 0


def _run_matrix(args: argparse.Namespace, pythons: list[str]) -> None:
    targets = [2000, 10000] if args.quick else [int(x) for x in args.requests.split(",")]
    if shutil.which("wrk") is None:
        raise SystemExit("wrk not found: apt-get install -y wrk")
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(WRK_LUA)
    load = Load(args.threads, args.connections, Path(f.name), args.max_slice_s)
    try:
        for app_name in args.apps.split(","):
            for py in pythons:
                for server in args.servers.split(","):
                    _one(args, APPS[app_name], py, server, targets, load)
    finally:
        os.unlink(f.name)


def _one(
    args: argparse.Namespace, app: App, py: str, server: str, targets: list[int], load: Load
) -> None:
    venv = venv_path(args.venv_root, py)
    print(f"{app.name} py{py} {server}: starting", flush=True)
    run = run_one(app, py, venv, server, targets, load, args.corral_src, args.attribute)
    run.corral_src = (
        str(args.corral_src) if args.corral_src and server.startswith("corral") else None
    )
    if run.error:
        print(f"  {server}: ERROR {run.error}\n{run.log_tail[-1500:]}", flush=True)
    path = args.out / f"cow-{app.name}-py{py}-{server}.json"
    path.write_text(json.dumps(asdict(run), indent=1) + "\n")


def _write_report(table: str, report: Path) -> None:
    """Replace the generated block of ``report`` (between markers), keeping the prose around."""
    text = report.read_text() if report.exists() else ""
    begin, end = "<!-- cow-table:begin -->", "<!-- cow-table:end -->"
    block = f"{begin}\n{table}\n{end}"
    if begin in text and end in text:
        text = text[: text.index(begin)] + block + text[text.index(end) + len(end) :]
    else:
        text = (text + "\n\n" if text else "") + block + "\n"
    report.write_text(text)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
