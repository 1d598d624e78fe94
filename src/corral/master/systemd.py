"""systemd's two protocols, in the few lines they take: socket activation and ``sd_notify``.

Theory of operation.
- **Socket activation** (sd_listen_fds(3)): the service manager passes listening sockets as file
  descriptors 3, 4, ... and says how many in ``LISTEN_FDS``, for the process named by
  ``LISTEN_PID`` (a child that inherits the environment must not take them too), with optional
  colon-separated names in ``LISTEN_FDNAMES``. corral's own re-exec (USR2) hands its listeners to
  the new master the same way, naming each by the ``--bind`` text it was created for, so one code
  path serves systemd, a re-exec and any launcher that speaks the protocol.
- **Notification** (sd_notify(3)): one datagram of ``KEY=VALUE`` lines to the unix socket in
  ``NOTIFY_SOCKET`` (a path, or ``@name`` in the abstract namespace): ``READY=1`` once workers
  serve, ``RELOADING=1`` with ``MONOTONIC_USEC`` during a reload, ``STOPPING=1``, ``STATUS=...``,
  ``MAINPID=`` after a re-exec, and ``WATCHDOG=1`` at half of ``WATCHDOG_USEC``.
  Without ``NOTIFY_SOCKET`` every call is a no-op; a send that fails is logged once and dropped,
  since supervision must never depend on the manager reading its socket.

We write the protocol ourselves rather than take a library: it is a dozen lines, stable since
2010, and the libraries on PyPI either bind libsystemd (a C dependency) or are unmaintained.
"""

from __future__ import annotations

import logging
import socket
import time
import urllib.parse
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass

log = logging.getLogger("corral.master")

SD_LISTEN_FDS_START = 3
REEXEC_NAME_PREFIX = "corral="  # LISTEN_FDNAMES entries written by corral's own re-exec


@dataclass(frozen=True)
class PassedSockets:
    """The listening descriptors handed to this process, with their names."""

    fds: tuple[int, ...]
    names: tuple[str, ...]

    @property
    def from_reexec(self) -> bool:
        """True when a corral master (USR2) passed these, naming each by its bind text."""
        return bool(self.names) and all(n.startswith(REEXEC_NAME_PREFIX) for n in self.names)

    def bind_texts(self) -> tuple[str, ...]:
        """The ``--bind`` text each fd was created for (re-exec only)."""
        return tuple(urllib.parse.unquote(n[len(REEXEC_NAME_PREFIX) :]) for n in self.names)


def passed_sockets(environ: Mapping[str, str], pid: int) -> PassedSockets:
    """Read ``LISTEN_*`` for process ``pid``; empty unless they are addressed to it."""
    try:
        if int(environ.get("LISTEN_PID", "")) != pid:
            return PassedSockets((), ())
        count = int(environ.get("LISTEN_FDS", ""))
    except ValueError:
        return PassedSockets((), ())
    if count <= 0:
        return PassedSockets((), ())
    fds = tuple(range(SD_LISTEN_FDS_START, SD_LISTEN_FDS_START + count))
    names = tuple(environ["LISTEN_FDNAMES"].split(":")) if "LISTEN_FDNAMES" in environ else ()
    if len(names) != count:
        names = ()
    return PassedSockets(fds, names)


def forget_passed_sockets(environ: MutableMapping[str, str]) -> None:
    """Unset ``LISTEN_*``: no child (zygote, worker, app subprocess) may think them its own."""
    for key in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        environ.pop(key, None)


def reexec_environ(base: Mapping[str, str], bind_texts: list[str], pid: int) -> dict[str, str]:
    """The environment for a new master that gets ``len(bind_texts)`` listeners from fd 3 on."""
    env = dict(base)
    env["LISTEN_PID"] = str(pid)
    env["LISTEN_FDS"] = str(len(bind_texts))
    env["LISTEN_FDNAMES"] = ":".join(
        REEXEC_NAME_PREFIX + urllib.parse.quote(text, safe="") for text in bind_texts
    )
    return env


def adopt_socket(fd: int) -> socket.socket:
    """Wrap a passed descriptor; refuse one that is not a listening stream socket."""
    try:
        sock = socket.socket(fileno=fd)
    except OSError as exc:
        raise ValueError(f"fd://{fd}: not an open socket ({exc.strerror})") from exc
    if sock.type != socket.SOCK_STREAM or not sock.getsockopt(
        socket.SOL_SOCKET, socket.SO_ACCEPTCONN
    ):
        sock.detach()
        raise ValueError(f"fd://{fd}: not a listening stream socket")
    sock.setblocking(False)
    sock.set_inheritable(True)
    return sock


def watchdog_interval_s(environ: Mapping[str, str], pid: int) -> float | None:
    """How often to send ``WATCHDOG=1`` (half the manager's timeout), or None when off."""
    try:
        usec = int(environ.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    owner = environ.get("WATCHDOG_PID")
    if usec <= 0 or (owner and owner != str(pid)):
        return None
    return usec / 2e6


class Notifier:
    """Sends sd_notify datagrams; silent when the process was not started by a manager."""

    def __init__(self, environ: Mapping[str, str], pid: int) -> None:
        path = environ.get("NOTIFY_SOCKET", "")
        self.address = "\0" + path[1:] if path.startswith("@") else path
        self.sock: socket.socket | None = None
        self.watchdog_s = watchdog_interval_s(environ, pid)
        self.next_watchdog = 0.0
        self.warned = False

    @property
    def enabled(self) -> bool:
        return bool(self.address)

    def notify(self, **fields: str | int) -> None:
        """Send ``KEY=VALUE`` lines, e.g. ``notify(READY=1, STATUS="serving")``."""
        if not self.address:
            return
        payload = "\n".join(f"{k}={v}" for k, v in fields.items()).encode()
        try:
            if self.sock is None:
                self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self.sock.setblocking(False)
            self.sock.sendto(payload, self.address)
        except OSError as exc:
            if not self.warned:
                log.warning("sd_notify to %s failed (%s); going on", self.address, exc)
                self.warned = True

    def reloading(self) -> None:
        self.notify(RELOADING=1, MONOTONIC_USEC=time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000)

    def tick(self, now: float) -> None:
        """Ping the watchdog from the master loop, so a wedged master is restarted."""
        if self.watchdog_s is None or now < self.next_watchdog:
            return
        self.next_watchdog = now + self.watchdog_s
        self.notify(WATCHDOG=1)

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None
