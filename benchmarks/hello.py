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
response, with no parsing, no WSGI and no bookkeeping. It lives in this file
(``--serve-bare``).

Note for reading the figures: gunicorn's sync worker does not do keep-alive (it closes after
every response), so against it wrk pays a TCP handshake per request. That is the sync worker as
deployed, so it stays in the comparison; gthread is gunicorn's keep-alive worker. wrk itself
needs a core, so on a 2-core machine the 2-worker figures share CPU with the load generator.

Usage::

    /tmp/h7venv/bin/python benchmarks/hello.py [--workers 1,2] [--duration 5] [--rounds 3]
        [--servers corral,gunicorn-sync,...] [--json OUT] [--markdown benchmarks/HELLO.md]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import select
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from statistics import median

from corral.launch import spawn, stop_group

HERE = Path(__file__).resolve().parent
APPS = HERE / "apps"
BIN = Path(sys.executable).parent
WRK = "/usr/bin/wrk"
CONNECTIONS = 16
START_DEADLINE_S = 30.0
STOP_GRACE_S = 10.0  # gunicorn's graceful_timeout is 30 s; idle hello servers stop in well under 1
WARMUP_S = 1.0
CANNED = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 14\r\n\r\nHello, world!\n"

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
    """This file's own canned-response loop (the app is ignored)."""
    return Launch(
        [sys.executable, str(Path(__file__).resolve()), "--serve-bare", str(port), str(workers)]
    )


SERVERS: dict[str, Builder] = {
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


def measure(name: str, workers: int, duration_s: float, log: Path) -> WrkResult:
    """Start one server, warm it, measure it once (requests and its CPU time), stop it."""
    port = free_port()
    with running(SERVERS[name]("hello_app:app", port, workers), port, log) as proc:
        run_wrk(wrk_argv(port, WARMUP_S, 1, CONNECTIONS), timeout_s=30)
        cpu_before = session_cpu_s(proc.pid)
        result, text = run_wrk(wrk_argv(port, duration_s, 1, CONNECTIONS), duration_s + 30)
        result.server_cpu_s = session_cpu_s(proc.pid) - cpu_before
    with log.open("a") as out:
        out.write(f"--- {name} w={workers}\n{text}\n")
    return result


def run_all(
    servers: Sequence[str], workers: Sequence[int], rounds: int, duration_s: float, log: Path
) -> list[Cell]:
    """Every server at every worker count, ``rounds`` times, round-robin order."""
    cells = {(s, w): Cell(s, w) for w in workers for s in servers}
    for w in workers:
        for r in range(rounds):
            for name in rotated(servers, r):
                result = measure(name, w, duration_s, log)
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
        ref, best_gun = _per_round(row, ["corral"]), _per_round(row, GUNICORNS)
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
# The bare ceiling: forked epoll loops answering every request head with a canned response


def _bare_serve_one(listener: socket.socket) -> None:
    """One process's loop; runs until SIGTERM."""
    ep = select.epoll()
    ep.register(listener.fileno(), select.EPOLLIN | select.EPOLLEXCLUSIVE)
    conns: dict[int, socket.socket] = {}
    pending: dict[int, bytes] = {}
    lfd = listener.fileno()
    while True:
        for fd, _ in ep.poll():
            if fd == lfd:
                _bare_accept(listener, ep, conns)
            else:
                _bare_read(fd, ep, conns, pending)


def _bare_accept(
    listener: socket.socket, ep: select.epoll, conns: dict[int, socket.socket]
) -> None:
    try:
        conn, _ = listener.accept()
    except BlockingIOError:
        return
    conn.setblocking(False)
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    conns[conn.fileno()] = conn
    ep.register(conn.fileno(), select.EPOLLIN)


def _bare_read(
    fd: int, ep: select.epoll, conns: dict[int, socket.socket], pending: dict[int, bytes]
) -> None:
    conn = conns[fd]
    try:
        data = conn.recv(65536)
    except BlockingIOError:
        return
    except ConnectionError:
        data = b""  # a reset ends the connection like an EOF
    if not data:
        ep.unregister(fd)
        conns.pop(fd).close()
        pending.pop(fd, None)
        return
    buf = pending.pop(fd, b"") + data
    heads = buf.count(b"\r\n\r\n")
    rest = buf.rsplit(b"\r\n\r\n", 1)[-1] if heads else buf
    if rest:
        pending[fd] = rest
    if heads:
        with contextlib.suppress(OSError):  # a short send would be a bug here; hello fits
            conn.send(CANNED * heads)


def serve_bare(port: int, workers: int) -> None:
    """Bind, fork ``workers`` loops, wait for them; TERM to the session ends them all."""
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(2048)
    listener.setblocking(False)
    for _ in range(workers):
        if os.fork() == 0:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            _bare_serve_one(listener)
    with contextlib.suppress(ChildProcessError):
        while True:
            os.wait()


# ---------------------------------------------------------------------------------------------
# Command line


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--workers", default="1,2", help="comma-separated worker counts")
    p.add_argument("--duration", type=float, default=5.0, help="seconds per wrk run")
    p.add_argument("--rounds", type=int, default=3, help="alternated rounds (median taken)")
    p.add_argument("--servers", default=",".join(SERVERS), help="comma-separated subset")
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
    p.add_argument(
        "--serve-bare", nargs=2, type=int, metavar=("PORT", "WORKERS"), help=argparse.SUPPRESS
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
    path: Path, command: str, cells: Sequence[Cell], args: argparse.Namespace
) -> None:
    """The table plus the command and run parameters."""
    text = (
        "# Hello world, keep-alive (benchmarks/hello.py)\n\n"
        f"Command: `{command}`\n\n"
        f"Load: `{' '.join(wrk_argv(0, args.duration, 1, CONNECTIONS)).replace(':0/', ':PORT/')}` "
        f"after a {WARMUP_S:g} s warm-up; {args.rounds} rounds, server order rotated each round, "
        f"medians shown. {environment()}.\n\n"
        f"{table(cells)}\n\n{NOTES}\nRequests/s in each round:\n\n{rounds_table(cells)}\n"
    )
    path.write_text(text)


def main(argv: Sequence[str]) -> int:
    args = parse_args(argv)
    if args.serve_bare:
        serve_bare(*args.serve_bare)
        return 0
    servers = [s for s in args.servers.split(",") if s]
    unknown = [s for s in servers if s not in SERVERS]
    if unknown:
        raise SystemExit(f"unknown servers {unknown}; choose from {list(SERVERS)}")
    workers = [int(w) for w in args.workers.split(",")]
    cells = run_all(servers, workers, args.rounds, args.duration, args.log)
    print(table(cells))
    command = shlex.join([Path(sys.executable).as_posix(), "benchmarks/hello.py", *argv])
    if args.markdown:
        write_markdown(args.markdown, command, cells, args)
    if args.json:
        args.json.write_text(json.dumps([asdict(c) for c in cells], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
