"""The deployment recipes in docs/deploy.md, run as written: the systemd units under a launcher
that passes the socket and reads the notify socket as systemd does, corral as PID 1 of its own
PID namespace (a container), and every documented command line accepted by `corral serve`."""

from __future__ import annotations

import configparser
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from corral.launch import corral_serve, spawn
from corral.master import exitcodes
from harness import children_of, wait_for

pytestmark = pytest.mark.slow

DOC = Path(__file__).parents[2] / "docs" / "deploy.md"
WSGI = """
def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"deployed"]
"""


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)


def _unit(section: str) -> configparser.RawConfigParser:
    for block in _blocks("ini"):
        parser = configparser.RawConfigParser(strict=False)
        parser.optionxform = str  # type: ignore[assignment,method-assign]
        parser.read_string(block)
        if parser.has_section(section):
            return parser
    raise AssertionError(f"no unit with [{section}] in {DOC}")


def _project(tmp_path: Path) -> Path:
    pkg = tmp_path / "myproject"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "wsgi.py").write_text(textwrap.dedent(WSGI))
    return tmp_path


def _serve_args(command: list[str]) -> list[str]:
    """The arguments after `corral serve` in a documented command line."""
    assert Path(command[0]).name == "corral" and command[1] == "serve", command
    return command[2:]


def _recv_until(sock: socket.socket, want: bytes, timeout: float = 30.0) -> list[bytes]:
    got: list[bytes] = []
    deadline = time.monotonic() + timeout
    while not any(want in g for g in got):
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            got.append(sock.recv(4096))
        except TimeoutError:
            raise AssertionError(f"no {want!r} on the notify socket; got {got}") from None
    return got


def test_the_systemd_units_run_as_written(tmp_path: Path) -> None:
    sock_unit, service = _unit("Socket"), _unit("Service")
    svc = service["Service"]
    assert svc["Type"] == "notify" and svc["NotifyAccess"] == "all"
    assert svc["KillMode"] == "mixed" and "-HUP" in svc["ExecReload"]
    assert {exitcodes.WORKER_BOOT_ERROR, exitcodes.APP_LOAD_ERROR} <= {
        int(code) for code in svc["RestartPreventExitStatus"].split()
    }
    host, _, _ = sock_unit["Socket"]["ListenStream"].rpartition(":")
    listener = socket.socket()
    listener.bind((host, 0))  # the unit's address, on a free port
    listener.listen(int(sock_unit["Socket"].get("Backlog", "128")))
    port = listener.getsockname()[1]
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify"))
    watchdog_us = int(svc["WatchdogSec"]) * 1_000_000
    n = listener.fileno()
    script = (
        f'exec 3<&{n} {n}<&-; LISTEN_PID=$$ LISTEN_FDS=1 NOTIFY_SOCKET="$NOTIFY" '
        f'WATCHDOG_USEC={watchdog_us} exec "$@"'
    )
    args = _serve_args(shlex.split(svc["ExecStart"]))

    def argv(ready_fd: int) -> list[str]:
        return ["bash", "-c", script, "bash", *corral_serve(*args)(ready_fd)]

    cwd = _project(tmp_path)
    env = {"NOTIFY": str(tmp_path / "notify"), "PYTHONPATH": str(cwd)}
    launched = spawn(argv, log_path=tmp_path / "unit.log", env=env, cwd=cwd, pass_fds=(n,))
    listener.close()
    try:
        assert launched.wait_ready(60) == f"http://{host}:{port}"
        _recv_until(notify, b"READY=1")
        with socket.create_connection((host, port), timeout=10) as conn:
            conn.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            reply = b""
            while chunk := conn.recv(4096):
                reply += chunk
        assert reply.startswith(b"HTTP/1.1 200") and reply.endswith(b"deployed")
        os.kill(launched.pid, signal.SIGTERM)  # what KillMode=mixed sends first
        _recv_until(notify, b"STOPPING=1")
        assert launched.proc.wait(timeout=60) == 0
    finally:
        launched.stop()
        notify.close()


def _documented_command_lines() -> list[list[str]]:
    lines = [shlex.split(_unit("Service")["Service"]["ExecStart"])]
    for block in _blocks("dockerfile"):
        cmd = re.search(r"^CMD (\[.*\])$", block, re.M)
        assert cmd, "the Dockerfile has a CMD in exec form"
        lines.append(json.loads(cmd.group(1)))
    for block in _blocks("yaml"):
        args = re.search(r"args: (\[.*?\])", block, re.S)
        assert args, "the pod spec gives corral's args"
        lines.append(json.loads(args.group(1)))
    return lines


def test_every_documented_command_line_is_accepted(tmp_path: Path) -> None:
    cwd = _project(tmp_path)
    commands = _documented_command_lines()
    assert len(commands) >= 3
    for command in commands:
        result = subprocess.run(
            [sys.executable, "-m", "corral", "serve", *_serve_args(command), "--print-config"],
            cwd=cwd,
            env={**os.environ, "PYTHONPATH": str(cwd)},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, (command, result.stderr)


def _zombies_of(pid: int) -> list[int]:
    out = []
    for child in children_of(pid):
        try:
            with open(f"/proc/{child}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    out.append(child)
        except OSError:
            continue
    return out


ORPHANING_APP = """
import os, time
def app(environ, start_response):
    if os.fork() == 0:           # a child that leaves an orphan behind, as a daemonising
        if os.fork() == 0:       # subprocess would
            time.sleep(0.2)
        os._exit(0)
    start_response("200 OK", [("Content-Length", "2")])
    return [b"ok"]
"""


def test_as_pid_1_of_a_container_it_reaps_orphans_and_stops_on_term(tmp_path: Path) -> None:
    unshare = shutil.which("unshare")
    if unshare is None or subprocess.run([unshare, "--pid", "--fork", "true"]).returncode:
        if os.environ.get("CI"):
            raise AssertionError("unshare --pid is needed for the PID 1 test")
        pytest.skip("no PID namespaces here")
    (tmp_path / "orphaner.py").write_text(textwrap.dedent(ORPHANING_APP))

    def argv(ready_fd: int) -> list[str]:
        serve = corral_serve("orphaner:app", "-b", "127.0.0.1:0", "-w", "1")(ready_fd)
        return [unshare, "--pid", "--fork", "--mount-proc", *serve]

    env = {"PYTHONPATH": str(tmp_path)}
    launched = spawn(argv, log_path=tmp_path / "pid1.log", env=env, cwd=tmp_path)
    try:
        url = launched.wait_ready(60)
        (master,) = children_of(launched.pid)  # unshare's child is corral, PID 1 inside
        with open(f"/proc/{master}/status") as f:
            nspid = [line.split()[-1] for line in f if line.startswith("NSpid:")]
        assert nspid == ["1"]
        host, port = url.removeprefix("http://").rsplit(":", 1)
        for _ in range(5):
            with socket.create_connection((host, int(port)), timeout=10) as conn:
                conn.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                assert conn.recv(4096).startswith(b"HTTP/1.1 200")
        wait_for(lambda: not _zombies_of(master) and len(children_of(master)) <= 2, timeout=10)
        os.kill(master, signal.SIGTERM)
        assert launched.proc.wait(timeout=60) == 0
        assert "master exiting with code 0" in launched.log()
    finally:
        launched.stop()
