"""What the scoreboard and the stats server cost on hello-world throughput (issue 5).

Three variants of one worker serving the same hello-world app, measured with wrk keep-alive,
alternated round by round, medians reported:

- ``bare``:   the worker loop (``corral.worker.serve``) with a ``NullSlot``: records nothing;
- ``slot``:   the same loop writing a real shared-memory scoreboard slot (what every corral
              worker does);
- ``full``:   ``corral serve -w 1 --stats``: master, zygote, scoreboard, memory sampling every
              0.5 s, and a client scraping ``/stats`` and ``/metrics`` every second.

Usage: python benchmarks/overhead.py [--rounds 3] [--seconds 5] [--connections 16]
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

from corral.stats.protocol import NullSlot, SlotWriter
from corral.stats.scoreboard import Scoreboard
from corral.worker import WorkerSettings, serve

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


from overhead_app import hello


def _listener() -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    return sock


def _fork_worker(slot_kind: str) -> tuple[int, int]:
    sock = _listener()
    port = sock.getsockname()[1]
    board = Scoreboard.create(4) if slot_kind == "slot" else None
    pid = os.fork()
    if pid == 0:
        slot: SlotWriter = board.writer(0) if board is not None else NullSlot()
        code = serve(hello, [sock], WorkerSettings(accept_batch=1), slot)
        os._exit(code)
    sock.close()
    return pid, port


def _start_full() -> tuple[int, int, str]:
    r, w = os.pipe()
    stats_port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "corral", "serve", "overhead_app:hello", "-b", "127.0.0.1:0",
         "-w", "1", "--stats", f"127.0.0.1:{stats_port}", "--memory-sample-s", "0.5",
         "--ready-fd", str(w), "--log-level", "warning"],
        pass_fds=(w,), env={**os.environ, "PYTHONPATH": os.path.dirname(__file__)},
    )  # fmt: skip
    os.close(w)
    line = b""
    deadline = time.monotonic() + 30
    while not line.endswith(b"\n") and time.monotonic() < deadline:
        line += os.read(r, 256)
    os.close(r)
    port = int(line.decode().split(":")[-1])
    return proc.pid, port, f"http://127.0.0.1:{stats_port}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wrk(port: int, seconds: int, connections: int) -> float:
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", f"http://127.0.0.1:{port}/"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    assert match, out
    return float(match.group(1))


def _scrape(stats: str, stop: threading.Event) -> None:
    while not stop.wait(1.0):
        for path in ("/stats", "/metrics"):
            with urllib.request.urlopen(stats + path, timeout=5) as resp:
                resp.read()


def _run(kind: str, seconds: int, connections: int) -> float:
    if kind == "full":
        pid, port, stats = _start_full()
        stop = threading.Event()
        scraper = threading.Thread(target=_scrape, args=(stats, stop), daemon=True)
        scraper.start()
    else:
        pid, port = _fork_worker(kind)
    try:
        return _wrk(port, seconds, connections)
    finally:
        if kind == "full":
            stop.set()
        os.kill(pid, signal.SIGTERM)
        os.waitpid(pid, 0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=16)
    args = parser.parse_args()
    kinds = ["bare", "slot", "full"]
    results: dict[str, list[float]] = {k: [] for k in kinds}
    for rnd in range(args.rounds):
        order = kinds[rnd % 3 :] + kinds[: rnd % 3]  # rotate who goes first
        for kind in order:
            results[kind].append(_run(kind, args.seconds, args.connections))
            print(f"round {rnd + 1} {kind}: {results[kind][-1]:.0f} req/s", flush=True)
    base = statistics.median(results["bare"])
    print("\n| variant | median req/s | vs bare |\n|---|---:|---:|")
    for kind in kinds:
        med = statistics.median(results[kind])
        print(f"| {kind} | {med:,.0f} | {med / base:.3f}x |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
