"""The master under test, and /proc: started here through corral.launch (its own session,
``--ready-fd``, TERM -> wait -> KILL of its group) or attached to by pid; its workers found as
the master's children whose title says ``corral worker``; the connections a worker holds
counted from /proc/PID/net/tcp (the kill bound); /stats read as a dict.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from corral.chaos.spec import (
    BOOT_TIMEOUT_S,
    HTTP_TIMEOUT_S,
    POLL_S,
    STOP_GRACE_S,
    WORKER_TAG,
    ChaosError,
)
from corral.launch import Launched, LaunchError, start

# ----------------------------------------------------------------------- /proc (parsing pure)


def established_inodes(proc_net_tcp: str, port: int) -> set[int]:
    """Socket inodes of ESTABLISHED (state 01) entries whose local port is ``port``."""
    out: set[int] = set()
    for line in proc_net_tcp.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 10 or fields[3] != "01":
            continue
        local_port = int(fields[1].rpartition(":")[2], 16)
        if local_port == port:
            out.add(int(fields[9]))
    return out


def socket_inodes(pid: int) -> set[int]:
    """Inodes of the sockets ``pid`` holds open (empty when /proc/PID/fd is unreadable)."""
    out: set[int] = set()
    try:
        names = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return out
    for name in names:
        with contextlib.suppress(OSError):
            link = os.readlink(f"/proc/{pid}/fd/{name}")
            if link.startswith("socket:["):
                out.add(int(link[8:-1]))
    return out


def established_connections(pid: int, port: int) -> int | None:
    """How many client connections on ``port`` the worker ``pid`` holds right now."""
    try:
        text = "".join(Path(f"/proc/{pid}/net/{n}").read_text() for n in ("tcp", "tcp6"))
    except OSError:
        return None
    held = socket_inodes(pid)
    return len(held & established_inodes(text, port)) if held else None


def _parent_and_cmdline(pid: int) -> tuple[int, str]:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return -1, ""
    return int(stat.rsplit(")", 1)[1].split()[1]), cmd.replace(b"\0", b" ").decode(errors="replace")


def worker_pids(master: int) -> list[int]:
    """The master's direct children that are workers (not its zygote), from /proc."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            ppid, cmd = _parent_and_cmdline(int(entry))
            if ppid == master and WORKER_TAG in cmd:
                out.append(int(entry))
    return sorted(out)


def is_worker_of(pid: int, master: int) -> bool:
    ppid, cmd = _parent_and_cmdline(pid)
    return ppid == master and WORKER_TAG in cmd


def wait_until(predicate: Callable[[], bool], deadline: float) -> bool:
    """Poll ``predicate`` until it holds or ``deadline`` (monotonic) passes."""
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(POLL_S)


# ---------------------------------------------------------------------------- the target


@dataclass
class Target:
    """The master under test: its pid, the URL to load, its stats address, and (when chaos
    started it) the launched process to stop again."""

    pid: int
    url: str
    stats_addr: str | None
    workers: int = 0
    launched: Launched | None = None

    @property
    def port(self) -> int:
        return urlsplit(self.url).port or 80

    def worker_pids(self) -> list[int]:
        return worker_pids(self.pid)

    def alive(self) -> bool:
        if self.launched is not None:
            return self.launched.proc.poll() is None
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def signal(self, sig: int) -> None:
        try:
            os.kill(self.pid, sig)
        except ProcessLookupError:
            raise ChaosError(f"the master (pid {self.pid}) is gone") from None

    def stats(self) -> dict[str, Any] | None:
        """/stats as a dict, or None when there is no stats server or it did not answer."""
        return None if self.stats_addr is None else read_stats(self.stats_addr, HTTP_TIMEOUT_S)

    def log_tail(self, lines: int = 20) -> str:
        return "" if self.launched is None else self.launched.log_tail(lines)


def serve_command(opts: argparse.Namespace, ready_fd: int, bloat: bool) -> list[str]:
    """``corral serve`` as chaos starts it: port 0, stats on, short timeout; user args last."""
    cmd = [sys.executable, "-m", "corral", "serve"]
    cmd += [opts.app] if opts.app else []
    cmd += ["-b", "127.0.0.1:0", "-w", str(opts.workers), "--stats", "127.0.0.1:0"]
    cmd += ["--ready-fd", str(ready_fd), "--timeout-s", f"{opts.worker_timeout_s:g}"]
    if bloat:
        cmd += ["--max-worker-memory-mib", f"{opts.bloat_limit_mib:g}"]
        cmd += ["--min-worker-lifetime-s", "1", "--memory-sample-s", "0.5"]
    return cmd + list(opts.serve_arg)


def start_server(build: Callable[[int], list[str]], log_path: Path) -> Target:
    """Start ``build(ready_fd)`` with corral.launch (own session, ready pipe, bounded wait),
    then read the stats address from the master's ready log line."""
    try:
        launched = start(build, log_path=log_path, timeout_s=BOOT_TIMEOUT_S)
    except LaunchError as exc:
        raise ChaosError(f"corral serve did not become ready: {exc}") from None
    target = Target(launched.pid, launched.url + "/", None, launched=launched)
    target.stats_addr = _stats_from_log(log_path, time.monotonic() + 5.0)
    return target


_STATS_LOG = re.compile(r"stats on http://(\S+?)\)")


def _stats_from_log(log_path: Path, deadline: float) -> str | None:
    """The stats address from the master's ready log line. It is logged before the ready fd
    is written, so the first read finds it; the bounded retry only covers a slow filesystem."""
    while True:
        match = _STATS_LOG.search(log_path.read_text(errors="replace"))
        if match is not None:
            return match.group(1)
        if time.monotonic() >= deadline:
            return None
        time.sleep(POLL_S)


def stop_server(target: Target) -> int | None:
    """TERM the master, wait, then KILL its whole session (corral.launch); its exit status.
    An attached target is not ours to stop: None."""
    if target.launched is None:
        return None
    return target.launched.stop(STOP_GRACE_S)


def attach(pid: int, url: str, stats_addr: str | None) -> Target:
    """A running master: it must exist and have workers."""
    target = Target(pid, url if url.endswith("/") else url + "/", stats_addr)
    if not target.alive():
        raise ChaosError(f"no process {pid}")
    target.workers = len(target.worker_pids())
    if target.workers == 0:
        raise ChaosError(f"process {pid} has no '{WORKER_TAG}' children: is it a corral master?")
    return target


def settled_stats(target: Target, timeout_s: float = 1.0) -> dict[str, Any] | None:
    """/stats once its request total holds still across two reads 20 ms apart (the load has
    stopped; workers publish what they counted within ~5 ms), or the last read at the deadline."""
    deadline = time.monotonic() + timeout_s
    doc = target.stats()
    while doc is not None and time.monotonic() < deadline:
        time.sleep(0.02)
        again = target.stats()
        if again is None or again["totals"]["requests"] == doc["totals"]["requests"]:
            return again or doc
        doc = again
    return doc


def read_stats(addr: str, timeout_s: float) -> dict[str, Any] | None:
    """GET /stats of the stats server at ``HOST:PORT``; None when it does not answer 200 JSON."""
    host, _, port = addr.rpartition(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout_s)
    try:
        conn.request("GET", "/stats")
        resp = conn.getresponse()
        body = resp.read()
        return json.loads(body) if resp.status == 200 else None  # type: ignore[no-any-return]
    except (OSError, ValueError, http.client.HTTPException):
        return None
    finally:
        conn.close()
