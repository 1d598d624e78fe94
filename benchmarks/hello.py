"""Hello-world keep-alive throughput: corral next to gunicorn, uWSGI, granian and a bare loop.

Theory of operation. Every server serves ``benchmarks/apps/hello_app.py`` (a fixed body with
``Content-Length``, so keep-alive is possible) on a free 127.0.0.1 port with the same number of
worker processes, and ``wrk -t1 -c16 --latency`` drives it. The machine is shared and noisy, so
nothing is compared across runs: each round starts and measures every server once, in an order
rotated by one each round (so no server always gets the warm or the tired machine), and the
report takes the median of the rounds and gives ratios within the same run.

Each measurement starts the server fresh in its own session, waits until a real request gets a
``200`` (polled with a deadline), warms it with a short discarded wrk run, measures, and tears
the session down TERM -> wait -> KILL.

The ``bare`` server is the ceiling for any Python server: N forked processes on one shared
listener, each an epoll loop that answers every request head it sees with a canned keep-alive
response, with no parsing, no WSGI and no bookkeeping (``benchmarks/apps/bare_loop.py``).

corral runs twice, as ``corral-native`` and ``corral-pure`` (``--http-parser native|python``),
when ``corral serve --help`` offers that flag, else once as ``corral``.

``--instructions N`` adds, in the same run, userland instructions per request for every server
on 1 worker: each is started under callgrind twice, sent 200 keep-alive requests on one
connection, or 200 + N, and the difference of all its processes' counts is divided by N (see
benchmarks/instructions.py). The report then opens with a side-by-side table of both figures
as ratios to corral's.

Note for reading the figures: gunicorn's sync worker does not do keep-alive (it closes after
every response), so against it wrk pays a TCP handshake per request. That is the sync worker as
deployed, so it stays in the comparison; gthread is gunicorn's keep-alive worker. wrk itself
needs a core, so on a 2-core machine the 2-worker figures share CPU with the load generator.

Usage::

    /tmp/hot-bench-313/bin/python benchmarks/hello.py [--workers 1,2] [--duration 5]
        [--rounds 3] [--servers corral,gunicorn-sync,...] [--instructions 2000] [--json OUT]
        [--markdown benchmarks/HELLO.md]

(a venv with corral and benchmarks/peers.txt installed; callgrind needs ``valgrind``.)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from statistics import median

from instructions import callgrind_argv, callgrind_total, keepalive

from corral.launch import spawn, stop_group

HERE = Path(__file__).resolve().parent
APPS = HERE / "apps"
BIN = Path(sys.executable).parent
WRK = "/usr/bin/wrk"
CONNECTIONS = 16
START_DEADLINE_S = 30.0
STOP_GRACE_S = 10.0  # gunicorn's graceful_timeout is 30 s; idle hello servers stop in well under 1
WARMUP_S = 1.0
HELLO = "hello_app:app"
CG_WARM = 200  # keep-alive requests in both callgrind runs; the second adds --instructions N
CG_START_DEADLINE_S = 300.0  # a server starting under callgrind runs some 50x slower
CG_STOP_DEADLINE_S = 120.0  # ... and writes one counts file per process on the way out
CG_RETERM_S = 15.0  # TERM again to what is still there after this long (see stop_and_drain)

# ---------------------------------------------------------------------------------------------
# Starting and stopping servers


@dataclass(frozen=True)
class Launch:
    """How to start one server: argv, extra environment, working directory."""

    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path = APPS


Builder = Callable[[str, int, int], Launch]  # (module:app, port, workers) -> Launch


def corral(app: str, port: int, workers: int) -> Launch:
    """corral with its defaults (one thread per worker), logging at warning."""
    argv = [str(BIN / "corral"), "serve", app, "-b", f"127.0.0.1:{port}", "-w", str(workers)]
    return Launch([*argv, "--chdir", str(APPS), "--log-level", "warning"])


def corral_with(*flags: str) -> Builder:
    """corral with extra command-line flags (``--http-parser native``)."""

    def build(app: str, port: int, workers: int) -> Launch:
        launch = corral(app, port, workers)
        return Launch([*launch.argv, *flags], launch.env, launch.cwd)

    return build


def corral_variants() -> dict[str, Builder]:
    """``corral-native`` and ``corral-pure`` when ``corral serve --help`` offers
    ``--http-parser``, else the one ``corral`` (the native parser is not built yet)."""
    help_text = subprocess.run(
        [str(BIN / "corral"), "serve", "--help"],
        capture_output=True, text=True, timeout=60, check=False,
    ).stdout  # fmt: skip
    if "--http-parser" not in help_text:
        return {"corral": corral}
    return {
        "corral-native": corral_with("--http-parser", "native"),
        "corral-pure": corral_with("--http-parser", "python"),
    }


def gunicorn(worker_class: str, threads: int) -> Builder:
    """gunicorn with one worker class; ``threads`` only matters for gthread."""

    def build(app: str, port: int, workers: int) -> Launch:
        argv = [str(BIN / "gunicorn"), "-k", worker_class, "-w", str(workers)]
        argv += ["--threads", str(threads)] if worker_class == "gthread" else []
        argv += ["-b", f"127.0.0.1:{port}", "--chdir", str(APPS), "--log-level", "warning", app]
        return Launch(argv)

    return build


def uwsgi(app: str, port: int, workers: int) -> Launch:
    """uWSGI (pyuwsgi wheel) on its HTTP/1.1 socket, ``CONNECTIONS`` threads per process.

    ``--http-socket`` with ``--http-keepalive`` still closes after every response in 2.0 (the
    keep-alive flag belongs to the HTTP router); ``--http11-socket`` is the keep-alive one. It
    serves one connection per thread until the client closes it, so without ``--threads`` a
    process serves one of wrk's connections and the rest wait (the earlier "uWSGI 3x" figure
    was that: one connection's requests per CPU-second).
    """
    argv = [str(BIN / "pyuwsgi"), "--http11-socket", f"127.0.0.1:{port}"]
    argv += ["--threads", str(CONNECTIONS)]
    argv += ["--master", "--processes", str(workers), "--disable-logging", "--die-on-term"]
    argv += ["--need-app", "--chdir", str(APPS), "--module", app]
    return Launch(argv)


def granian(app: str, port: int, workers: int) -> Launch:
    """granian's WSGI interface with its defaults, access log off."""
    argv = [str(BIN / "granian"), "--interface", "wsgi", "--workers", str(workers)]
    argv += ["--host", "127.0.0.1", "--port", str(port), "--no-access-log"]
    argv += ["--log-level", "warning", "--working-dir", str(APPS), app]
    return Launch(argv)


