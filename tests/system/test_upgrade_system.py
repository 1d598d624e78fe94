"""USR2 (corral upgrades itself on the same sockets), systemd socket activation and sd_notify:
the real command, a real notify socket, real sockets passed by descriptor number."""

from __future__ import annotations

import os
import signal
import socket
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from corral.launch import Launched, corral_serve, spawn
from harness import APPS, Corral, start_corral, wait_for
from loadgen import Load

pytestmark = pytest.mark.slow

APP = """
VERSION = {version!r}
{extra}
def app(environ, start_response):
    body = VERSION.encode()
    start_response("200 OK", [("Content-Length", str(len(body)))])
    return [body]
"""


def _write_app(path: Path, version: str, extra: str = "") -> None:
    path.write_text(textwrap.dedent(APP.format(version=version, extra=extra)))


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _listening_inode(port: int) -> int:
    """The inode of the socket listening on 127.0.0.1:port, from /proc/net/tcp."""
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            local, state, inode = fields[1], fields[3], int(fields[9])
            if state == "0A" and local.endswith(f":{port:04X}"):
                return inode
    raise AssertionError(f"nothing listens on port {port}")


def _holds_socket(pid: int, inode: int) -> bool:
    fd_dir = f"/proc/{pid}/fd"
    for fd in os.listdir(fd_dir):
        try:
            if os.readlink(f"{fd_dir}/{fd}") == f"socket:[{inode}]":
                return True
        except OSError:
            continue
    return False


def _read_pid(path: Path) -> int:
    try:
        return int(path.read_text().strip() or 0)
    except (OSError, ValueError):
        return 0


@pytest.fixture
def versioned(tmp_path: Path) -> Iterator[tuple[Path, list[int]]]:
    """The app's file, and pids to TERM at the end (a new master outlives the launched one)."""
    _write_app(tmp_path / "upapp.py", "v1")
    extra: list[int] = []
    yield tmp_path / "upapp.py", extra
    for pid in extra:
        if _alive(pid):
            os.kill(pid, signal.SIGTERM)
            wait_for(lambda p=pid: not _alive(p), timeout=30)


def _start(tmp_path: Path, pidfile: Path, *more: str) -> Corral:
    args = ["upapp:app", "-b", "127.0.0.1:0", "-w", "2", "--chdir", str(tmp_path)]
    return start_corral(tmp_path, *args, "--pidfile", str(pidfile), *more)


def test_usr2_under_load_upgrades_on_the_same_socket_and_loses_nothing(
    tmp_path: Path, versioned: tuple[Path, list[int]]
) -> None:
    app_file, extra = versioned
    pidfile = tmp_path / "corral.pid"
    c = _start(tmp_path, pidfile)
    old = c.pid
    inode = _listening_inode(c.port)
    try:
        with Load(c.host, c.port, connections=4) as load:
            load.wait_requests(100)
            _write_app(app_file, "v2")
            c.signal(signal.SIGUSR2)
            assert c.wait(timeout=60) == 0  # the new master, once ready, stopped the old one
            new = _read_pid(pidfile)
            extra.append(new)
            wait_for(lambda: load.last_body == b"v2", timeout=30)
            load.wait_requests(100)
            stats = load.stop()
    finally:
        log = c.log()
    assert stats.failures == [], log
    assert new not in (0, old) and _alive(new)
    assert not _alive(old)
    assert _listening_inode(c.port) == inode
    assert _holds_socket(new, inode)
    assert "upgrade: new master pid" in log and "stopping the old master" in log
    assert not (tmp_path / "corral.pid.oldbin").exists()
    assert c.get()[1] == b"v2"


def test_failed_upgrade_keeps_the_old_master_serving(
    tmp_path: Path, versioned: tuple[Path, list[int]]
) -> None:
    app_file, _ = versioned
    pidfile = tmp_path / "corral.pid"
    c = _start(tmp_path, pidfile)
    try:
        with Load(c.host, c.port, connections=2) as load:
            load.wait_requests(50)
            _write_app(app_file, "v2", extra="raise RuntimeError('bad release')")
            c.signal(signal.SIGUSR2)
            c.wait_log("upgrade failed")
            load.wait_requests(50)
            stats = load.stop()
        assert stats.failures == []
        assert set(stats.bodies) == {b"v1"}
        assert _read_pid(pidfile) == c.pid  # renamed back from .oldbin
        assert not (tmp_path / "corral.pid.oldbin").exists()
        assert "bad release" in c.log()
    finally:
        c.stop()


