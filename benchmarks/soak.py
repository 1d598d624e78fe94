"""A soak: corral at about half its capacity for a long time, with a random reload (SIGHUP),
SIGKILL of a worker or leak burst every 30 s. (issue 16)

Theory of operation. corral serves ``apps/leak_app.py`` with a memory limit. A short unpaced
run measures the capacity of ``/``; the soak then drives ``corral bench --rate capacity/2`` (open
model, so a stall shows as latency and errors instead of slowing the load) and reads its
per-second CSV. Every ``--every-s`` one event is drawn (seeded): ``hup`` (a new generation),
``kill`` (SIGKILL to a random worker: the requests it held may fail) or ``leak`` (a burst of
``/leak?256`` requests beside the load, enough to push workers over the limit and through the
memory recycling path). Every 5 s the master's RSS, open descriptors and threads are read from
``/proc``.

Verdict: error rate under 0.01%; every second with an error within ``TIE_S`` after a SIGKILL
(errors of the leak bursts count too); the master's RSS, fds and threads flat (last minute
against the first minute after warm-up).

Usage: python benchmarks/soak.py [--minutes 60] [--every-s 30] [--workers 2] [--limit-mib 64]
       [--connections 16] [--seed 1]
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import random
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from leak import start_corral, stop_corral

TIE_S = 5.0  # an error second up to this long after a SIGKILL (2 s before: the bench's
# clock starts a little after the script's) is that kill's: resets, reconnects
SAMPLE_S = 5.0
BENCH = [sys.executable, "-m", "corral", "bench"]


@dataclass
class Soak:
    master: int
    url: str
    events: list[tuple[float, str, str]] = field(default_factory=list)  # (t, kind, detail)
    master_samples: list[tuple[float, int, int, int]] = field(default_factory=list)
    bursts: list[subprocess.Popen[str]] = field(default_factory=list)


def worker_pids(master: int) -> list[int]:
    """The master's children whose title says ``corral worker`` (it adopts its workers)."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            title = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        if int(stat[1]) == master and b"corral worker" in title:
            out.append(int(entry))
    return out


def master_figures(pid: int) -> tuple[int, int, int]:
    """(RSS bytes, open fds, threads) of ``pid``."""
    status = Path(f"/proc/{pid}/status").read_text()
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    rss = int(fields["VmRSS"].split()[0]) * 1024
    return rss, len(os.listdir(f"/proc/{pid}/fd")), int(fields["Threads"])


def bench(url: str, *args: str, timeout: float) -> str:
    return subprocess.run(
        [*BENCH, *args, "--csv-series", url], capture_output=True, text=True, timeout=timeout
    ).stdout


def capacity(url: str, connections: int) -> float:
    rows = list(csv.DictReader(io.StringIO(bench(url, "-d", "5", "-c", str(connections),
                                                 timeout=60))))  # fmt: skip
    full = [int(r["requests"]) for r in rows[1:-1]] or [int(r["requests"]) for r in rows]
    return statistics.median(full)


def event(soak: Soak, rng: random.Random, t: float) -> None:
    kind = rng.choice(("hup", "kill", "leak"))
    detail = ""
    if kind == "hup":
        os.kill(soak.master, signal.SIGHUP)
    elif kind == "kill":
        pids = worker_pids(soak.master)
        if pids:
            victim = rng.choice(pids)
            os.kill(victim, signal.SIGKILL)
            detail = f"pid {victim}"
    else:
        burst = [*BENCH, "-n", "400", "-c", "4", "--csv", f"{soak.url}/leak?256"]
        soak.bursts.append(subprocess.Popen(burst, stdout=subprocess.PIPE, text=True))
        detail = "400 x 256 KiB"
    soak.events.append((t, kind, detail))
    print(f"{t:7.1f} s  {kind} {detail}", flush=True)