def bare(app: str, port: int, workers: int) -> Launch:
    """benchmarks/apps/bare_loop.py, the canned-response loop (the app is ignored)."""
    return Launch([sys.executable, str(APPS / "bare_loop.py"), str(port), str(workers)])


SERVERS: dict[str, Builder] = {  # corral's entries are replaced by corral_variants() in main
    "corral": corral,
    "gunicorn-sync": gunicorn("sync", 1),
    "gunicorn-gthread": gunicorn("gthread", 4),
    "uwsgi": uwsgi,
    "granian": granian,
    "bare": bare,
}
GUNICORNS = ("gunicorn-sync", "gunicorn-gthread")


def free_port() -> int:
    """A port the kernel just handed out on 127.0.0.1 (closed again for the server to bind)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def answers(port: int, path: str = "/", timeout_s: float = 2.0) -> bytes | None:
    """One ``GET``; the response head and body (by ``Content-Length``), or None if it failed.

    Reads by length rather than to EOF because a server may keep the connection open whatever
    the request said (the bare loop does).
    """
    request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as s:
            s.sendall(request)
            return _read_response(s)
    except OSError:
        return None


def _read_response(s: socket.socket) -> bytes | None:
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(65536)
        if not chunk:
            return None
        buf += chunk
    head = buf.split(b"\r\n\r\n", 1)[0]
    length = re.search(rb"(?im)^content-length:\s*(\d+)", head)
    want = len(head) + 4 + (int(length.group(1)) if length else 0)
    while len(buf) < want and (chunk := s.recv(65536)):
        buf += chunk
    return buf


def wait_ready(proc: subprocess.Popen[bytes], port: int, deadline_s: float) -> None:
    """Poll until a request gets ``200``; raise if the server died or the deadline passed."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before it was ready")
        reply = answers(port, timeout_s=1.0)
        if reply is not None and reply.startswith(b"HTTP/1.1 200"):
            return
        time.sleep(0.05)  # polling interval, not synchronisation: the deadline bounds the wait
    raise TimeoutError(f"no 200 from 127.0.0.1:{port} within {deadline_s} s")


