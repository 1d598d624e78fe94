"""sd_notify and socket activation, against real sockets (a datagram socket plays the manager)."""

from __future__ import annotations

import os
import socket
import tempfile
from collections.abc import Iterator

import pytest

from corral.master import reexec, systemd


@pytest.fixture
def manager() -> Iterator[tuple[socket.socket, str]]:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "notify")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(path)
        sock.settimeout(5)
        try:
            yield sock, path
        finally:
            sock.close()


def test_passed_sockets_are_only_for_the_named_pid() -> None:
    env = {"LISTEN_PID": "42", "LISTEN_FDS": "2"}
    assert systemd.passed_sockets(env, 42).fds == (3, 4)
    assert systemd.passed_sockets(env, 43).fds == ()
    assert systemd.passed_sockets({"LISTEN_PID": "x", "LISTEN_FDS": "2"}, 42).fds == ()
    assert systemd.passed_sockets({"LISTEN_PID": "42", "LISTEN_FDS": "0"}, 42).fds == ()


def test_names_must_match_the_count_or_are_dropped() -> None:
    env = {"LISTEN_PID": "7", "LISTEN_FDS": "2", "LISTEN_FDNAMES": "web"}
    passed = systemd.passed_sockets(env, 7)
    assert passed.fds == (3, 4) and passed.names == () and not passed.from_reexec


def test_reexec_names_round_trip_bind_texts() -> None:
    binds = ["127.0.0.1:0", "unix:/run/a b:c.sock", "[::1]:8000"]
    env = reexec.new_master_environ({"LISTEN_FDS": "9", "PATH": "/bin"}, binds, 99, 12)
    passed = systemd.passed_sockets(env, 99)
    assert passed.from_reexec
    assert passed.bind_texts() == tuple(binds)
    assert env["PATH"] == "/bin" and reexec.upgrading_from(env, 12) == 12
    assert reexec.upgrading_from(env, 13) == 0  # the old master is gone: no handoff to make


def test_systemd_names_are_not_mistaken_for_a_reexec() -> None:
    env = {"LISTEN_PID": "5", "LISTEN_FDS": "1", "LISTEN_FDNAMES": "corral-http"}
    assert not systemd.passed_sockets(env, 5).from_reexec


def test_forget_passed_sockets_unsets_the_protocol() -> None:
    env = {"LISTEN_PID": "1", "LISTEN_FDS": "1", "LISTEN_FDNAMES": "x", "HOME": "/"}
    systemd.forget_passed_sockets(env)
    assert env == {"HOME": "/"}


def test_watchdog_interval_is_half_the_timeout_and_for_us_only() -> None:
    assert systemd.watchdog_interval_s({"WATCHDOG_USEC": "4000000"}, 1) == 2.0
    assert systemd.watchdog_interval_s({"WATCHDOG_USEC": "4000000", "WATCHDOG_PID": "2"}, 1) is None
    assert systemd.watchdog_interval_s({"WATCHDOG_USEC": "0"}, 1) is None
    assert systemd.watchdog_interval_s({}, 1) is None


def test_notifier_sends_key_value_lines(manager: tuple[socket.socket, str]) -> None:
    sock, path = manager
    notifier = systemd.Notifier({"NOTIFY_SOCKET": path}, os.getpid())
    notifier.notify(READY=1, STATUS="serving 2 workers")
    assert sock.recv(4096) == b"READY=1\nSTATUS=serving 2 workers"
    notifier.reloading()
    lines = sock.recv(4096).decode().split("\n")
    assert lines[0] == "RELOADING=1" and lines[1].startswith("MONOTONIC_USEC=")
    assert int(lines[1].split("=")[1]) > 0
    notifier.close()


def test_notifier_reaches_an_abstract_socket() -> None:
    name = f"corral-test-{os.getpid()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(5)
    try:
        systemd.Notifier({"NOTIFY_SOCKET": "@" + name}, os.getpid()).notify(STOPPING=1)
        assert sock.recv(64) == b"STOPPING=1"
    finally:
        sock.close()


def test_watchdog_pings_at_its_interval(manager: tuple[socket.socket, str]) -> None:
    sock, path = manager
    env = {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "1000000"}
    notifier = systemd.Notifier(env, os.getpid())
    notifier.tick(100.0)
    notifier.tick(100.2)  # within half a second: no second ping
    notifier.tick(100.6)
    notifier.notify(STATUS="end")
    got = [sock.recv(64) for _ in range(3)]
    assert got == [b"WATCHDOG=1", b"WATCHDOG=1", b"STATUS=end"]


def test_notifier_without_manager_is_silent_and_survives_a_dead_socket() -> None:
    systemd.Notifier({}, 1).notify(READY=1)  # no NOTIFY_SOCKET: nothing to do
    dead = systemd.Notifier({"NOTIFY_SOCKET": "/nonexistent/notify"}, 1)
    dead.notify(READY=1)
    dead.notify(READY=1)
    assert dead.warned


def test_adopt_socket_takes_listeners_and_refuses_others() -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    adopted = systemd.adopt_socket(os.dup(listener.fileno()))
    assert adopted.getsockname() == listener.getsockname()
    adopted.close()
    listener.close()
    plain = socket.socket()
    with pytest.raises(ValueError, match="not a listening stream socket"):
        systemd.adopt_socket(plain.fileno())
    plain.close()
    fd = os.open(os.devnull, os.O_RDONLY)
    with pytest.raises(ValueError, match="not an open socket"):
        systemd.adopt_socket(fd)
    os.close(fd)
