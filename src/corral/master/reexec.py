"""Re-executing the master (USR2): a new corral, a new Python, a new config, the same sockets.

Theory of operation (gunicorn's binary upgrade, made to lose nothing):
1. The old master forks; the child moves the listening sockets to descriptors 3, 4, ... and
   ``execve``s the command line the old master was started with, announcing them with systemd's
   socket-activation variables (``corral.master.systemd``) and its parent's pid in
   ``_CORRAL_UPGRADE_FROM``. The listeners are the same kernel objects (same inode), so no
   connection is refused or dropped while two masters serve.
2. The new master adopts them instead of binding, preloads the app and boots its workers. Once its
   first generation is READY it writes the pidfile and, unless ``reexec_handoff`` is ``manual``,
   sends TERM to the old master, which drains as on any graceful stop.
3. If the new master fails (bad config, the app does not import, workers do not boot), it exits;
   the old master reaps it, logs why, renames its pidfile back and serves on.
The old master renames its pidfile to ``PIDFILE.oldbin`` while the new one boots, as gunicorn does,
so scripts written for gunicorn's USR2/WINCH/TERM choreography keep working.
"""

from __future__ import annotations

import fcntl
import os
import socket
import sys
from collections.abc import Mapping, Sequence

from corral.master.systemd import forget_passed_sockets, reexec_environ

UPGRADE_ENV = "_CORRAL_UPGRADE_FROM"  # not CORRAL_*: never mistaken for a setting


def command_line() -> list[str]:
    """The interpreter and arguments this process was started with, interpreter made absolute."""
    return [sys.executable, *sys.orig_argv[1:]]


def spawn(listeners: Sequence[socket.socket], bind_texts: Sequence[str], cwd: str) -> int:
    """Fork and exec a new master that inherits ``listeners``; return its pid (raises OSError)."""
    argv = command_line()
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child execs or exits at once
        try:
            _exec_new_master(listeners, list(bind_texts), argv, cwd, parent)
        finally:
            os._exit(127)
    return pid


def _exec_new_master(
    listeners: Sequence[socket.socket],
    bind_texts: list[str],
    argv: list[str],
    cwd: str,
    parent: int,
) -> None:
    first_free = 3 + len(listeners)
    high = [fcntl.fcntl(s.fileno(), fcntl.F_DUPFD_CLOEXEC, first_free) for s in listeners]
    for i, fd in enumerate(high):
        os.dup2(fd, 3 + i, inheritable=True)
    env = new_master_environ(os.environ, bind_texts, os.getpid(), parent)
    os.chdir(cwd)
    os.execve(argv[0], argv, env)


def new_master_environ(
    base: Mapping[str, str], bind_texts: list[str], pid: int, parent: int
) -> dict[str, str]:
    env = dict(base)
    forget_passed_sockets(env)
    env = reexec_environ(env, bind_texts, pid)
    env[UPGRADE_ENV] = str(parent)
    return env


def upgrading_from(environ: Mapping[str, str], parent_pid: int) -> int:
    """The old master's pid if this process is a re-exec of it (and it is still our parent)."""
    text = environ.get(UPGRADE_ENV, "")
    return parent_pid if text.isdigit() and int(text) == parent_pid else 0
