"""A fast leak against the memory limit: how far over it does a worker get, and does any request
fail? (issue 16, point 2)

corral serves ``apps/leak_app.py`` (``/leak?KIB`` keeps KIB KiB per request) with
``--max-worker-memory-mib``; unpaced load (wrk when installed, else corral's own load
generator) runs for a fixed time while ``tests/system/memsampler.py``, a process of its own,
reads every worker's ``/proc/PID/smaps_rollup`` in a tight loop. Printed: requests, failures,
leak rate, the largest private (USS) sample of any worker and its ratio to the limit, and how
many workers took turns.

Usage: python benchmarks/leak.py [--kib 256] [--limit-mib 64] [--workers 2] [--seconds 10]
       [--connections 8] [--load wrk|corral] [--pythonpath OTHER_SRC] [-- extra corral flags]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import select
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SAMPLER = HERE.parent / "tests" / "system" / "memsampler.py"
MIB = 1024 * 1024


def start_corral(
    args: list[str], log_path: Path, pythonpath: str = ""
) -> tuple[subprocess.Popen[bytes], str]:
    """``corral serve`` on port 0 in its own session; returns it and its URL once ready.
    ``pythonpath`` goes ahead of the installed corral (to run another checkout's ``src``)."""
    ready_r, ready_w = os.pipe()
    path = os.pathsep.join(p for p in (pythonpath, str(HERE / "apps")) if p)
    env = {**os.environ, "PYTHONPATH": path, "PYTHONDONTWRITEBYTECODE": "1"}
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "corral", "serve", "--ready-fd", str(ready_w), *args],
            stdout=log, stderr=subprocess.STDOUT, pass_fds=(ready_w,), start_new_session=True,
            env=env,
        )  # fmt: skip
    os.close(ready_w)
    buf, deadline = b"", time.monotonic() + 60
    while b"\n" not in buf:
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            raise SystemExit(f"corral did not become ready; see {log_path}")
        if select.select([ready_r], [], [], 0.5)[0]:
            buf += os.read(ready_r, 1024)
    os.close(ready_r)
    return proc, buf.decode().split()[1]


def stop_corral(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait(5)


def wrk(url: str, connections: int, seconds: float) -> dict[str, int]:
    """Unpaced wrk; returns requests and the failures it counts (socket errors + non-2xx)."""
    out = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{seconds:g}s", url],
        capture_output=True, text=True, timeout=seconds + 60, check=True,
    ).stdout  # fmt: skip
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    failed = sum(map(int, errors.groups())) if errors else 0
    bad = int(non2xx.group(1)) if non2xx else 0
    return {"requests": requests, "failed": failed, "non_2xx": bad}


def corral_load(url: str, connections: int, seconds: float) -> dict[str, int]:
    from corral.bench import LoadConfig, run_load

    result = run_load(LoadConfig(urls=(url,), connections=connections, duration_s=seconds, procs=2))
    return {"requests": result.requests, "failed": result.failed,
            "non_2xx": result.errors["non_2xx"]}  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kib", type=int, default=256, help="KiB kept per request")
    parser.add_argument("--limit-mib", type=float, default=64.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--load", choices=("wrk", "corral"), default="wrk")
    parser.add_argument("--pythonpath", default="", help="another corral src/ to run")
    parser.add_argument("extra", nargs="*", help="more corral flags (after --)")
    args = parser.parse_args()
    if args.load == "wrk" and shutil.which("wrk") is None:
        args.load = "corral"
    log = Path(os.environ.get("TMPDIR", "/tmp")) / f"corral-leak-{os.getpid()}.log"
    flags = ["leak_app:app", "-b", "127.0.0.1:0", "-w", str(args.workers),
             "--max-worker-memory-mib", f"{args.limit_mib:g}", *args.extra]  # fmt: skip
    proc, url = start_corral(flags, log, args.pythonpath)
    sampler = subprocess.Popen(
        [sys.executable, str(SAMPLER), str(proc.pid), str(args.seconds + 30)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
    )  # fmt: skip
    try:
        load = wrk if args.load == "wrk" else corral_load
        counts = load(f"{url}/leak?{args.kib}", args.connections, args.seconds)
    finally:
        seen = json.loads(sampler.communicate(b"", timeout=60)[0])
        stop_corral(proc)
    text = log.read_text(errors="replace")
    peak = seen["max_private"] / MIB
    rate = counts["requests"] * args.kib / 1024 / args.seconds
    print(
        f"load {args.load}: {counts['requests']} requests in {args.seconds:g} s, "
        f"{counts['failed']} failed, {counts['non_2xx']} non-2xx; leak {rate:.0f} MiB/s total"
    )
    print(f"limit {args.limit_mib:g} MiB: max private sample {peak:.1f} MiB "
          f"({peak / args.limit_mib:.2f}x) over {seen['samples']} samples; "
          f"{seen['workers']} workers seen, {text.count('recycling')} recycles logged, "
          f"{text.count('stops taking requests')} stopped themselves")  # fmt: skip
    return 0 if counts["failed"] == 0 and peak <= 1.5 * args.limit_mib else 1


if __name__ == "__main__":
    raise SystemExit(main())
