"""Linux process controls the supervisor relies on, through libc's prctl(2).

- PR_SET_CHILD_SUBREAPER: the master adopts its orphaned grandchildren, so workers forked by a
  zygote (through a short-lived intermediate) are reaped and signalled by the master itself.
- PR_SET_PDEATHSIG: a zygote or worker is signalled when the master dies, so none outlives it.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import time

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def _prctl(option: int, arg: int) -> None:
    if _libc.prctl(option, ctypes.c_ulong(arg), 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def set_child_subreaper() -> None:
    _prctl(PR_SET_CHILD_SUBREAPER, 1)


def die_with_parent(parent_pid: int, signum: int, wait_s: float = 2.0) -> bool:
    """Arrange ``signum`` when ``parent_pid`` (our parent, possibly by adoption) dies.

    A grandchild becomes the master's child only once the intermediate process exits, so wait
    (bounded) for the adoption first; return False if the parent is already gone.
    """
    deadline = time.monotonic() + wait_s
    while os.getppid() != parent_pid:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.001)
    _prctl(PR_SET_PDEATHSIG, signum)
    return os.getppid() == parent_pid  # the parent may have died before prctl took effect


def set_title(title: str) -> None:
    """The process title ps and top show, when setproctitle is installed."""
    try:
        import setproctitle

        setproctitle.setproctitle(title)
    except Exception:  # a missing title is never worth failing over
        pass


def write_pidfile(path: str) -> None:
    with open(path, "w") as f:
        f.write(f"{os.getpid()}\n")


def unlink_quietly(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)
