"""System-test harness: the real ``corral`` command in its own session, readiness signalled on a
pipe (``--ready-fd``), hard deadlines everywhere, teardown TERM -> wait -> KILL the group."""

from __future__ import annotations

import contextlib
import http.client
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

APPS = Path(__file__).parent / "apps"


class Corral:
    def __init__(self, proc: subprocess.Popen[bytes], ready_r: int, log_path: Path) -> None:
        self.proc = proc
        self.ready_r = ready_r
        self.log_path = log_path
        self.url = ""
        self.host = ""
        self.port = 0

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait_ready(self, timeout: float = 30.0) -> str:
        deadline = time.monotonic() + timeout
        buf = b""
        while b"\n" not in buf:
            left = deadline - time.monotonic()
            if left <= 0 or self.proc.poll() is not None:
                raise AssertionError(f"corral not ready (rc={self.proc.poll()}):\n{self.log()}")
            r, _, _ = select.select([self.ready_r], [], [], min(left, 0.5))
            if r:
                chunk = os.read(self.ready_r, 1024)
                if not chunk:
                    continue
                buf += chunk
        line = buf.decode().split("\n")[0]
        assert line.startswith("ready "), line
        self.url = line.split()[1]
        hostport = self.url.removeprefix("http://")
        self.host, _, port = hostport.rpartition(":")
        self.port = int(port)
        return self.url

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

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
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGTERM)  # the master stops its own family
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                pass
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)
        os.close(self.ready_r)


def start_corral(
    tmp_path: Path,
    *args: str,
    env: dict[str, str] | None = None,
    ready: bool = True,
    timeout: float = 30.0,
) -> Corral:
    ready_r, ready_w = os.pipe()
    log_path = tmp_path / f"corral-{time.monotonic_ns()}.log"
    cmd = [sys.executable, "-m", "corral", "serve", "--ready-fd", str(ready_w), *args]
    full_env = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "PYTHONPATH": str(APPS),
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    full_env.update(env or {})
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            cmd,
            stdout=log,
            stderr=subprocess.STDOUT,
            pass_fds=(ready_w,),
            start_new_session=True,
            env=full_env,
            cwd=tmp_path,
        )
    os.close(ready_w)
    corral = Corral(proc, ready_r, log_path)
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