def stop(proc: subprocess.Popen[bytes], grace_s: float = STOP_GRACE_S) -> None:
    """TERM the server's session, wait, then KILL whatever is left of it (corral.launch)."""
    stop_group(proc, grace_s, term_group=True)


@contextlib.contextmanager
def running(launch: Launch, port: int, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """Start ``launch`` in its own session, wait until it answers, stop it on exit."""
    env = {"PYTHONPATH": str(launch.cwd), **launch.env}
    proc = spawn(launch.argv, log_path=log, env=env, cwd=launch.cwd, ready_pipe=False).proc
    try:
        wait_ready(proc, port, START_DEADLINE_S)
        yield proc
    finally:
        stop(proc)


# ---------------------------------------------------------------------------------------------
# Driving wrk


@dataclass
class WrkResult:
    """What one wrk run reported."""

    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: dict[str, int]
    non_2xx: int
    server_cpu_s: float = 0.0  # CPU the server's processes used during the run (set by measure)

    @property
    def per_cpu_s(self) -> float:
        """Requests per CPU-second of the server: its efficiency, whatever else ran."""
        return self.requests / self.server_cpu_s if self.server_cpu_s > 0 else float("nan")


_UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def _latency_ms(text: str, pct: str) -> float:
    match = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s|m)\s*$", text, re.M)
    return float(match.group(1)) * _UNIT_MS[match.group(2)] if match else float("nan")


def parse_wrk(text: str) -> WrkResult:
    """Read requests/s, latency percentiles, socket errors and non-2xx counts from wrk's text."""
    rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
    total = re.search(r"(\d+) requests in", text)
    errs = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    names = ("connect", "read", "write", "timeout")
    return WrkResult(
        rps=float(rps.group(1)) if rps else 0.0,
        p50_ms=_latency_ms(text, "50"),
        p99_ms=_latency_ms(text, "99"),
        requests=int(total.group(1)) if total else 0,
        errors=dict(zip(names, (int(g) for g in errs.groups()), strict=True)) if errs else {},
        non_2xx=int(non2xx.group(1)) if non2xx else 0,
    )


def wrk_argv(
    port: int, duration_s: float, threads: int, connections: int, path: str = "/"
) -> list[str]:
    """The exact wrk command line (also printed in the report)."""
    return [
        WRK, f"-t{threads}", f"-c{connections}", f"-d{duration_s:g}s", "--latency",
        f"http://127.0.0.1:{port}{path}",
    ]  # fmt: skip


def run_wrk(argv: Sequence[str], timeout_s: float) -> tuple[WrkResult, str]:
    """Run wrk to completion; its parsed result and raw text."""
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s, check=False)
    return parse_wrk(done.stdout), done.stdout + done.stderr


# ---------------------------------------------------------------------------------------------
# Rounds, medians, ratios


@dataclass
class Cell:
    """All rounds of one server at one worker count."""

    server: str
    workers: int
    runs: list[WrkResult] = field(default_factory=list)

    def med(self, attr: str) -> float:
        values = [getattr(r, attr) for r in self.runs]
        return median(values) if values else float("nan")


def rotated(items: Sequence[str], by: int) -> list[str]:
    """``items`` rotated left by ``by`` (round-robin start position)."""
    k = by % len(items) if items else 0
    return list(items[k:]) + list(items[:k])


