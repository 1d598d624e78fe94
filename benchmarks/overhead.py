"""What the scoreboard and the stats server cost on hello-world throughput (issue 5).

One worker serves the same hello-world app in five variants, all started once and kept running:

- ``bare``:    the worker loop (``corral.worker.serve``) with a ``NullSlot``: records nothing;
- ``bare-aa``: the same again: an A/A control whose difference from ``bare`` is the rig's noise;
- ``slot``:    the same loop writing a real shared-memory scoreboard slot (what every corral
               worker does);
- ``serve``:   ``corral serve -w 1``: master, zygote, scoreboard, heartbeats, memory sampling;
- ``full``:    ``corral serve -w 1 --stats``, with a client scraping ``/stats`` and ``/metrics``
               every second while it is measured (``--memory-sample-s`` as given, default 2 s).

A round gives each variant one short wrk slice (``--seconds``, keep-alive), in an order that
rotates; a noisy neighbour's burst then hits neighbouring slices of every variant alike, and each
variant's ratio to ``bare`` is the median of its per-round ratios (with the quartiles). Two
figures per slice:

- requests per second, as wrk reports them;
- server CPU per request: the CPU time that the server's processes (the worker; for
  ``serve``/``full`` the master and the zygote too) ran in the slice, from ``schedstat``,
  divided by the requests wrk completed.

By default wrk is pinned to the last CPU and every server process to CPU 0 (``--no-pin`` turns
that off), so that the load generator does not steal the worker's core and the master's work
(sampling, scrapes) lands on the worker's core, where it costs throughput. The master's own
share is also reported: CPU milliseconds per second of the processes other than the worker.

``--paired`` runs each variant *at the same time* as ``bare`` instead, both pinned to CPU 0 with
one wrk each on the other CPU: a noisy neighbour then slows both alike, and the scheduler gives
each worker half of the core, so the ratio of their CPU per request is measured under identical
conditions. (The master's CPU is counted in its variant's CPU per request; in throughput it is
shared between the two workers, so there it shows only by half.)

``--master-cpu`` measures only the master and zygote of ``corral serve -w 1``, idle, with and
without ``--stats``, and with both pages scraped once a second (CPU ms per second, 10 s each).

Usage: python benchmarks/overhead.py [--rounds 40] [--seconds 1] [--connections 16]
                                     [--memory-sample-s 2] [--no-pin] [--paired]
       python benchmarks/overhead.py --master-cpu
Needs wrk (``apt-get install wrk``).
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass

from corral import config
from corral.config import BY_NAME
from corral.master.worker_settings import worker_settings
from corral.memory import gcpolicy
from corral.memory.gcpolicy import GcPreset
from corral.stats.protocol import NullSlot, SlotWriter
from corral.stats.scoreboard import Scoreboard, install_gc_callbacks
from corral.worker import serve

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from overhead_app import hello  # noqa: E402

KINDS = ("bare", "bare-aa", "slot", "serve", "full")


@dataclass
class Result:
    rps: float
    requests: int
    cpu_s: float

    @property
    def cpu_us_per_request(self) -> float:
        return self.cpu_s / max(1, self.requests) * 1e6


def _listener() -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    return sock


def _fork_worker(kind: str, server_cpus: set[int] | None) -> tuple[int, int]:
    sock = _listener()
    port = sock.getsockname()[1]
    board = Scoreboard.create(4) if kind == "slot" else None
    pid = os.fork()
    if pid == 0:
        if server_cpus:
            os.sched_setaffinity(0, server_cpus)
        # the GC regime of a corral worker (default --gc): without it the bare loop would pay
        # for collections that corral's frozen (or immortal) heap avoids, and look slower
        preset = GcPreset(BY_NAME["gc"].default)
        gcpolicy.begin_preload(preset)
        gcpolicy.finish_preload(preset)
        gcpolicy.in_worker(preset)
        slot: SlotWriter = NullSlot()
        if board is not None:
            slot = board.writer(0)
            install_gc_callbacks(slot)  # as corral's worker does: GC counts are stats too
        code = serve(hello, [sock], worker_settings(config.defaults()), slot)
        os._exit(code)
    sock.close()
    return pid, port


def _start_corral(
    stats: bool, sample_s: float, server_cpus: set[int] | None
) -> tuple[int, int, str]:
    r, w = os.pipe()
    stats_port = _free_port()
    extra = ["--stats", f"127.0.0.1:{stats_port}"] if stats else []
    proc = subprocess.Popen(
        [sys.executable, "-m", "corral", "serve", "overhead_app:hello", "-b", "127.0.0.1:0",
         "-w", "1", "--memory-sample-s", str(sample_s), "--ready-fd", str(w),
         "--log-level", "error", *extra],
        pass_fds=(w,), env={**os.environ, "PYTHONPATH": HERE},
        preexec_fn=(lambda: os.sched_setaffinity(0, server_cpus)) if server_cpus else None,
    )  # fmt: skip
    os.close(w)
    line = b""
    deadline = time.monotonic() + 30
    while not line.endswith(b"\n") and time.monotonic() < deadline:
        chunk = os.read(r, 256)
        if not chunk:
            break
        line += chunk
    os.close(r)
    if not line.endswith(b"\n"):
        proc.kill()
        raise SystemExit(f"corral serve did not become ready: {line!r}")
    port = int(line.decode().split(":")[-1])
    return proc.pid, port, f"http://127.0.0.1:{stats_port}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _tree(root: int) -> list[int]:
    """``root`` and every live descendant (the master's workers are its children: subreaper)."""
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def _cpu_s(pids: list[int]) -> float:
    """CPU seconds ``pids`` have run, every thread, to the nanosecond: ``/proc/PID/task/TID/
    schedstat`` (utime and stime in ``/proc/PID/stat`` are sampled at the 100 Hz tick, too coarse
    for a master that works a few milliseconds a second)."""
    total = 0
    for pid in pids:
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tids:
            try:
                with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                    total += int(f.read().split()[0])
            except (OSError, IndexError, ValueError):
                continue
    return total / 1e9


def _wrk(port: int, seconds: int, connections: int, cpus: str | None) -> tuple[float, int]:
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", f"http://127.0.0.1:{port}/"]
    if cpus is not None:
        cmd = ["taskset", "-c", cpus, *cmd]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    total = re.search(r"(\d+) requests in", out)
    assert rps and total, out
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)|Socket errors: .*", out)
    assert errors is None, out
    return float(rps.group(1)), int(total.group(1))


