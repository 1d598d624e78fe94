"""Opening listeners: one-line errors naming the address with a hint, and a live unix socket
never taken over (issue 12 point 5). Real sockets, real `corral serve` processes."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from corral.master.listeners import BindError, bind, parse_address


def _serve(*args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "corral", "serve", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd="/")


def test_a_port_in_use_names_the_address_and_how_to_find_its_owner() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = _serve("-b", f"127.0.0.1:{port}")
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        f"corral: error: cannot start: 127.0.0.1:{port} is already in use: another server "
        f"listens there (ss -ltnp 'sport = :{port}' names it); stop it or bind another port"
    ]


def test_a_live_unix_socket_is_refused_and_a_stale_one_reused(tmp_path: Path) -> None:
    path = str(tmp_path / "app.sock")
    live = socket.socket(socket.AF_UNIX)
    live.bind(path)
    live.listen()
    try:
        with pytest.raises(
            BindError, match=re.escape(f"unix:{path} is in use by a running server")
        ):
            bind(parse_address(f"unix:{path}"), 16)
        assert os.path.exists(path)  # not unlinked from under its owner
    finally:
        live.close()  # the file stays: a stale socket nobody listens on
    sock = bind(parse_address(f"unix:{path}"), 16)
    sock.close()


def test_other_bind_failures_are_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "app.sock"
    with pytest.raises(BindError, match=re.escape(f"the directory {missing.parent} does not")):
        bind(parse_address(f"unix:{missing}"), 16)
    with pytest.raises(BindError, match=r"192\.0\.2\.1 is not an address of this machine"):
        bind(parse_address("192.0.2.1:8000"), 16)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to drop to another user")
def test_a_low_port_without_privilege_says_what_is_needed() -> None:
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # a child that gave up root: the bind is refused as for any user
        os.close(r)
        message = "bound"
        try:
            os.setgid(65534)
            os.setuid(65534)
            bind(parse_address("127.0.0.1:81"), 16).close()
        except BindError as exc:
            message = str(exc)
        os.write(w, message.encode())
        os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        said = f.read().decode()
    os.waitpid(pid, 0)
    assert said == (
        "127.0.0.1:81: ports below 1024 need root or CAP_NET_BIND_SERVICE (or bind a higher "
        "port behind a proxy, or use systemd socket activation)"
    )
