"""corral.launch with real child processes: the ready line, death before ready (woken at once,
not at the deadline), a deadline that passes, and teardown of a group that ignores TERM."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import pytest

from corral.launch import LaunchError, spawn, start

pytestmark = pytest.mark.timeout(60)


def child(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_ready_line_gives_the_urls(tmp_path: Path) -> None:
    code = (
        "import os,sys,time;"
        "os.write(int(sys.argv[1]), b'ready http://127.0.0.1:1 unix:/x\\n'); time.sleep(60)"
    )
    launched = start(lambda fd: [*child(code), str(fd)], log_path=tmp_path / "log")
    try:
        assert launched.url == "http://127.0.0.1:1"
        assert launched.urls == ["http://127.0.0.1:1", "unix:/x"]
    finally:
        assert launched.stop(grace_s=5.0) == -signal.SIGTERM


def test_death_before_ready_is_reported_at_once_with_the_log(tmp_path: Path) -> None:
    code = "import sys; print('no db'); sys.exit(3)"
    began = time.monotonic()
    with pytest.raises(LaunchError) as info:
        start(lambda fd: child(code), log_path=tmp_path / "log", timeout_s=30.0)
    assert time.monotonic() - began < 10.0  # woken by the exit, not by the 30 s deadline
    assert "status 3" in str(info.value) and "no db" in str(info.value)


def test_a_server_that_never_gets_ready_times_out(tmp_path: Path) -> None:
    launched = spawn(lambda fd: child("import time; time.sleep(60)"), log_path=tmp_path / "log")
    try:
        with pytest.raises(LaunchError, match="deadline"):
            launched.wait_ready(timeout_s=0.5)
    finally:
        launched.stop(grace_s=5.0)


def test_unexpected_ready_line_is_an_error(tmp_path: Path) -> None:
    code = "import os,sys,time; os.write(int(sys.argv[1]), b'hello\\n'); time.sleep(60)"
    with pytest.raises(LaunchError, match="unexpected ready line"):
        start(lambda fd: [*child(code), str(fd)], log_path=tmp_path / "log")


def test_stop_kills_a_group_that_ignores_term(tmp_path: Path) -> None:
    """The leader ignores TERM and has a child of its own: after the grace, KILL takes both."""
    code = (
        "import os,signal,sys,time; signal.signal(signal.SIGTERM, signal.SIG_IGN);"
        "pid = os.fork()\n"
        "if pid == 0: time.sleep(60); os._exit(0)\n"
        "os.write(int(sys.argv[1]), f'ready http://x/ {pid}\\n'.encode()); time.sleep(60)"
    )
    launched = start(lambda fd: [*child(code), str(fd)], log_path=tmp_path / "log")
    grandchild = int(launched.urls[1])
    assert alive(grandchild)
    began = time.monotonic()
    assert launched.stop(grace_s=0.5) == -signal.SIGKILL
    assert time.monotonic() - began < 10.0
    deadline = time.monotonic() + 10.0
    while alive(grandchild) and time.monotonic() < deadline:
        time.sleep(0.05)  # reaped by init once killed: bounded wait on an observable state
    assert not alive(grandchild)
    assert launched.stop() == -signal.SIGKILL  # idempotent
