"""ASGI side by side: corral next to uvicorn, granian, hypercorn and gunicorn's uvicorn worker.

Theory of operation. The machinery is ``benchmarks/hello.py``'s: each server is started fresh in
its own session on a free 127.0.0.1 port, polled until it answers 200, warmed, measured, and
stopped TERM -> wait -> KILL; rounds rotate the order of the servers and the report gives the
median of the rounds and ratios within the same round. CPU is every process of the server's
session (``/proc/*/stat``), so "requests per server CPU-second" does not depend on what else
the machine ran. Four measurements:

* ``hello``: a raw ASGI JSON hello (``asgi_apps:hello``), keep-alive, ``wrk -t1 -c16``.
* ``pydantic``: FastAPI ``POST /items`` validating a JSON body with pydantic (wrk with a Lua
  body).
* ``ws``: WebSocket echo, 16 connections each sending ``--ws-messages`` 64-byte messages one at
  a time from one asyncio client (``websockets``); messages per second and per server CPU-second.
* ``memory``: FastAPI with a preloaded ``--ballast-mb`` heap on 2 workers, private memory (USS,
  from ``/proc/PID/smaps_rollup``) and shared memory per worker after ``--memory-requests``
  requests through wrk.

Usage::

    /tmp/asgibench/bin/python benchmarks/asgi.py [--workers 1,2] [--duration 5] [--rounds 3]
        [--servers corral,uvicorn,...] [--only hello,pydantic,ws,memory] [--json OUT]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from statistics import median
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from hello import (  # benchmarks/ is not a package
    APPS,
    BIN,
    CONNECTIONS,
    WARMUP_S,
    Launch,
    free_port,
    rotated,
    run_wrk,
    running,
    session_cpu_s,
    session_pids,
    wrk_argv,
)

Builder = Callable[[str, int, int], Launch]


def corral(app: str, port: int, workers: int) -> Launch:
    argv = [str(BIN / "corral"), "serve", app, "-b", f"127.0.0.1:{port}", "-w", str(workers)]
    return Launch([*argv, "--chdir", str(APPS), "--log-level", "warning"])


def uvicorn(app: str, port: int, workers: int) -> Launch:
    """uvicorn as its docs deploy it: httptools + uvloop, ``--workers``."""
    argv = [str(BIN / "uvicorn"), app, "--host", "127.0.0.1", "--port", str(port)]
    argv += ["--workers", str(workers), "--loop", "uvloop", "--http", "httptools"]
    return Launch([*argv, "--no-access-log", "--log-level", "warning"])


def granian(app: str, port: int, workers: int) -> Launch:
    argv = [str(BIN / "granian"), "--interface", "asgi", "--workers", str(workers)]
    argv += ["--host", "127.0.0.1", "--port", str(port), "--no-access-log"]
    return Launch([*argv, "--log-level", "warning", "--working-dir", str(APPS), app])


def hypercorn(app: str, port: int, workers: int) -> Launch:
    argv = [str(BIN / "hypercorn"), "-b", f"127.0.0.1:{port}", "-w", str(workers)]
    return Launch([*argv, "-k", "uvloop", "--log-level", "warning", app])


def gunicorn_uvicorn(app: str, port: int, workers: int) -> Launch:
    argv = [str(BIN / "gunicorn"), "-k", "uvicorn_worker.UvicornWorker", "-w", str(workers)]
    return Launch([*argv, "-b", f"127.0.0.1:{port}", "--log-level", "warning", app])


SERVERS: dict[str, Builder] = {
    "corral": corral,
    "uvicorn": uvicorn,
    "granian": granian,
    "hypercorn": hypercorn,
    "gunicorn-uvicorn": gunicorn_uvicorn,
}
POST_LUA = """wrk.method = "POST"
wrk.body = '{"name": "pen", "price": 1.5, "quantity": 3, "tags": ["a", "b"]}'
wrk.headers["Content-Type"] = "application/json"
"""

# ---------------------------------------------------------------------------------------------
# Measurements; each returns a flat dict of figures


def _wrk(
    name: str, app: str, workers: int, duration: float, log: Path, path: str, lua: Path | None
) -> dict[str, float]:
    port = free_port()
    extra = ["-s", str(lua)] if lua else []
    with running(SERVERS[name](app, port, workers), port, log) as proc:
        run_wrk([*wrk_argv(port, WARMUP_S, 1, CONNECTIONS, path), *extra], 30)
        before = session_cpu_s(proc.pid)
        result, text = run_wrk([*wrk_argv(port, duration, 1, CONNECTIONS, path), *extra], 60)
        cpu = session_cpu_s(proc.pid) - before
    with log.open("a") as out:
        out.write(f"--- {name} {app} {path} w={workers}\n{text}\n")
    errors = sum(result.errors.values()) + result.non_2xx
    return {
        "rps": result.rps,
        "p99_ms": result.p99_ms,
        "per_cpu_s": result.requests / cpu if cpu > 0 else float("nan"),
        "errors": errors,
    }


async def _ws_clients(port: int, connections: int, messages: int) -> float:
    import websockets

    payload = os.urandom(64)

    async def one() -> None:
        async with websockets.connect(f"ws://127.0.0.1:{port}/ws", compression=None) as ws:
            for _ in range(messages):
                await ws.send(payload)
                await ws.recv()

    start = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(connections)))
    return time.perf_counter() - start


def ws_echo(name: str, workers: int, messages: int, log: Path) -> dict[str, float]:
    port = free_port()
    with running(SERVERS[name]("asgi_apps:app", port, workers), port, log) as proc:
        asyncio.run(_ws_clients(port, 4, 50))  # warm-up
        before = session_cpu_s(proc.pid)
        took = asyncio.run(_ws_clients(port, CONNECTIONS, messages))
        cpu = session_cpu_s(proc.pid) - before
    total = CONNECTIONS * messages
    return {"msgs_per_s": total / took, "per_cpu_s": total / cpu if cpu > 0 else float("nan")}


def _smaps(pid: int) -> dict[str, int]:
    out: dict[str, int] = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            parts = line.split()
            if len(parts) == 3 and parts[2] == "kB":
                out[parts[0].rstrip(":")] = int(parts[1]) * 1024
    return out



def _workers(name: str, sid: int, workers: int) -> list[int]:
    """The worker processes: corral's by title; for the others the ``workers`` largest
    processes of the session other than its leader (the master)."""
    pids = [p for p in session_pids(sid) if p != sid]
    if name == "corral":
        titled = []
        for p in pids:
            try:
                if Path(f"/proc/{p}/cmdline").read_bytes().startswith(b"corral worker"):
                    titled.append(p)
            except OSError:
                pass
        return titled
    return sorted(pids, key=lambda p: _smaps(p).get("Rss", 0), reverse=True)[:workers]


def memory(name: str, ballast_mb: int, requests: int, log: Path) -> dict[str, float]:
    port = free_port()
    launch = SERVERS[name]("asgi_apps:app", port, 2)
    launch = Launch(launch.argv, {**launch.env, "BALLAST_MB": str(ballast_mb)}, launch.cwd)
    with running(launch, port, log) as proc:
        done = 0
        while done < requests:  # wrk has no request count: short runs until enough were sent
            result, _ = run_wrk(wrk_argv(port, 2, 1, CONNECTIONS, "/"), 60)
            done += result.requests
            if result.requests == 0:
                raise RuntimeError(f"{name}: no requests answered")
        figures = [_smaps(p) for p in _workers(name, proc.pid, 2)]
    mib = 1024 * 1024
    private = [(f.get("Private_Clean", 0) + f.get("Private_Dirty", 0)) / mib for f in figures]
    shared = [(f.get("Shared_Clean", 0) + f.get("Shared_Dirty", 0)) / mib for f in figures]
    rss = [f.get("Rss", 0) / mib for f in figures]
    return {
        "private_mib": sum(private) / len(private),
        "shared_mib": sum(shared) / len(shared),
        "shared_pct": 100 * sum(shared) / sum(rss) if sum(rss) else float("nan"),
        "requests": done,
    }


# ---------------------------------------------------------------------------------------------
# Rounds and the report


def run(args: argparse.Namespace) -> dict[str, Any]:
    log = Path(args.log)
    lua = Path(args.log).with_suffix(".lua")
    lua.write_text(POST_LUA)
    servers = args.servers.split(",")
    only = set(args.only.split(","))
    results: dict[str, Any] = {"servers": servers, "rounds": args.rounds, "cells": []}
    workers = [int(w) for w in args.workers.split(",")]
    plan: list[tuple[str, int]] = []
    plan += [("hello", w) for w in workers if "hello" in only]
    plan += [("pydantic", w) for w in workers if "pydantic" in only]
    plan += [("ws", 1)] if "ws" in only else []
    for what, w in plan:
        for r in range(args.rounds):
            for name in rotated(servers, r):
                if what == "hello":
                    fig = _wrk(name, "asgi_apps:hello", w, args.duration, log, "/", None)
                elif what == "pydantic":
                    fig = _wrk(name, "asgi_apps:app", w, args.duration, log, "/items", lua)
                else:
                    fig = ws_echo(name, w, args.ws_messages, log)
                cell = {"what": what, "workers": w, "round": r, "server": name, **fig}
                results["cells"].append(cell)
                print(f"{what} w={w} round {r + 1}: {name:17s} {fig}", flush=True)
    if "memory" in only:
        for name in servers:
            fig = memory(name, args.ballast_mb, args.memory_requests, log)
            cell = {"what": "memory", "workers": 2, "round": 0, "server": name, **fig}
            results["cells"].append(cell)
            print(f"memory: {name:17s} {fig}", flush=True)
    return results


def _ratio(cells: Sequence[dict[str, Any]], name: str, ref: str, key: str) -> float:
    """Median over rounds of name's figure over ref's in the same round."""
    by_round: dict[int, dict[str, float]] = {}
    for c in cells:
        by_round.setdefault(c["round"], {})[c["server"]] = c[key]
    ratios = [v[name] / v[ref] for v in by_round.values() if name in v and v.get(ref)]
    return median(ratios) if ratios else float("nan")


def markdown(results: dict[str, Any]) -> str:
    cells = results["cells"]
    out = []
    for what, key, unit in (
        ("hello", "rps", "req/s"),
        ("pydantic", "rps", "req/s"),
        ("ws", "msgs_per_s", "msg/s"),
    ):
        for w in sorted({c["workers"] for c in cells if c["what"] == what}):
            group = [c for c in cells if c["what"] == what and c["workers"] == w]
            if not group:
                continue
            out.append(f"\n**{what}, {w} worker(s)**\n")
            out.append(
                f"| server | {unit} (median) | vs uvicorn | per server CPU-s | vs uvicorn "
                "| vs granian |"
            )
            out.append("|---|---:|---:|---:|---:|---:|")
            for name in results["servers"]:
                mine = [c for c in group if c["server"] == name]
                if not mine:
                    continue
                out.append(
                    f"| {name} | {median(c[key] for c in mine):,.0f} "
                    f"| {_ratio(group, name, 'uvicorn', key):.2f}x "
                    f"| {median(c['per_cpu_s'] for c in mine):,.0f} "
                    f"| {_ratio(group, name, 'uvicorn', 'per_cpu_s'):.2f}x "
                    f"| {_ratio(group, name, 'granian', 'per_cpu_s'):.2f}x |"
                )
    mem = [c for c in cells if c["what"] == "memory"]
    if mem:
        ref = next((c for c in mem if c["server"] == "uvicorn"), None)
        out.append("\n**memory: FastAPI with a preloaded heap, 2 workers**\n")
        out.append(
            "| server | private MiB / worker | vs uvicorn | shared MiB / worker | shared % "
            "| requests |"
        )
        out.append("|---|---:|---:|---:|---:|---:|")
        for c in mem:
            vs = c["private_mib"] / ref["private_mib"] if ref else float("nan")
            out.append(
                f"| {c['server']} | {c['private_mib']:.1f} | {vs:.2f}x | {c['shared_mib']:.1f} "
                f"| {c['shared_pct']:.1f}% | {c['requests']:,} |"
            )
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--servers", default=",".join(SERVERS))
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", default="hello,pydantic,ws,memory")
    parser.add_argument("--ws-messages", type=int, default=500)
    parser.add_argument("--ballast-mb", type=int, default=150)
    parser.add_argument("--memory-requests", type=int, default=20_000)
    parser.add_argument("--log", default="/tmp/corral-asgi-bench.log")
    parser.add_argument("--json", default="")
    args = parser.parse_args(argv)
    results = run(args)
    text = markdown(results)
    print(text)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