def session_cpu_s(sid: int) -> float:
    """User + system CPU seconds of every live process in session ``sid`` (all threads)."""
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[-1].split()
        except OSError:
            continue  # exited meanwhile
        if len(fields) > 12 and int(fields[3]) == sid:  # fields[3] is stat field 6, session
            total += int(fields[11]) + int(fields[12])  # utime, stime in clock ticks
    return total / os.sysconf("SC_CLK_TCK")


def measure(
    name: str, workers: int, duration_s: float, log: Path, app: str = HELLO, path: str = "/"
) -> WrkResult:
    """Start one server, warm it, measure it once (requests and its CPU time), stop it."""
    port = free_port()
    with running(SERVERS[name](app, port, workers), port, log) as proc:
        run_wrk(wrk_argv(port, WARMUP_S, 1, CONNECTIONS, path), timeout_s=30)
        cpu_before = session_cpu_s(proc.pid)
        result, text = run_wrk(wrk_argv(port, duration_s, 1, CONNECTIONS, path), duration_s + 30)
        result.server_cpu_s = session_cpu_s(proc.pid) - cpu_before
    with log.open("a") as out:
        out.write(f"--- {name} w={workers}\n{text}\n")
    return result


def run_all(
    servers: Sequence[str],
    workers: Sequence[int],
    rounds: int,
    duration_s: float,
    log: Path,
    app: str = HELLO,
    path: str = "/",
) -> list[Cell]:
    """Every server at every worker count, ``rounds`` times, round-robin order."""
    cells = {(s, w): Cell(s, w) for w in workers for s in servers}
    for w in workers:
        for r in range(rounds):
            for name in rotated(servers, r):
                result = measure(name, w, duration_s, log, app, path)
                cells[(name, w)].runs.append(result)
                print(f"w={w} round {r + 1}: {name:17s} {describe(result)}", flush=True)
    return list(cells.values())


def describe(r: WrkResult) -> str:
    """One progress line's worth of a wrk result."""
    errors = sum(r.errors.values()) + r.non_2xx
    return (
        f"{r.rps:9.0f} req/s  p50 {r.p50_ms:.2f} ms  p99 {r.p99_ms:.2f} ms  "
        f"{r.per_cpu_s:7.0f} req/CPU-s  errors {errors}"
    )


def _fmt_ratio(x: float) -> str:
    return f"{x:.2f}x" if x == x else "n/a"


def paired_ratio(runs: Sequence[WrkResult], ref: Sequence[float], attr: str = "rps") -> float:
    """Median over rounds of this server's ``attr`` over the reference's in the same round."""
    ratios = [getattr(r, attr) / x for r, x in zip(runs, ref, strict=False) if x > 0]
    return median(ratios) if ratios else float("nan")


def _per_round(row: dict[str, Cell], names: Sequence[str], attr: str = "rps") -> list[float]:
    """Round by round, the best ``attr`` among ``names`` (rounds line up by index)."""
    present = [row[n].runs for n in names if n in row]
    return [max(getattr(r, attr) for r in rounds) for rounds in zip(*present, strict=False)]


