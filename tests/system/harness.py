"""System-test harness: the real ``corral`` command, started, awaited and stopped by
``corral.launch`` (its own session, readiness on a ``--ready-fd`` pipe, hard deadlines,
teardown TERM -> wait -> KILL the group); /proc helpers to find its workers."""

from __future__ import annotations

import http.client
import os
import subprocess
import time
from pathlib import Path

from corral.launch import Launched, LaunchError, corral_serve, spawn

APPS = Path(__file__).parent / "apps"


class Corral:
    """A ``corral serve`` started by corral.launch, with the assertions a test wants."""

    def __init__(self, launched: Launched) -> None:
        self.launched = launched
        self.proc: subprocess.Popen[bytes] = launched.proc
        self.log_path = launched.log_path or Path("/nonexistent")
        self.url = ""
        self.host = ""
        self.port = 0

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait_ready(self, timeout: float = 30.0) -> str:
        try:
            self.url = self.launched.wait_ready(timeout)
        except LaunchError as exc:
            raise AssertionError(f"corral not ready ({exc}):\n{self.log()}") from None
        hostport = self.url.removeprefix("http://")
        self.host, _, port = hostport.rpartition(":")
        self.port = int(port)
        return self.url

    def log(self) -> str:
        return self.launched.log()

    def signal(self, sig: int) -> None:
        os.kill(self.proc.pid, sig)

    def wait(self, timeout: float) -> int:
        return self.proc.wait(timeout=timeout)

    def get(self, path: str = "/", timeout: float = 10.0) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        try:
            conn.request("GET", path)
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()

    def wait_log(self, text: str, timeout: float = 20.0) -> str:
        """Wait (polling the log file, bounded) until ``text`` appears in corral's log."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            log = self.log()
            if text in log:
                return log
            time.sleep(0.05)
        raise AssertionError(f"{text!r} not in log after {timeout}s:\n{self.log()}")

    def stop(self) -> None:
        """TERM the master (it stops its own family), wait, KILL the group (corral.launch)."""
        self.launched.stop()


def start_corral(
    tmp_path: Path,
    *args: str,
    env: dict[str, str] | None = None,
    ready: bool = True,
    timeout: float = 30.0,
) -> Corral:
    log_path = tmp_path / f"corral-{time.monotonic_ns()}.log"
    full_env = {"PYTHONPATH": str(APPS), "PYTHONDONTWRITEBYTECODE": "1", **(env or {})}
    corral = Corral(spawn(corral_serve(*args), log_path=log_path, env=full_env, cwd=tmp_path))
    if ready:
        try:
            corral.wait_ready(timeout)
        except BaseException:
            corral.stop()
            raise
    return corral


def children_of(pid: int) -> list[int]:
    """Direct children, from /proc (the master adopts its workers)."""
    out: list[int] = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(entry))
    return out


def cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def worker_pids(master_pid: int) -> list[int]:
    return sorted(p for p in children_of(master_pid) if "corral worker" in cmdline(p))


def wait_for(predicate: object, timeout: float = 20.0, interval: float = 0.05) -> None:
    """Poll a condition with a deadline (a bounded wait on an observable state, not a sleep)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(interval)
    raise AssertionError(f"condition not met in {timeout}s")
