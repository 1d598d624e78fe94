"""A large upload read in one ``wsgi.input.read(n)``: corral next to gunicorn, same run.

Theory of operation. Django's ``request.body`` reads the whole body with one
``read(CONTENT_LENGTH)``. corral used to grow an immutable ``bytes`` by each 64 KiB piece, so
that one call was quadratic (issue 16: 20.5 s of CPU for 50 MiB against gunicorn's 0.16 s).
This script starts each server with one sync worker on ``apps/upload_app.py``, POSTs the same
body ``--rounds`` times to each (servers alternated each round), and reports per server the
median of two figures: the app's CPU time inside the read (user + system of the worker, from
``time.process_time``, so a busy machine's waiting does not count) and the client's wall time
for the whole request. The target is corral within 1.5x gunicorn on both.

Usage::

    .venv/bin/pip install gunicorn==27.0.1   # the pin of benchmarks/peers.txt
    .venv/bin/python benchmarks/upload.py [--mib 50] [--rounds 5]
"""

from __future__ import annotations

import argparse
import http.client
import subprocess
import time
from collections.abc import Callable, Sequence
from statistics import median

from hello import APPS, BIN, START_DEADLINE_S, free_port, stop, wait_ready

SERVERS: dict[str, Callable[[int], list[str]]] = {
    "corral": lambda port: [str(BIN / "corral"), "serve", "upload_app:app", "-w", "1",
                            "-b", f"127.0.0.1:{port}", "--log-level", "warning"],
    "gunicorn": lambda port: [str(BIN / "gunicorn"), "-k", "sync", "-w", "1", "-t", "120",
                              "-b", f"127.0.0.1:{port}", "--log-level", "warning",
                              "upload_app:app"],
}  # fmt: skip


def post(port: int, body: bytes) -> tuple[float, float]:
    """(app CPU seconds, client wall seconds) for one POST of ``body``."""
    t0 = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        conn.request("POST", "/upload", body=body)
        resp = conn.getresponse()
        size, cpu = resp.read().split()
    finally:
        conn.close()
    if resp.status != 200 or int(size) != len(body):
        raise RuntimeError(f"port {port}: status {resp.status}, read {size!r} bytes")
    return float(cpu), time.perf_counter() - t0


def run(mib: int, rounds: int) -> dict[str, list[tuple[float, float]]]:
    body = b"x" * (mib * 1024 * 1024)
    procs, ports = {}, {}
    try:
        for name, argv in SERVERS.items():
            ports[name] = free_port()
            procs[name] = subprocess.Popen(argv(ports[name]), cwd=APPS, start_new_session=True)
            wait_ready(procs[name], ports[name], START_DEADLINE_S)
        results: dict[str, list[tuple[float, float]]] = {name: [] for name in SERVERS}
        names = list(SERVERS)
        for i in range(rounds):
            for name in names[i % 2 :] + names[: i % 2]:  # alternate who goes first
                results[name].append(post(ports[name], body))
        return results
    finally:
        for proc in procs.values():
            stop(proc, 10.0)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mib", type=int, default=50, help="body size in MiB (default 50)")
    ap.add_argument("--rounds", type=int, default=5, help="POSTs per server (default 5)")
    args = ap.parse_args(argv)
    results = run(args.mib, args.rounds)
    cpu = {name: median(r[0] for r in rs) for name, rs in results.items()}
    wall = {name: median(r[1] for r in rs) for name, rs in results.items()}
    print(f"{args.mib} MiB body, one read(n), median of {args.rounds}")
    print("| server | app CPU in read (s) | request wall (s) |")
    print("|---|---|---|")
    for name in SERVERS:
        print(f"| {name} | {cpu[name]:.3f} | {wall[name]:.3f} |")
    print(f"corral / gunicorn: CPU {cpu['corral'] / cpu['gunicorn']:.2f}x, "
          f"wall {wall['corral'] / wall['gunicorn']:.2f}x")  # fmt: skip
    ok = cpu["corral"] <= 1.5 * cpu["gunicorn"] and wall["corral"] <= 1.5 * wall["gunicorn"]
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