def table(cells: Sequence[Cell]) -> str:
    """Markdown: medians per server and worker count; ratios are medians of same-round ratios."""
    lines = [
        "| workers | server | req/s (median) | req/s per worker | p50 ms | p99 ms "
        "| vs corral | vs best gunicorn | req per server CPU-s | CPU efficiency vs best "
        "gunicorn | errors |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for w in sorted({c.workers for c in cells}):
        row = {c.server: c for c in cells if c.workers == w}
        ref, best_gun = _per_round(row, [reference(row)]), _per_round(row, GUNICORNS)
        best_gun_cpu = _per_round(row, GUNICORNS, "per_cpu_s")
        for name, c in row.items():
            rps = c.med("rps")
            errs = sum(sum(r.errors.values()) + r.non_2xx for r in c.runs)
            lines.append(
                f"| {w} | {name} | {rps:,.0f} | {rps / w:,.0f} | {c.med('p50_ms'):.2f} "
                f"| {c.med('p99_ms'):.2f} | {_fmt_ratio(paired_ratio(c.runs, ref))} "
                f"| {_fmt_ratio(paired_ratio(c.runs, best_gun))} | {c.med('per_cpu_s'):,.0f} "
                f"| {_fmt_ratio(paired_ratio(c.runs, best_gun_cpu, 'per_cpu_s'))} | {errs} |"
            )
    return "\n".join(lines)


PEERS = ("uwsgi", "granian")  # the bar: corral >= 1.5x the better of these per CPU-s


def reference(row: Mapping[str, object]) -> str:
    """The corral the ratios divide by: the native one when there are two."""
    return next((n for n in ("corral-native", "corral") if n in row), next(iter(row), ""))


def side_by_side(cells: Sequence[Cell], instructions: Mapping[str, float]) -> str:
    """Markdown, one row per server at the lowest worker count: instructions/request and
    requests per server CPU-second with their ratios (same-round medians for the latter)."""
    w = min(c.workers for c in cells)
    row = {c.server: c for c in cells if c.workers == w}
    ref = reference(row)
    ref_cpu, peers_cpu = _per_round(row, [ref], "per_cpu_s"), _per_round(row, PEERS, "per_cpu_s")
    ref_ir = instructions.get(ref, float("nan"))
    lines = [
        f"| server ({w} worker{'s' if w > 1 else ''}) | instructions/request | vs {ref} "
        f"| req per server CPU-s | vs {ref} | {ref} vs it | {ref} vs better of uWSGI/granian "
        "| req/s | errors |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for name, c in row.items():
        ir = instructions.get(name, float("nan"))
        own = [r.per_cpu_s for r in c.runs]
        errs = sum(sum(r.errors.values()) + r.non_2xx for r in c.runs)
        ir_text = f"{ir / 1000:,.1f}k" if ir == ir else "n/a"
        lines.append(
            f"| {name} | {ir_text} | {_fmt_ratio(ir / ref_ir)} | {c.med('per_cpu_s'):,.0f} "
            f"| {_fmt_ratio(paired_ratio(c.runs, ref_cpu, 'per_cpu_s'))} "
            f"| {_fmt_ratio(_paired(ref_cpu, own))} "
            f"| {_fmt_ratio(_paired(ref_cpu, peers_cpu)) if name == ref else ''} "
            f"| {c.med('rps'):,.0f} | {errs} |"
        )
    return "\n".join(lines)


def _paired(num: Sequence[float], den: Sequence[float]) -> float:
    """Median over rounds of ``num[i] / den[i]``."""
    ratios = [a / b for a, b in zip(num, den, strict=False) if b > 0]
    return median(ratios) if ratios else float("nan")


def rounds_table(cells: Sequence[Cell]) -> str:
    """Every round's req/s, for judging the spread behind the medians."""
    n = max((len(c.runs) for c in cells), default=0)
    head = "| workers | server | " + " | ".join(f"round {i + 1}" for i in range(n)) + " |"
    lines = [head, "|---:|---|" + "---:|" * n]
    for c in cells:
        lines.append(
            f"| {c.workers} | {c.server} | " + " | ".join(f"{r.rps:,.0f}" for r in c.runs) + " |"
        )
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Instructions per request under callgrind (benchmarks/instructions.py has the theory)


def session_pids(sid: int) -> list[int]:
    """The live processes of session ``sid``."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", "rb") as f:
                    fields = f.read().rsplit(b")", 1)[-1].split()
            except OSError:
                continue
            if len(fields) > 3 and int(fields[3]) == sid and fields[0] != b"Z":
                pids.append(int(entry))
    return pids


def wait_listening(proc: subprocess.Popen[bytes], port: int, deadline_s: float) -> None:
    """Until a TCP connect to ``port`` succeeds (it is closed at once, unused)."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before it listened")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1.0).close()
            return
        except OSError:
            time.sleep(0.2)  # polling interval, not synchronisation: the deadline bounds it
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} within {deadline_s} s")


