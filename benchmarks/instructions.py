"""Userland instructions per request through corral's real worker hot path, counted by callgrind
(repeatable on a noisy machine, unlike requests per second).

The worker's connection handler runs in-process over a socketpair: N keep-alive hello-world
requests, each read, parsed, passed to the app, answered and sent. Instructions per request =
(count with N requests - count with 0) / N. It compares a ``NullSlot`` (records nothing) with the
real shared-memory scoreboard slot, which is the cost of the stats (issue 5). The slot batches
finished requests; ``--batch`` says when they are stored: ``auto`` as the worker loop does
(``slot.publish(now)`` after each request: a store at most every 5 ms), a number B every B
requests (``slot.flush()``): 1 is the worst case, a store per request.

``--memguard idle|every`` adds the worker's own memory check (``corral.worker.memguard``) as the
loop runs it after each round: ``idle`` is the comparison with ``due`` alone (what a request
costs between checks), ``every`` runs the check itself on every request (statm ``pread`` and the
estimate; the loop does it once per 10 ms). The difference from ``off`` is the check's cost.

``--timed`` measures CPU time per request instead (user + system, so the kernel's share of a
request counts), both slots in one process, alternated, 21 rounds: on a noisy machine the
ratio is far steadier than any two wrk runs.

``--http-parser native,python`` compares the request-head parsers (corral.http.native) with the
scoreboard slot published as the loop does; ``--unique-heads`` adds an ``X-Seq: N`` field so that
every head differs and misses the head cache (a seen head is never parsed again), which is where
the parser's own cost shows.

Usage: python benchmarks/instructions.py [--requests 2000] [--kind wrk|browser] [--batch 1,16,auto]
       python benchmarks/instructions.py --http-parser native,python [--unique-heads]
       python benchmarks/instructions.py --memguard idle,every --batch auto
       python benchmarks/instructions.py --timed [--requests 5000] [--batch 1,16,auto]
       (needs valgrind; `python benchmarks/instructions.py --drive N KIND SLOT B [GUARD]` is the
       inner run)

Whole servers, corral's or any other (``callgrind_argv``, ``callgrind_total``, ``keepalive``,
used by benchmarks/hello.py): the server runs under ``valgrind --tool=callgrind
--trace-children=yes`` with one counts file per process, is sent W keep-alive requests on one
real TCP connection (run A) or W + N (run B), is stopped with TERM and waited for until every
process has written its file; instructions per request = (sum of B's files - sum of A's) / N.
Everything but the N requests (start-up, imports, forks, the ready probe, shutdown) is the same
in both runs and cancels; a forked child's counts start from its parent's, which also cancels.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import re
import select
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from corral.http.microbench import REQUEST as BROWSER_REQUEST

REQUESTS = {
    "wrk": b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8000\r\n\r\n",
    "browser": BROWSER_REQUEST,
}
BODY = b"Hello, world!"


def hello(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "13")])
    return [BODY]


def _harness(
    kind: str, slot_kind: str, batch: int, guard: str = "off", parser: str = "auto",
    unique: bool = False,
) -> Callable[[int], None]:  # fmt: skip
    """A worker holding one end of a socketpair; the returned function sends it ``n`` requests
    one at a time and reads each response, flushing the slot every ``batch`` requests (0: as
    the worker loop does, ``publish`` after each)."""
    from corral import config
    from corral.master.worker_settings import worker_settings
    from corral.stats.protocol import NullSlot, SlotWriter
    from corral.stats.scoreboard import Scoreboard, install_gc_callbacks
    from corral.worker.loop import WorkerLoop

    slot: SlotWriter = NullSlot()
    if slot_kind != "null":
        board_slot = Scoreboard.create(2).writer(0)
        install_gc_callbacks(board_slot)  # as in a corral worker
        slot = board_slot
    limits = (1 << 40, "uss", 0) if guard != "off" else (0, "uss", 0)  # never over 1 TiB
    settings = worker_settings(config.defaults())
    native_head = settings.native_head if parser == "auto" else parser == "native"
    settings = dataclasses.replace(settings, memory_limits=limits, native_head=native_head)
    worker = WorkerLoop(hello, [], settings, slot)
    memguard = worker.memguard
    if guard == "idle":
        memguard.check(0.0)  # the baseline, then never due within the run
        memguard.due = float("inf")
    a, b = socket.socketpair()
    worker.server_addr[-1] = ("127.0.0.1", "8000")
    worker._add_conn(a, None, -1)
    conn = worker.conns[a.fileno()]
    b.settimeout(5)
    request = REQUESTS[kind]
    seq = [0]

    def run(n: int) -> None:
        for i in range(n):
            if unique:  # a head never seen before: the head cache misses
                seq[0] += 1
                b.send(request[:-2] + b"X-Seq: %d\r\n\r\n" % seq[0])
            else:
                b.send(request)
            worker._on_conn_event(conn, select.EPOLLIN)
            out = b.recv(65536)
            assert i or out.startswith(b"HTTP/1.1 200 OK"), out
            if batch == 0:
                slot.publish(time.monotonic())
            elif i % batch == batch - 1:
                slot.flush()
            if guard != "off":  # the loop's hook line; "every": a fake clock 1 s per request
                now = float(i + 1)
                if now >= memguard.due and memguard.check(now):
                    raise AssertionError("over a 1 TiB limit?")

    return run


def drive(
    n: int, kind: str, slot_kind: str, batch: int, guard: str = "off", parser: str = "auto",
    unique: bool = False,
) -> None:  # fmt: skip
    run = _harness(kind, slot_kind, batch, guard, parser, unique)
    run(200)  # warm-up requests in both runs, then n
    run(n)


def timed(kind: str, batch: int, rounds: int, n: int) -> tuple[float, float, list[float]]:
    """CPU time per request (process_time: user + system, so the socket calls count) of both
    slots in one process, alternated round by round: median µs of each and per-round ratios."""
    gc.freeze()  # a corral worker's heap is frozen (or immortal): no collection walks it
    runs = {slot: _harness(kind, slot, batch) for slot in ("null", "scoreboard")}
    for run in runs.values():
        run(500)
    per: dict[str, list[float]] = {slot: [] for slot in runs}
    for r in range(rounds):
        for slot in ("null", "scoreboard") if r % 2 else ("scoreboard", "null"):
            started = time.process_time()
            runs[slot](n)
            per[slot].append((time.process_time() - started) / n * 1e6)
    ratios = [b / a for a, b in zip(per["null"], per["scoreboard"], strict=True)]
    return statistics.median(per["null"]), statistics.median(per["scoreboard"]), ratios


def count(
    n: int, kind: str, slot: str, batch: int, guard: str = "off", parser: str = "auto",
    unique: bool = False,
) -> int:  # fmt: skip
    with tempfile.NamedTemporaryFile(suffix=".cg") as out:
        run = subprocess.run(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out.name}",
             sys.executable, __file__, "--drive", str(n), kind, slot, str(batch), guard, parser,
             str(int(unique))],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
    match = re.search(r"Collected : (\d+)", run.stderr)
    assert match, run.stderr[-2000:]
    return int(match.group(1))


def callgrind_argv(argv: list[str], out_dir: str) -> list[str]:
    """``argv`` run under callgrind, every process (forked or exec'd) writing its own file."""
    return [
        "valgrind", "--tool=callgrind", "--trace-children=yes",
        f"--callgrind-out-file={out_dir}/cg.%p", *argv,
    ]  # fmt: skip


def callgrind_total(out_dir: str) -> int:
    """The sum of the ``summary:`` (instructions) lines of every callgrind file in ``out_dir``."""
    total = 0
    for path in Path(out_dir).glob("cg.*"):
        match = re.search(rb"^summary: (\d+)", path.read_bytes(), re.M)
        assert match, f"{path} has no summary line"
        total += int(match.group(1))
    return total


def read_response(s: socket.socket) -> bytes:
    """One response, head and body by ``Content-Length``; raises on EOF before it is whole."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(65536)
        if not chunk:
            raise ConnectionError(f"EOF after {buf!r}")
        buf += chunk
    head, _, body = buf.partition(b"\r\n\r\n")
    length = re.search(rb"(?im)^content-length:\s*(\d+)", head)
    want = int(length.group(1)) if length else 0
    while len(body) < want:
        chunk = s.recv(65536)
        if not chunk:
            raise ConnectionError("EOF in the body")
        body += chunk
    return head


def keepalive(port: int, n: int, request: bytes, timeout_s: float) -> None:
    """``n`` requests one after another on one keep-alive connection, each answered 200."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as s:
        for _ in range(n):
            s.sendall(request)
            head = read_response(s)
            assert head.startswith(b"HTTP/1.1 200"), head[:200]


def _batches(spec: str) -> list[tuple[str, int]]:
    return [(b, 0 if b == "auto" else int(b)) for b in spec.split(",")]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--kind", choices=sorted(REQUESTS), default="wrk")
    parser.add_argument("--batch", default="1,16,auto", help="requests per flush, or auto")
    parser.add_argument("--drive", nargs="+", metavar="N KIND SLOT B [GUARD]")
    parser.add_argument("--memguard", default="", help="idle,every: the memory check's cost")
    parser.add_argument("--timed", action="store_true", help="CPU time, not callgrind")
    parser.add_argument("--rounds", type=int, default=21, help="with --timed")
    parser.add_argument("--http-parser", default="", help="native,python: the head parsers")
    parser.add_argument("--unique-heads", action="store_true", help="every head differs")
    args = parser.parse_args()
    if args.timed:
        print(f"| requests per flush | NullSlot µs CPU | scoreboard µs CPU | overhead (quartiles) "
              f"|  ({args.kind} request, {args.rounds} rounds)\n|---:|---:|---:|---:|")  # fmt: skip
        for label, batch in _batches(args.batch):
            null, board, ratios = timed(args.kind, batch, args.rounds, args.requests)
            q = statistics.quantiles(ratios, n=4)
            print(f"| {label} | {null:.2f} | {board:.2f} | {q[1] - 1:+.1%} "
                  f"({q[0] - 1:+.1%} to {q[2] - 1:+.1%}) |", flush=True)  # fmt: skip
        return 0
    if args.drive:
        d = args.drive
        extra = (d[4] if len(d) > 4 else "off", d[5] if len(d) > 5 else "auto", d[6:7] == ["1"])
        drive(int(d[0]), d[1], d[2], int(d[3]), *extra)
        return 0
    n = args.requests
    if args.memguard:
        return _memguard_table(n, args.kind, _batches(args.batch)[0][1], args.memguard)
    if args.http_parser:
        return _parser_table(n, args.kind, args.http_parser, args.unique_heads)
    rows = []
    for label, batch in _batches(args.batch):
        per = {}
        for slot in ("null", "scoreboard"):
            per[slot] = (count(n, args.kind, slot, batch) - count(0, args.kind, slot, batch)) // n
        rows.append((label, per["null"], per["scoreboard"]))
    print(f"| requests per flush | NullSlot | scoreboard | overhead |  ({args.kind} request)")
    print("|---:|---:|---:|---:|")
    for label, null, board in rows:
        print(f"| {label} | {null:,} | {board:,} | {board / null - 1:+.1%} |")
    return 0


def _parser_table(n: int, kind: str, parsers: str, unique: bool) -> int:
    """Instructions per request with each head parser (scoreboard slot, published per request)."""
    heads = "every head new (cache misses)" if unique else "the same head (cache hits)"
    print(f"| head parser | instructions per request |  ({kind} request, {heads})")
    print("|---|---:|")
    for parser in parsers.split(","):
        per = (count(n, kind, "scoreboard", 0, "off", parser, unique)
               - count(0, kind, "scoreboard", 0, "off", parser, unique)) // n  # fmt: skip
        print(f"| {parser} | {per:,} |", flush=True)
    return 0


def _memguard_table(n: int, kind: str, batch: int, modes: str) -> int:
    """Instructions per request with the scoreboard slot, without and with the memory check."""

    def per(guard: str) -> int:
        return (count(n, kind, "scoreboard", batch, guard) - count(0, kind, "scoreboard", batch,
                                                                    guard)) // n  # fmt: skip

    base = per("off")
    print(f"| memory check | instructions per request | vs off |  ({kind} request)")
    print("|---|---:|---:|")
    print(f"| off | {base:,} | |")
    for guard in modes.split(","):
        value = per(guard)
        print(f"| {guard} | {value:,} | {value - base:+,} ({value / base - 1:+.1%}) |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
