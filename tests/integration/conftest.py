"""Run ``corral.worker.serve`` in a real forked process on a real socket.

The parent binds 127.0.0.1 port 0 (or a unix socket) and listens before forking, so clients
can connect at once; the child reports readiness through a pipe when its slot goes READY
(signal handlers are installed by then). Teardown: SIGTERM, wait with a deadline, SIGKILL.
"""

from __future__ import annotations

import logging
import os
import select
import signal
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from corral.stats.protocol import NullSlot, WorkerState
from corral.worker import WorkerSettings, serve
from tests.worker_defaults import production_worker_settings

READY_TIMEOUT_S = 10.0


class ReadySlot(NullSlot):
    """Writes one byte to a pipe when the worker becomes READY; with ``record``, also appends
    one line per slot call to that file (for tests of what the worker reports)."""

    def __init__(self, fd: int, record: Path | None = None) -> None:
        self.fd = fd
        self.record = record

    def _note(self, line: str) -> None:
        if self.record is not None:
            with open(self.record, "a") as f:
                f.write(line + "\n")

    def set_state(self, state: WorkerState) -> None:
        self._note(f"state {state.name}")
        if state == WorkerState.READY:
            os.write(self.fd, b"R")

    def heartbeat(self, now: float) -> None:
        self._note("heartbeat")

    def start_request(self, now: float, method: bytes, path: bytes) -> None:
        self._note(f"start {method.decode()} {path.decode()}")

    def finish_request(
        self, now: float, status: int, duration_s: float, bytes_in: int, bytes_out: int
    ) -> None:
        self._note(f"finish {status} {bytes_in} {bytes_out > 0}")

    def set_connections(self, open_connections: int) -> None:
        self._note(f"connections {open_connections}")


@dataclass
class Server:
    pid: int
    address: Any  # (host, port) or a unix socket path
    log_path: Path
    exit_code: int | None = field(default=None)

    @property
    def port(self) -> int:
        return int(self.address[1])

    def connect(self, timeout: float = 10.0) -> socket.socket:
        family = socket.AF_UNIX if isinstance(self.address, str) else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        sock.connect(self.address)
        return sock

    def wait(self, timeout: float) -> int | None:
        """Exit code once the child exits within ``timeout``, else None."""
        deadline = time.monotonic() + timeout
        while True:  # checks at least once, even with timeout 0
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.exit_code = os.waitstatus_to_exitcode(status)
                return self.exit_code
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.02)  # polling the child's exit, not synchronising with it

    def stop(self) -> None:
        if self.exit_code is not None:
            return
        with_suppress_kill(self.pid, signal.SIGTERM)
        if self.wait(10.0) is None:
            with_suppress_kill(self.pid, signal.SIGKILL)
            self.wait(10.0)

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""


def with_suppress_kill(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _child(
    app: Any, lsock: socket.socket, settings: WorkerSettings, slot: ReadySlot, log: Path
) -> None:
    code = 1
    try:
        handler = logging.FileHandler(log)
        handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
        root = logging.getLogger()
        root.handlers[:] = [handler]
        root.setLevel(logging.INFO)
        code = serve(app, [lsock], settings, slot)
    except BaseException:
        logging.getLogger("corral.error").exception("worker crashed")
    finally:
        logging.shutdown()
        os._exit(code)


StartServer = Callable[..., Server]


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[StartServer]:
    servers: list[Server] = []

    def start(
        app: Any,
        settings: WorkerSettings | None = None,
        unix: bool = False,
        slot_record: Path | None = None,
    ) -> Server:
        if unix:
            path = str(tmp_path / f"s{len(servers)}.sock")
            lsock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            lsock.bind(path)
            address: Any = path
        else:
            lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            lsock.bind(("127.0.0.1", 0))
            address = lsock.getsockname()
        lsock.listen(128)
        log_path = tmp_path / f"worker{len(servers)}.log"
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(r)
            settings = settings or production_worker_settings()
            _child(app, lsock, settings, ReadySlot(w, slot_record), log_path)
        os.close(w)
        lsock.close()
        server = Server(pid, address, log_path)
        servers.append(server)
        ready, _, _ = select.select([r], [], [], READY_TIMEOUT_S)
        got = os.read(r, 1) if ready else b""
        os.close(r)
        if got != b"R":
            server.stop()
            raise RuntimeError(f"worker did not become ready; log:\n{server.log()}")
        return server

    yield start
    for server in servers:
        server.stop()
