"""Slow clients against one worker: what slow readers cost in memory, and what slowloris
connections cost a normal client in latency (issue 16, points 7 and 8).

``readers``: corral serves ``apps/big_app.py`` (a 10 MiB list body on ``/``); after one whole
response (buffers warmed), N clients with a 16 KiB receive buffer ask for it and never read past
its first byte. Printed: each worker's private memory (USS, ``/proc/PID/smaps_rollup``) idle and
with the readers stalled on it, and the growth per reader.

``slowloris``: N connections each send an unfinished head and nothing more; meanwhile a normal
client makes one request per new connection (``/hello``) for ``--seconds``. Printed: the normal
client's p50/p99/max latency and failures, with and without the slowloris connections.

Usage: python benchmarks/slowclients.py readers [--clients 200] [--workers 1]
       python benchmarks/slowclients.py slowloris [--clients 3000] [--workers 2] [--seconds 10]
       [--pythonpath OTHER_SRC] [-- extra corral flags]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import sys
import time
from pathlib import Path

from leak import start_corral, stop_corral

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))
from corral.memory.proc import read_smaps_rollup  # noqa: E402

MIB = 1 << 20


def worker_pids(master: int) -> list[int]:
    """The master's children that are workers (the zygote and its intermediates excluded)."""
    pids = []
    for child in Path(f"/proc/{master}/task/{master}/children").read_text().split():
        cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
        if b"corral worker" in cmdline:
            pids.append(int(child))
    return sorted(pids)


def host_port(url: str) -> tuple[str, int]:
    host, _, port = url.removeprefix("http://").rpartition(":")
    return host, int(port)


def wait_workers(master: int, count: int) -> list[int]:
    deadline = time.monotonic() + 30
    while len(pids := worker_pids(master)) < count:
        if time.monotonic() > deadline:
            raise SystemExit(f"{count} workers did not start")
        time.sleep(0.05)
    return pids


def whole_get(addr: tuple[str, int], path: str) -> int:
    with socket.create_connection(addr, timeout=30) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        total = 0
        while chunk := sock.recv(1 << 20):
            total += len(chunk)
        return total


def readers(addr: tuple[str, int], master: int, args: argparse.Namespace) -> None:
    pids = wait_workers(master, args.workers)
    for _ in range(2 * args.workers):
        whole_get(addr, "/")
    idle = {pid: read_smaps_rollup(pid).uss for pid in pids}
    socks = []
    try:
        for _ in range(args.clients):
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
            sock.settimeout(30)
            sock.connect(addr)
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            socks.append(sock)
        for sock in socks:  # every response has started and stalls on its reader
            assert sock.recv(1) == b"H"
        during = {pid: read_smaps_rollup(pid).uss for pid in pids}
    finally:
        for sock in socks:
            sock.close()
    for pid in pids:
        grown = (during[pid] - idle[pid]) / MIB
        print(f"worker {pid}: USS {idle[pid] / MIB:.1f} MiB idle, {during[pid] / MIB:.1f} MiB "
              f"with the readers (+{grown:.1f} MiB)")  # fmt: skip
    worst = max(during[p] - idle[p] for p in pids) / MIB
    print(f"{args.clients} slow readers of a 10 MiB list body on {args.workers} worker(s): "
          f"largest growth {worst:.1f} MiB per worker")  # fmt: skip


def normal_client(addr: tuple[str, int], seconds: float) -> tuple[list[float], int]:
    took, failed = [], 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        started = time.monotonic()
        try:
            with socket.create_connection(addr, timeout=30) as sock:
                sock.sendall(b"GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                data = b""
                while chunk := sock.recv(65536):
                    data += chunk
            if not data.startswith(b"HTTP/1.1 200 "):
                failed += 1
        except OSError:
            failed += 1
        took.append(time.monotonic() - started)
        time.sleep(0.01)  # a visitor, not a load generator
    return took, failed


def report(label: str, took: list[float], failed: int) -> None:
    q = statistics.quantiles(took, n=100) if len(took) > 1 else took * 99
    print(f"{label}: {len(took)} requests, {failed} failed, p50 {q[49] * 1000:.1f} ms, "
          f"p99 {q[98] * 1000:.1f} ms, max {max(took) * 1000:.1f} ms")  # fmt: skip


def slowloris(addr: tuple[str, int], master: int, args: argparse.Namespace) -> None:
    wait_workers(master, args.workers)
    report("no slowloris", *normal_client(addr, args.seconds / 2))
    socks = []
    try:
        for _ in range(args.clients):
            sock = socket.socket()
            sock.setblocking(False)
            try:
                sock.connect(addr)
            except BlockingIOError:
                pass
            socks.append(sock)
        time.sleep(0.5)  # the handshakes complete (kernel side; accepted or in the backlog)
        for sock in socks:
            try:
                sock.send(b"GET / HTTP/1.1\r\nHost: x\r\n")  # never finished
            except OSError:
                pass
        report(f"{args.clients} slowloris", *normal_client(addr, args.seconds))
    finally:
        for sock in socks:
            sock.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("mode", choices=("readers", "slowloris"))
    parser.add_argument("--clients", type=int, default=0, help="200 readers / 3000 slowloris")
    parser.add_argument("--workers", type=int, default=0, help="1 for readers, 2 for slowloris")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--pythonpath", default="", help="another corral src/ to run")
    argv = sys.argv[1:]
    cut = argv.index("--") if "--" in argv else len(argv)
    args = parser.parse_args(argv[:cut])
    extra = argv[cut + 1 :]  # more corral flags
    args.clients = args.clients or (200 if args.mode == "readers" else 3000)
    args.workers = args.workers or (1 if args.mode == "readers" else 2)
    log = Path(os.environ.get("TMPDIR", "/tmp")) / f"corral-slowclients-{os.getpid()}.log"
    flags = ["big_app:app", "-b", "127.0.0.1:0", "-w", str(args.workers), *extra]
    proc, url = start_corral(flags, log, args.pythonpath)
    try:
        (readers if args.mode == "readers" else slowloris)(host_port(url), proc.pid, args)
    finally:
        stop_corral(proc)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
