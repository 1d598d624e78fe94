"""How fast is ``corral bench`` as a load generator, next to wrk and ab?

The script starts one target server -- a bare Python epoll loop in a single process that
answers every request with the same canned keep-alive response -- then drives it with
``wrk``, ``ab -k`` and ``corral bench`` in turn at the same concurrency, alternating the
order each round so no tool always gets the warm (or the tired) machine, and prints each
tool's requests/s and ``corral bench``'s ratio to the others.

Caveat that matters for reading the figures: the target is itself one Python process, so
it is often the bottleneck; a ratio near 1.0 then means "both saturate the server", and
the generator's own ceiling shows in the CPU it needed to get there. Run with
``--procs``/``--wrk-threads`` to compare multi-core generators.

Needs wrk and ab (apache2-utils). If they are missing::

    apt-get update && apt-get install -y wrk apache2-utils

Usage::

    .venv/bin/python benchmarks/bench.py [--seconds 5] [--connections 16] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import select
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from statistics import median

from corral.launch import stop_group

RESPONSE = (
    b"HTTP/1.1 200 OK\r\n"
    b"Server: canned\r\n"
    b"Content-Type: text/plain\r\n"
    b"Content-Length: 13\r\n"
    b"Connection: keep-alive\r\n"
    b"\r\n"
    b"Hello, world!"
)
READY_TIMEOUT_S = 10.0


# ------------------------------------------------------------------ the target server


def serve() -> None:
    """The canned-response server: prints its port, answers until killed.

    One reply per request head seen (a blank line ends a head; benchmark requests carry no
    body). The last three bytes of each read are kept so a head split across reads counts.
    """
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(1024)
    listener.setblocking(False)
    ep = select.epoll()
    ep.register(listener.fileno(), select.EPOLLIN)
    conns: dict[int, tuple[socket.socket, list[bytes]]] = {}
    print(listener.getsockname()[1], flush=True)
    while True:
        for fd, _ in ep.poll():
            if fd == listener.fileno():
                _accept(listener, ep, conns)
            else:
                _answer(fd, ep, conns)


def _accept(
    listener: socket.socket, ep: select.epoll, conns: dict[int, tuple[socket.socket, list[bytes]]]
) -> None:
    while True:
        try:
            sock, _ = listener.accept()
        except BlockingIOError:
            return
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conns[sock.fileno()] = (sock, [b""])
        ep.register(sock.fileno(), select.EPOLLIN)


def _answer(fd: int, ep: select.epoll, conns: dict[int, tuple[socket.socket, list[bytes]]]) -> None:
    sock, tail = conns[fd]
    try:
        data = sock.recv(65536)
    except (BlockingIOError, InterruptedError):
        return
    except OSError:
        data = b""
    if not data:
        ep.unregister(fd)
        del conns[fd]
        sock.close()
        return
    seen = tail[0] + data
    count = seen.count(b"\r\n\r\n")
    tail[0] = seen[-3:]
    if count:
        try:
            sock.sendall(RESPONSE * count)  # tiny replies: the socket buffer takes them
        except OSError:
            pass


def start_server() -> tuple[subprocess.Popen[bytes], int]:
    proc = subprocess.Popen(
        [sys.executable, __file__, "--serve"], stdout=subprocess.PIPE, start_new_session=True
    )
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], READY_TIMEOUT_S)
    if not ready:
        proc.kill()
        raise SystemExit("target server did not report its port in time")
    return proc, int(proc.stdout.readline())


# ------------------------------------------------------------------ the generators


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_tool(cmd: list[str], parse: Callable[[str], float], limit_s: float) -> tuple[float, float]:
    """(requests per second, CPU seconds the tool used)."""
    before = cpu_seconds()
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=limit_s, check=False)
    cpu = cpu_seconds() - before
    if out.returncode != 0:
        raise SystemExit(f"{cmd[0]} failed ({out.returncode}): {out.stderr.strip()[:300]}")
    return parse(out.stdout), cpu


def parse_wrk(text: str) -> float:
    match = re.search(r"Requests/sec:\s+([\d.]+)", text)
    assert match, text
    return float(match.group(1))


def parse_ab(text: str) -> float:
    match = re.search(r"Requests per second:\s+([\d.]+)", text)
    assert match, text
    return float(match.group(1))


def parse_corral(text: str) -> float:
    return float(json.loads(text)["rps"])


def commands(url: str, args: argparse.Namespace) -> dict[str, list[str]]:
    secs, conns = str(args.seconds), str(args.connections)
    return {
        "wrk": ["wrk", f"-t{args.wrk_threads}", f"-c{conns}", f"-d{secs}s", url],
        # -n large so -t decides; ab -t alone would stop at 50000 requests.
        "ab": ["ab", "-k", "-q", "-c", conns, "-t", secs, "-n", "100000000", url],
        "corral": [
            sys.executable,
            "-m",
            "corral.bench",
            "-c",
            conns,
            "-d",
            secs,
            "--procs",
            str(args.procs),
            "--json",
            url,
        ],
    }


def main() -> int:
    p = argparse.ArgumentParser(description="corral bench vs wrk and ab")
    p.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--seconds", type=int, default=5)
    p.add_argument("--connections", type=int, default=16)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--procs", type=int, default=1, help="corral bench --procs")
    p.add_argument("--wrk-threads", type=int, default=1)
    args = p.parse_args()
    if args.serve:
        serve()
        return 0
    tools = [t for t in ("wrk", "ab") if shutil.which(t)]
    missing = {"wrk", "ab"} - set(tools)
    if missing:
        print(f"missing {', '.join(sorted(missing))}: apt-get install -y wrk apache2-utils")
    server, port = start_server()
    try:
        return report(run_rounds(f"http://127.0.0.1:{port}/", args, [*tools, "corral"]), args)
    finally:
        stop_group(server, 10.0, term_group=True)


def run_rounds(
    url: str, args: argparse.Namespace, tools: list[str]
) -> dict[str, list[tuple[float, float]]]:
    parsers = {"wrk": parse_wrk, "ab": parse_ab, "corral": parse_corral}
    cmds = commands(url, args)
    results: dict[str, list[tuple[float, float]]] = {t: [] for t in tools}
    for round_no in range(args.rounds):
        order = tools if round_no % 2 == 0 else list(reversed(tools))
        for tool in order:
            rps, cpu = run_tool(cmds[tool], parsers[tool], args.seconds * 3 + 30)
            results[tool].append((rps, cpu))
            print(f"round {round_no + 1} {tool:>6}: {rps:>10,.0f} req/s  cpu {cpu:5.2f}s")
            time.sleep(0.5)  # let TIME_WAIT and the server settle between tools
    return results


def report(results: dict[str, list[tuple[float, float]]], args: argparse.Namespace) -> int:
    print(
        f"\n-c {args.connections}, {args.seconds}s each, {args.rounds} rounds, "
        f"corral --procs {args.procs}, wrk -t{args.wrk_threads}, {os.cpu_count()} CPUs"
    )
    med = {tool: median(r for r, _ in runs) for tool, runs in results.items()}
    cpu = {tool: median(c for _, c in runs) for tool, runs in results.items()}
    for tool, rps in med.items():
        per_cpu = rps * args.seconds / cpu[tool] if cpu[tool] else 0.0
        print(f"{tool:>7}: median {rps:>10,.0f} req/s   {per_cpu:>10,.0f} req per CPU-second")
    for other in ("wrk", "ab"):
        if med.get(other):
            print(f"corral/{other}: {med['corral'] / med[other]:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