def stop_and_drain(proc: subprocess.Popen[bytes]) -> None:
    """TERM the session and wait until every process of it has gone (each writes its counts
    file on the way out), then KILL whatever is left after ``CG_STOP_DEADLINE_S``.

    The TERM is repeated every ``CG_RETERM_S`` to the processes still there: under valgrind a
    forked child of the bare loop on CPython 3.11 was seen to outlive the first one (not
    understood; a second TERM ended it). Not sooner: a second TERM while a server is still
    shutting down changes its exit path, and then the two runs' counts no longer cancel."""
    deadline = time.monotonic() + CG_STOP_DEADLINE_S
    next_term = time.monotonic() + CG_RETERM_S
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    while time.monotonic() < deadline:
        proc.poll()  # reaps the leader; its children are reaped by it or by init
        pids = session_pids(proc.pid)
        if not pids:
            break
        if time.monotonic() >= next_term:
            for pid in pids:  # this session's processes: all started by this script
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)
            next_term = time.monotonic() + CG_RETERM_S
        time.sleep(0.2)  # polling interval, not synchronisation: the deadline bounds it
    stop(proc, grace_s=1.0)


def callgrind_run(name: str, n: int, log: Path, app: str, path: str) -> tuple[int, int]:
    """One server under callgrind, ``n`` keep-alive requests: its summed instructions and the
    number of per-process files written."""
    with tempfile.TemporaryDirectory(prefix="hello-cg-") as out:
        port = free_port()
        launch = SERVERS[name](app, port, 1)
        env = {"PYTHONPATH": str(launch.cwd), "PYTHONHASHSEED": "0", **launch.env}
        argv = callgrind_argv(launch.argv, out)
        proc = spawn(argv, log_path=log, env=env, cwd=launch.cwd, ready_pipe=False).proc
        try:
            wait_listening(proc, port, CG_START_DEADLINE_S)
            request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()
            keepalive(port, n, request, timeout_s=CG_START_DEADLINE_S)
        finally:
            stop_and_drain(proc)
        return callgrind_total(out), len(list(Path(out).glob("cg.*")))


def instructions_per_request(
    name: str, requests: int, log: Path, app: str = HELLO, path: str = "/", warm: int = CG_WARM
) -> float:
    """(instructions with ``warm`` + ``requests`` requests - with ``warm``) / ``requests``, on 1
    worker; NaN when the two runs did not write the same number of files (a process killed)."""
    base, base_files = callgrind_run(name, warm, log, app, path)
    full, full_files = callgrind_run(name, warm + requests, log, app, path)
    if base_files != full_files or not base_files:
        print(f"{name}: {base_files} and {full_files} callgrind files; no count", flush=True)
        return float("nan")
    return (full - base) / requests


# ---------------------------------------------------------------------------------------------
# Command line


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--workers", default="1,2", help="comma-separated worker counts")
    p.add_argument("--duration", type=float, default=5.0, help="seconds per wrk run")
    p.add_argument("--rounds", type=int, default=3, help="alternated rounds (median taken)")
    p.add_argument("--servers", default="", help="comma-separated subset (default: all)")
    p.add_argument(
        "--instructions",
        type=int,
        default=0,
        metavar="N",
        help="also count instructions/request under callgrind over N requests, 1 worker",
    )
    p.add_argument("--json", type=Path, help="write raw results here")
    p.add_argument(
        "--markdown", type=Path, default=HERE / "HELLO.md", help="write the write-up here"
    )
    p.add_argument(
        "--log",
        type=Path,
        default=Path("/tmp/hello-bench.log"),
        help="servers' output and wrk text",
    )
    return p.parse_args(argv)


def environment() -> str:
    """One line describing where the figures came from."""
    ver = subprocess.run(
        [WRK, "-v"], capture_output=True, text=True, check=False
    ).stdout.splitlines()
    return f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, {ver[0] if ver else 'wrk'}"