def test_manual_handoff_leaves_both_masters_serving_until_told(
    tmp_path: Path, versioned: tuple[Path, list[int]]
) -> None:
    _, extra = versioned
    pidfile = tmp_path / "corral.pid"
    c = _start(tmp_path, pidfile, "--no-reexec-stop-old")
    try:
        c.signal(signal.SIGUSR2)
        wait_for(lambda: (tmp_path / "corral.pid.oldbin").exists() and _read_pid(pidfile) > 0)
        wait_for(lambda: _read_pid(pidfile) != c.pid)
        new = _read_pid(pidfile)
        extra.append(new)
        c.wait_log("upgrade: new master pid")
        assert c.proc.poll() is None  # gunicorn's choreography: the old one waits for TERM
        c.signal(signal.SIGTERM)
        assert c.wait(timeout=60) == 0
        assert _alive(new) and c.get()[0] == 200
        assert _read_pid(pidfile) == new  # the old master did not remove the new one's pidfile
    finally:
        c.stop()


def _activated(
    tmp_path: Path, sock: socket.socket, notify: str, *args: str, env: dict[str, str] | None = None
) -> Launched:
    """Start corral as systemd would: the socket as fd 3, LISTEN_PID set to corral's own pid
    (``exec`` keeps the shell's pid), NOTIFY_SOCKET pointing at the test's socket."""
    n = sock.fileno()
    script = f'exec 3<&{n} {n}<&-; LISTEN_PID=$$ LISTEN_FDS=1 NOTIFY_SOCKET={notify} exec "$@"'

    def argv(ready_fd: int) -> list[str]:
        return ["bash", "-c", script, "bash", *corral_serve(*args)(ready_fd)]

    full = {"PYTHONPATH": str(APPS), **(env or {})}
    return spawn(argv, log_path=tmp_path / "activated.log", env=full, cwd=tmp_path, pass_fds=(n,))


def _datagrams(sock: socket.socket, until: bytes, timeout: float = 30.0) -> list[bytes]:
    got: list[bytes] = []
    deadline = time.monotonic() + timeout
    while not any(until in g for g in got):
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            got.append(sock.recv(4096))
        except TimeoutError:
            raise AssertionError(f"no {until!r} from corral; got {got}") from None
    return got


def test_socket_activation_and_sd_notify(tmp_path: Path) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    port = listener.getsockname()[1]
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify"))
    env = {"WATCHDOG_USEC": "1000000"}
    launched = _activated(
        tmp_path, listener, str(tmp_path / "notify"), "sysapps:hello", "-w", "1", env=env
    )
    listener.close()  # only corral holds it now
    try:
        url = launched.wait_ready(30)
        assert url == f"http://127.0.0.1:{port}"  # --bind's default was not bound
        messages = _datagrams(notify, b"READY=1")
        assert any(b"STATUS=serving 1 workers" in m for m in messages)
        _datagrams(notify, b"WATCHDOG=1", timeout=5)
        conn = socket.create_connection(("127.0.0.1", port), timeout=10)
        conn.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert conn.recv(4096).startswith(b"HTTP/1.1 200")
        conn.close()
        os.kill(launched.pid, signal.SIGHUP)
        reload = _datagrams(notify, b"RELOADING=1")
        assert any(b"MONOTONIC_USEC=" in m for m in reload)
        _datagrams(notify, b"READY=1")
        os.kill(launched.pid, signal.SIGTERM)
        _datagrams(notify, b"STOPPING=1")
        assert launched.proc.wait(timeout=30) == 0
    finally:
        launched.stop()
        notify.close()


def test_fd_bind_takes_a_passed_socket_by_number(tmp_path: Path) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    port = listener.getsockname()[1]
    launched = _activated(
        tmp_path, listener, "", "sysapps:hello", "-w", "1", "-b", "fd://3", "-b", "127.0.0.1:0"
    )
    listener.close()
    try:
        assert launched.wait_ready(30) == f"http://127.0.0.1:{port}"
        assert len(launched.urls) == 2 and launched.urls[1] != launched.urls[0]
    finally:
        launched.stop()