def run(soak: Soak, seconds: float, every_s: float, rate: float, conns: int, seed: int) -> str:
    rng = random.Random(seed)
    load = subprocess.Popen(
        [*BENCH, "--rate", f"{rate:.0f}", "-d", f"{seconds:g}", "-c", str(conns),
         "--csv-series", soak.url + "/"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    start = time.monotonic()
    next_event, next_sample = start + every_s, start
    while load.poll() is None and time.monotonic() < start + seconds + 60:
        now = time.monotonic()
        if now >= next_sample:
            soak.master_samples.append((now - start, *master_figures(soak.master)))
            next_sample += SAMPLE_S
        if now >= next_event and now < start + seconds - 5:
            event(soak, rng, now - start)
            next_event += every_s
        time.sleep(0.1)
    out, _ = load.communicate(timeout=60)
    return out


def burst_errors(soak: Soak) -> int:
    total = 0
    for p in soak.bursts:
        out, _ = p.communicate(timeout=120)
        rows = list(csv.DictReader(io.StringIO(out)))
        total += sum(int(r.get("errors") or 0) for r in rows)
    return total


def flat(samples: list[tuple[float, int, int, int]], seconds: float) -> list[str]:
    """First minute after warm-up vs last minute: RSS, fds, threads."""
    warm = [s for s in samples if 60 <= s[0] < 120] or samples[: len(samples) // 4 or 1]
    last = [s for s in samples if s[0] >= seconds - 60] or samples[-(len(samples) // 4 or 1) :]
    lines = []
    for i, name in ((1, "RSS MiB"), (2, "fds"), (3, "threads")):
        a = statistics.median(s[i] for s in warm)
        b = statistics.median(s[i] for s in last)
        top = max(s[i] for s in samples)
        scale = 1024 * 1024 if i == 1 else 1
        lines.append(f"{name}: {a / scale:.1f} -> {b / scale:.1f} (max {top / scale:.1f})")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--every-s", type=float, default=30.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--limit-mib", type=float, default=64.0)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    log = Path(os.environ.get("TMPDIR", "/tmp")) / f"corral-soak-{os.getpid()}.log"
    flags = ["leak_app:app", "-b", "127.0.0.1:0", "-w", str(args.workers),
             "--max-worker-memory-mib", f"{args.limit_mib:g}"]  # fmt: skip
    proc, url = start_corral(flags, log)
    seconds = args.minutes * 60
    try:
        cap = capacity(url + "/", args.connections)
        rate = cap / 2
        print(f"capacity {cap:.0f} req/s; soak at {rate:.0f} req/s for {seconds:g} s; log {log}")
        soak = Soak(proc.pid, url)
        out = run(soak, seconds, args.every_s, rate, args.connections, args.seed)
        burst_failed = burst_errors(soak)
        alive = proc.poll() is None
    finally:
        stop_corral(proc)
    rows = list(csv.DictReader(io.StringIO(out)))
    requests = sum(int(r["requests"]) for r in rows)
    errors = sum(int(r["errors"]) for r in rows)
    kills = [t for t, kind, _ in soak.events if kind == "kill"]
    untied = [
        (int(r["second"]), int(r["errors"]))
        for r in rows
        if int(r["errors"]) and not any(k - 2 <= int(r["second"]) <= k + TIE_S for k in kills)
    ]
    counts = {k: sum(1 for e in soak.events if e[1] == k) for k in ("hup", "kill", "leak")}
    rate_pct = 100 * errors / max(1, requests)
    print(f"requests {requests}, errors {errors} ({rate_pct:.4f}%), untied to a SIGKILL: "
          f"{untied or 0}; leak-burst errors {burst_failed}; events {counts}; master alive "
          f"{alive}")  # fmt: skip
    for line in flat(soak.master_samples, seconds):
        print("master " + line)
    text = log.read_text(errors="replace")
    print(f"log: {text.count('reload complete')} reloads, {text.count('recycling')} memory "
          f"recycles, {text.count('OOM')} kills logged as probable OOM, "
          f"{text.count('Traceback')} tracebacks")  # fmt: skip
    ok = rate_pct < 0.01 and not untied and burst_failed == 0 and alive
    print("verdict:", "met" if ok else "NOT met")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
