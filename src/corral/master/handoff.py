"""The master and the world around it: where its listeners come from, who hears that it is
ready, and how it hands over to a new master (USR2) without losing a connection.

Theory of operation.
- **Listeners** (``open_listeners``): sockets a corral master passed on re-exec are taken by the
  ``--bind`` text they were made for; sockets systemd passed (socket activation) are all served
  and ``--bind`` is ignored, as gunicorn does, unless the binds name them as ``fd://N``; any other
  bind is created here. The environment that announced them is cleared, so no child takes them.
- **Notices** go to a launcher's ``--ready-fd`` pipe and to systemd through
  ``corral.master.systemd.Notifier`` (a no-op without a manager): READY when the first
  generation serves (with MAINPID after a re-exec), RELOADING/READY around a HUP, STOPPING on
  the way out, the watchdog from the master's tick.
- **Upgrade, old side**: USR2 renames the pidfile to ``PIDFILE.oldbin`` and re-execs
  (``corral.master.reexec``). If the new master exits, it failed: the pidfile is renamed back
  and this master serves on. While it lives, this master must not unlink what they share (unix
  socket paths, the pidfile) when it stops.
- **Upgrade, new side**: it writes its pidfile as any master does and, once ready, with
  ``reexec_stop_old`` (default), sends TERM to the old master, which drains as on any stop.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
from collections.abc import MutableMapping, Sequence

from corral.addresses import Address, parse_address
from corral.master import reexec, sysdeps
from corral.master.listeners import bind, bound_address
from corral.master.policy import decode_status
from corral.master.systemd import (
    Notifier,
    PassedSockets,
    adopt_socket,
    forget_passed_sockets,
    passed_sockets,
)

log = logging.getLogger("corral.master")

Listener = tuple[str, socket.socket, Address]  # (bind text, socket, address served)


def address_of(sock: socket.socket) -> Address:
    """The address an adopted socket listens on."""
    if sock.family == socket.AF_UNIX:
        name = sock.getsockname()
        return Address(socket.AF_UNIX, "", 0, name if isinstance(name, str) else "")
    host, port = sock.getsockname()[:2]
    return Address(sock.family, host, port)


def open_listeners(binds: Sequence[str], backlog: int, passed: PassedSockets) -> list[Listener]:
    """Adopt or bind one listener per bind (see the module's docstring); raises OSError or
    ValueError with a message for the user."""
    texts = passed.bind_texts() if passed.from_reexec else tuple(f"fd://{n}" for n in passed.fds)
    explicit = any(b.startswith("fd://") for b in binds)
    if texts and not explicit and all(t.startswith("fd://") for t in texts):  # socket activation
        log.info("serving the %d sockets passed by the service manager", len(texts))
        pairs = zip(texts, passed.fds, strict=True)
        return [(t, s, address_of(s)) for t, n in pairs for s in [adopt_socket(n)]]
    inherited = dict(zip(texts, passed.fds, strict=True))
    out: list[Listener] = []
    for text in binds:
        address = parse_address(text)
        fd = inherited.pop(text, address.fd)
        if fd >= 0:
            sock = adopt_socket(fd)
            out.append((text, sock, address_of(sock)))
        else:
            sock = bind(address, backlog)
            out.append((text, sock, bound_address(sock, address)))
    for fd in inherited.values():  # the new configuration dropped this bind
        os.close(fd)
    return out


class Handoff:
    """The master's dealings with its service manager and with the master before or after it."""

    def __init__(
        self, pidfile: str, stop_old: bool, ready_fd: int, environ: MutableMapping[str, str]
    ) -> None:
        self.pid = os.getpid()
        self.pidfile = pidfile
        self.stop_old = stop_old
        self.passed = passed_sockets(environ, self.pid)
        self.old_master = reexec.upgrading_from(environ, os.getppid())
        # --ready-fd: a launcher (tests, corral chaos) waits on it. After a re-exec the number is
        # stale (the launcher heard the old master; the fd may now be a passed listener).
        self.ready_fd = -1 if self.old_master else ready_fd
        forget_passed_sockets(environ)
        environ.pop(reexec.UPGRADE_ENV, None)
        self.notifier = Notifier(environ, self.pid)
        self.new_master = 0  # pid of the master we re-executed, while it lives
        self.cwd = os.getcwd()

    # ---- notices ---------------------------------------------------------------------------
    def ready(self, urls: str, status: str) -> None:
        """The first generation serves: tell the launcher, systemd, and the old master."""
        if self.ready_fd >= 0:
            with contextlib.suppress(OSError):
                os.write(self.ready_fd, f"ready {urls}\n".encode())
                os.close(self.ready_fd)
            self.ready_fd = -1
        if self.old_master:
            self.notifier.notify(READY=1, MAINPID=self.pid, STATUS=status)
            if self.stop_old:
                log.info("upgrade: ready; stopping the old master (pid %d)", self.old_master)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.old_master, signal.SIGTERM)
            self.old_master = 0
        else:
            self.notifier.notify(READY=1, STATUS=status)

    def reloading(self) -> None:
        self.notifier.reloading()

    def reloaded(self, status: str) -> None:
        self.notifier.notify(READY=1, STATUS=status)

    def stopping(self) -> None:
        self.notifier.notify(STOPPING=1)

    def tick(self, now: float) -> None:
        self.notifier.tick(now)

    # ---- upgrade, old side -----------------------------------------------------------------
    def upgrade(self, listeners: Sequence[Listener]) -> None:
        """USR2: start a new master on the same sockets (it stops us once it is ready)."""
        if self.new_master:
            log.warning("upgrade already under way (new master pid %d)", self.new_master)
            return
        if self.pidfile:
            with contextlib.suppress(FileNotFoundError):
                os.replace(self.pidfile, self.pidfile + ".oldbin")
        try:
            self.new_master = reexec.spawn(
                [s for _, s, _ in listeners], [t for t, _, _ in listeners], self.cwd
            )
        except OSError as exc:
            log.error("upgrade: cannot start a new master (%s); serving on", exc)
            self._restore_pidfile()
            return
        log.info("upgrade: new master pid %d starting on the same sockets", self.new_master)

    def on_exit(self, pid: int, status: int) -> bool:
        """True if ``pid`` was the new master: it failed before taking over."""
        if not self.new_master or pid != self.new_master:
            return False
        log.error(
            "upgrade failed: the new master (pid %d) %s; this master serves on",
            pid,
            decode_status(status).describe(),
        )
        self.new_master = 0
        self._restore_pidfile()
        return True

    def _restore_pidfile(self) -> None:
        if self.pidfile:
            with contextlib.suppress(FileNotFoundError):
                os.replace(self.pidfile + ".oldbin", self.pidfile)

    def cleanup(self, addresses: Sequence[Address]) -> None:
        """On exit: unlink our unix socket paths and pidfile, unless a new master shares them."""
        self.notifier.close()
        if self.new_master:
            if self.pidfile:
                sysdeps.unlink_quietly(self.pidfile + ".oldbin")
            return
        for address in addresses:
            if address.family == socket.AF_UNIX and address.path:
                sysdeps.unlink_quietly(address.path)
        if self.pidfile and _pidfile_names(self.pidfile, self.pid):
            sysdeps.unlink_quietly(self.pidfile)


def _pidfile_names(path: str, pid: int) -> bool:
    try:
        with open(path) as f:
            return f.read().strip() == str(pid)
    except (OSError, ValueError):
        return False
