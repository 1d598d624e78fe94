"""The stats server out of descriptors (issue 16): it pauses accepting with a backoff and one
log line a pause instead of spinning, then serves again once descriptors are free. Runs in a
forked child with a lowered RLIMIT_NOFILE, so the test process keeps its own limits."""

from __future__ import annotations

import logging
import os
import resource
import selectors
import socket
import time

import pytest

from corral.stats.fleet import FleetSnapshot
from corral.stats.server import StatsServer, bind_stats_socket

pytestmark = pytest.mark.timeout(60)
CLIENTS = 4
STARVED_S = 1.5


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def _no_snapshot() -> FleetSnapshot:
    raise AssertionError("not used by /healthz")


def _drive(server: StatsServer, sel: selectors.BaseSelector, until: float) -> int:
    """Run the loop as the master does (callbacks, then expire); count listener callbacks."""
    accepts = 0
    while time.monotonic() < until:
        for key, mask in sel.select(0.05):
            accepts += key.fileobj is server.sock
            key.data(key.fileobj, mask)
        server.expire(time.monotonic())
    return accepts


def _starve_then_recover() -> str:
    handler = _Records()
    records = handler.records
    logging.getLogger("corral.stats").addHandler(handler)
    sel = selectors.DefaultSelector()
    server = StatsServer(bind_stats_socket("127.0.0.1", 0), _no_snapshot, healthy=lambda: True)
    server.register(sel)
    clients = []
    for _ in range(CLIENTS):  # queued in the backlog; answered only once accept() works
        c = socket.create_connection(server.address, timeout=5)
        c.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        clients.append(c)
    fillers: list[int] = []
    try:
        while len(fillers) < 100_000:
            fillers.append(os.open("/dev/null", os.O_RDONLY))
    except OSError:
        pass
    accepts = _drive(server, sel, time.monotonic() + STARVED_S)
    warnings = len(records)
    for fd in fillers:
        os.close(fd)
    answered = 0
    deadline = time.monotonic() + 15
    for c in clients:
        c.setblocking(False)
    pending = list(clients)
    while pending and time.monotonic() < deadline:
        _drive(server, sel, time.monotonic() + 0.1)
        for c in list(pending):
            try:
                data = c.recv(4096)
            except BlockingIOError:
                continue
            answered += data.startswith(b"HTTP/1.1 200")
            pending.remove(c)
    return f"accepts={accepts} warnings={warnings} answered={answered}"


def test_emfile_pauses_accepting_instead_of_spinning() -> None:
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        os.close(r)
        try:
            hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
            resource.setrlimit(resource.RLIMIT_NOFILE, (64, hard))
            out = _starve_then_recover()
        except BaseException as exc:  # report it, never return into pytest
            out = f"child raised {exc!r}"
        os.write(w, out.encode())
        os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        out = f.read().decode()
    os.waitpid(pid, 0)
    fields = dict(item.split("=") for item in out.split())
    assert fields.keys() == {"accepts", "warnings", "answered"}, out
    # 1.5 s starved: pauses of 0.5 s then 1 s -> at most 3 tries, one warning each.
    assert int(fields["accepts"]) <= 3, out
    assert 1 <= int(fields["warnings"]) <= 3, out
    assert int(fields["answered"]) == CLIENTS, out  # serving again once fds are free
