"""Userland instructions per request through corral's real worker hot path, counted by callgrind
(repeatable on a noisy machine, unlike requests per second).

The worker's connection handler runs in-process over a socketpair: N keep-alive hello-world
requests, each read, parsed, passed to the app, answered and sent. Instructions per request =
(count with N requests - count with 0) / N. ``--slot`` compares a ``NullSlot`` (records nothing)
with the real shared-memory scoreboard slot, which is the cost of the stats (issue 5).

Usage: python benchmarks/instructions.py [--requests 2000] [--kind wrk|browser]
       (needs valgrind; `python benchmarks/instructions.py --drive N KIND SLOT` is the inner run)
"""

from __future__ import annotations

import argparse
import re
import select
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable
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


def drive(n: int, kind: str, slot_kind: str) -> None:
    from corral.stats.protocol import NullSlot, SlotWriter
    from corral.stats.scoreboard import Scoreboard
    from corral.worker.loop import Worker
    from corral.worker.settings import WorkerSettings

    slot: SlotWriter = NullSlot() if slot_kind == "null" else Scoreboard.create(2).writer(0)
    worker = Worker(hello, [], WorkerSettings(accept_batch=1), slot)
    a, b = socket.socketpair()
    worker.server_addr[-1] = ("127.0.0.1", "8000")
    worker._add_conn(a, None, -1)
    conn = worker.conns[a.fileno()]
    b.settimeout(5)
    request = REQUESTS[kind]
    for i in range(200 + n):  # 200 warm-up requests in both runs, then n
        b.send(request)
        worker._on_conn_event(conn, select.EPOLLIN)
        out = b.recv(65536)
        assert i or out.startswith(b"HTTP/1.1 200 OK"), out


def count(n: int, kind: str, slot: str) -> int:
    with tempfile.NamedTemporaryFile(suffix=".cg") as out:
        run = subprocess.run(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out.name}",
             sys.executable, __file__, "--drive", str(n), kind, slot],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
    match = re.search(r"Collected : (\d+)", run.stderr)
    assert match, run.stderr[-2000:]
    return int(match.group(1))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--kind", choices=sorted(REQUESTS), default="wrk")
    parser.add_argument("--drive", nargs=3, metavar=("N", "KIND", "SLOT"))
    args = parser.parse_args()
    if args.drive:
        drive(int(args.drive[0]), args.drive[1], args.drive[2])
        return 0
    per: dict[str, int] = {}
    for slot in ("null", "scoreboard"):
        base = count(0, args.kind, slot)
        per[slot] = (count(args.requests, args.kind, slot) - base) // args.requests
    print(f"| slot | instructions/request ({args.kind}) |\n|---|---:|")
    for slot, value in per.items():
        print(f"| {slot} | {value:,} |")
    print(f"scoreboard overhead: {per['scoreboard'] / per['null'] - 1:+.1%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