NOTES = """How to read it:

- Ratios are medians of same-round ratios: *vs corral* divides by corral's req/s in the same
  round, *vs best gunicorn* by the better of gunicorn sync and gthread in that round;
  the issue's target is corral >= 2x (goal 3x) per worker.
- gunicorn's sync worker has no keep-alive: it answers with `Connection: close`, so wrk opens
  a new TCP connection for every request. That is how sync is deployed (behind a buffering
  proxy), so it stays in; gthread is gunicorn's keep-alive worker.
- uWSGI's `--http11-socket` keeps connections alive, but each process serves one connection at
  a time until the client closes it: with 16 wrk connections and N processes, N connections
  are served and the rest wait in the listen queue (checked by hand: a second keep-alive
  connection got no answer until the first closed). Its requests/s is therefore a
  one-connection-per-process figure and its latency percentiles cover only the served
  connections; it would starve real clients the same way.
- *req per server CPU-s* divides the requests served by the CPU time (user + system, all
  processes and threads of the server's session) the server used during the run. It is the
  figure least disturbed by other load on the machine: a starved server serves fewer requests
  but also burns less CPU. It does not count wrk's side or the kernel work charged to wrk.
- granian runs with its defaults (Rust I/O threads, a blocking-thread pool per worker).
- *bare* is N forked epoll loops answering every request head with a canned response (no
  parsing, no WSGI): the ceiling for a Python server on this machine.
- The machine has 2 cores and another benchmark ran beside this one, and wrk needs a core of
  its own: absolute figures swing by 2x between runs, so only same-run ratios mean anything,
  and the 2-worker figures are limited by the CPU wrk leaves over.
"""


def write_markdown(
    path: Path,
    command: str,
    cells: Sequence[Cell],
    args: argparse.Namespace,
    counts: Mapping[str, float],
) -> None:
    """The tables plus the command and run parameters."""
    counted = (
        f"Side by side, instructions/request from callgrind ({args.instructions} keep-alive "
        f"requests on one connection after {CG_WARM}, 1 worker, every process of the server "
        f"counted) and requests per server CPU-second from the wrk rounds:\n\n"
        f"{side_by_side(cells, counts)}\n\n"
        if counts
        else ""
    )
    text = (
        "# Hello world, keep-alive (benchmarks/hello.py)\n\n"
        f"Command: `{command}`\n\n{counted}"
        f"Load: `{' '.join(wrk_argv(0, args.duration, 1, CONNECTIONS)).replace(':0/', ':PORT/')}` "
        f"after a {WARMUP_S:g} s warm-up; {args.rounds} rounds, server order rotated each round, "
        f"medians shown. {environment()}.\n\n"
        f"{table(cells)}\n\n{NOTES}\nRequests/s in each round:\n\n{rounds_table(cells)}\n"
    )
    path.write_text(text)


def main(argv: Sequence[str]) -> int:
    args = parse_args(argv)
    peers = {k: v for k, v in SERVERS.items() if k != "corral"}
    SERVERS.clear()
    SERVERS.update({**corral_variants(), **peers})
    servers = [s for s in args.servers.split(",") if s] or list(SERVERS)
    unknown = [s for s in servers if s not in SERVERS]
    if unknown:
        raise SystemExit(f"unknown servers {unknown}; choose from {list(SERVERS)}")
    workers = [int(w) for w in args.workers.split(",")]
    cells = run_all(servers, workers, args.rounds, args.duration, args.log)
    print(table(cells))
    counts: dict[str, float] = {}
    for name in servers if args.instructions else ():
        counts[name] = instructions_per_request(name, args.instructions, args.log)
        print(f"callgrind: {name:17s} {counts[name]:,.0f} instructions/request", flush=True)
    if counts:
        print(side_by_side(cells, counts))
    command = shlex.join([Path(sys.executable).as_posix(), "benchmarks/hello.py", *argv])
    if args.markdown:
        write_markdown(args.markdown, command, cells, args, counts)
    if args.json:
        raw = {"cells": [asdict(c) for c in cells], "instructions_per_request": counts}
        args.json.write_text(json.dumps(raw, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