def _scrape(stats: str, stop: threading.Event) -> None:
    """What a dashboard and a Prometheus server cost the master: both pages, once a second
    (the first at once, so that a one-second slice pays for one scrape)."""
    while True:
        for path in ("/stats", "/metrics"):
            with urllib.request.urlopen(stats + path, timeout=5) as resp:
                resp.read()
        if stop.wait(1.0):
            return


@dataclass
class Server:
    kind: str
    pid: int
    port: int
    stats: str | None = None


def _start(kind: str, args: argparse.Namespace, server_cpus: set[int] | None) -> Server:
    if kind in ("serve", "full"):
        pid, port, stats = _start_corral(kind == "full", args.memory_sample_s, server_cpus)
        return Server(kind, pid, port, stats if kind == "full" else None)
    pid, port = _fork_worker(kind, server_cpus)
    return Server(kind, pid, port)


def _slice(server: Server, args: argparse.Namespace, wrk_cpus: str | None) -> tuple[Result, float]:
    """One measured wrk slice; also returns the CPU seconds of every process but the busiest
    (the worker): the master's and the zygote's share."""
    stop = threading.Event()
    if server.stats is not None:
        threading.Thread(target=_scrape, args=(server.stats, stop), daemon=True).start()
    try:
        pids = _tree(server.pid)
        before = {pid: _cpu_s([pid]) for pid in pids}
        rps, requests = _wrk(server.port, args.seconds, args.connections, wrk_cpus)
        spent = {pid: _cpu_s([pid]) - before[pid] for pid in pids}
    finally:
        stop.set()
    busiest = max(spent, key=lambda p: spent[p])
    rest = sum(v for p, v in spent.items() if p != busiest)
    return Result(rps, requests, sum(spent.values())), rest


def _paired(
    servers: dict[str, Server],
    kinds: tuple[str, ...],
    args: argparse.Namespace,
    wrk_cpus: str | None,
) -> None:
    """``--paired``: each variant runs at the same time as ``bare``, both servers on CPU 0 and
    one wrk each on the other CPU, so that whatever else the machine does hits both alike; the
    scheduler gives each worker half the core, so their throughput ratio is their CPU-per-request
    ratio."""
    ratios: dict[str, tuple[list[float], list[float]]] = {k: ([], []) for k in kinds[1:]}
    for rnd in range(args.rounds):
        others = kinds[1:]
        order = others[rnd % len(others) :] + others[: rnd % len(others)]
        for kind in order:
            pair: dict[str, Result] = {}

            def measure(name: str, pair: dict[str, Result] = pair) -> None:
                pair[name] = _slice(servers[name], args, wrk_cpus)[0]

            threads = [threading.Thread(target=measure, args=(k,)) for k in ("bare", kind)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            tput, cpu = ratios[kind]
            tput.append(pair[kind].rps / pair["bare"].rps)
            cpu.append(pair[kind].cpu_us_per_request / pair["bare"].cpu_us_per_request)
        line = ", ".join(f"{k} {ratios[k][0][-1]:.3f}/{ratios[k][1][-1]:.3f}" for k in others)
        print(f"round {rnd + 1}: throughput/CPU-per-request vs bare: {line}", flush=True)
    print(f"\n{args.rounds} rounds, each variant run at once with bare for {args.seconds} s, "
          f"wrk -t1 -c{args.connections} each, both servers on one core\n")  # fmt: skip
    print("| variant | throughput vs bare | CPU/request vs bare (worker + master + zygote) |")
    print("|---|---:|---:|")
    for kind, (tput, cpu) in ratios.items():
        print(f"| {kind} | {_spread(tput)} | {_spread(cpu)} |")


def _master_cpu(args: argparse.Namespace, seconds: float = 10.0) -> None:
    """``--master-cpu``: what the master and zygote of an idle one-worker server run, per
    second, without and with ``--stats``, and with both pages scraped once a second."""
    print("| master | CPU ms/s |\n|---|---:|")
    for stats in (False, True):
        pid, _, url = _start_corral(stats, args.memory_sample_s, None)
        try:
            pids = _tree(pid)
            worker = max(pids)  # the newest process: the master forks the zygote first
            rest = [p for p in pids if p != worker]
            phases = [("idle, --stats" if stats else "idle", False)]
            if stats:
                phases.append(("--stats, both pages scraped every second", True))
            for label, scrape in phases:
                stop = threading.Event()
                if scrape:
                    threading.Thread(target=_scrape, args=(url, stop), daemon=True).start()
                before, started = _cpu_s(rest), time.monotonic()
                stop.wait(seconds)
                stop.set()
                spent = (_cpu_s(rest) - before) / (time.monotonic() - started)
                print(f"| {label} | {spent * 1000:.1f} |", flush=True)
        finally:
            os.kill(pid, signal.SIGTERM)
            os.waitpid(pid, 0)


def _spread(values: list[float]) -> str:
    q = statistics.quantiles(values, n=4) if len(values) > 1 else [values[0]] * 3
    return f"{q[1]:.3f}x ({q[0]:.3f} to {q[2]:.3f})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--seconds", type=int, default=1)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--memory-sample-s", type=float, default=2.0)
    parser.add_argument("--no-pin", action="store_true", help="let the scheduler place everything")
    parser.add_argument("--kinds", default=",".join(KINDS), help="variants to run (bare always)")
    parser.add_argument("--paired", action="store_true", help="run each variant beside bare")
    parser.add_argument("--master-cpu", action="store_true", help="the idle master's CPU only")
    args = parser.parse_args()
    if args.master_cpu:
        _master_cpu(args)
        return 0
    kinds = ("bare", *(k for k in args.kinds.split(",") if k in KINDS and k != "bare"))
    cpus = sorted(os.sched_getaffinity(0))
    pin = None if args.no_pin or len(cpus) < 2 else ({cpus[0]}, str(cpus[-1]))
    server_cpus, wrk_cpus = pin if pin else (None, None)
    servers = {kind: _start(kind, args, server_cpus) for kind in kinds}
    results: dict[str, list[Result]] = {k: [] for k in kinds}
    master_cpu: dict[str, float] = {k: 0.0 for k in kinds}
    try:
        for server in servers.values():  # warm-up: connections, caches, first memory samples
            _wrk(server.port, 1, args.connections, wrk_cpus)
        if args.paired:
            _paired(servers, kinds, args, wrk_cpus)
            return 0
        for rnd in range(args.rounds):
            order = kinds[rnd % len(kinds) :] + kinds[: rnd % len(kinds)]
            for kind in order:
                r, rest = _slice(servers[kind], args, wrk_cpus)
                results[kind].append(r)
                master_cpu[kind] += rest
            line = ", ".join(f"{k} {results[k][-1].rps:,.0f}" for k in kinds)
            print(f"round {rnd + 1}: {line} req/s", flush=True)
    finally:
        for server in servers.values():
            os.kill(server.pid, signal.SIGTERM)
            os.waitpid(server.pid, 0)
    print(f"\n{args.rounds} rounds x {args.seconds} s per variant, wrk -t1 -c{args.connections}, "
          f"{'server on CPU 0, wrk on CPU ' + pin[1] if pin else 'unpinned'}, "
          f"memory sampled every {args.memory_sample_s} s\n")  # fmt: skip
    print("| variant | median req/s | throughput vs bare | µs CPU/request | CPU/request vs bare "
          "| master+zygote CPU ms/s |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|")
    base = results["bare"]
    wall = args.rounds * args.seconds
    for kind in kinds:
        rs = results[kind]
        tput = [r.rps / b.rps for r, b in zip(rs, base, strict=True)]
        cpu = [r.cpu_us_per_request / b.cpu_us_per_request for r, b in zip(rs, base, strict=True)]
        master = f"{master_cpu[kind] / wall * 1000:.1f}" if kind in ("serve", "full") else "-"
        print(f"| {kind} | {statistics.median(r.rps for r in rs):,.0f} | {_spread(tput)} | "
              f"{statistics.median(r.cpu_us_per_request for r in rs):.1f} | {_spread(cpu)} "
              f"| {master} |")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
