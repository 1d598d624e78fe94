"""The words processes of corral say to each other, in one place: why a worker left, which
recycle counter that is, the stages of a worker's life, and the zygote pipe's messages.

Theory of operation. These words cross process boundaries or reach users (log lines, the
``reason`` label of ``corral_worker_recycles_total``, the zygote's pipe), so they are ``StrEnum``s:
a member *is* its wire/label string, and a typo is a mypy error instead of a silent new label.
This module imports nothing of corral, so master, worker, stats and memory can all use it.

A worker's life as the master tracks it (``WorkerRecord.state``)::

      spawn             scoreboard says READY        replacement READY
    --------> BOOTING ------------------------> READY ------------------> RETIRING
                 |                                |  ^  replacement died     |
                 |  asked to stop                 |  +-----------------------+
                 |  (shutdown, reload)            | timeout, scale-down,     | told to drain
                 v                                v reload, shutdown         v
               STOPPING <-------------------------+--------------------------+
                 |  (again, to escalate: fast stop after a graceful one)
                 v  reaped
                GONE  <------ any state: the process exited (crash, OOM, boot failure)

The table ``TRANSITIONS`` is that diagram as data; ``check_transition`` enforces it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class ExitReason(StrEnum):
    """Why a worker went away, as the master logs it (the first six are also recycle reasons)."""

    CRASH = "crash"
    TIMEOUT = "timeout"  # no heartbeat for timeout_s: SIGABRT, stack dumped
    MAX_REQUESTS = "max-requests"
    MEMORY = "memory"
    RELOAD = "reload"  # its generation was replaced by a newer one
    SCALE_DOWN = "scale-down"  # TTOU
    OOM = "oom?"  # SIGKILL nobody in corral sent: the kernel's OOM killer, probably
    STOPPED = "stopped"  # exited cleanly (0 or SIGTERM) without the master asking
    SHUTDOWN = "shutdown"  # the master is stopping
    RELOAD_FAILED = "reload-failed"  # its generation never got ready and was discarded
    REPLACED = "replaced"  # a replacement took over (no reason recorded)


class RecycleReason(StrEnum):
    """The ``reason`` label of ``corral_worker_recycles_total``: why a worker was *replaced*.
    A shutdown is not a replacement and is not counted; CRASH and TIMEOUT are also restarts."""

    CRASH = "crash"
    TIMEOUT = "timeout"
    MAX_REQUESTS = "max-requests"
    MEMORY = "memory"
    RELOAD = "reload"
    SCALE_DOWN = "scale-down"


UNPLANNED = frozenset({RecycleReason.CRASH, RecycleReason.TIMEOUT})

_COUNTED_AS: dict[ExitReason, RecycleReason | None] = {
    ExitReason.CRASH: RecycleReason.CRASH,
    ExitReason.TIMEOUT: RecycleReason.TIMEOUT,
    ExitReason.MAX_REQUESTS: RecycleReason.MAX_REQUESTS,
    ExitReason.MEMORY: RecycleReason.MEMORY,
    ExitReason.RELOAD: RecycleReason.RELOAD,
    ExitReason.SCALE_DOWN: RecycleReason.SCALE_DOWN,
    ExitReason.OOM: RecycleReason.CRASH,
    ExitReason.RELOAD_FAILED: RecycleReason.RELOAD,
    ExitReason.REPLACED: RecycleReason.RELOAD,
    ExitReason.STOPPED: None,
    ExitReason.SHUTDOWN: None,
}


def recycle_reason(reason: ExitReason) -> RecycleReason | None:
    """The recycle counter a departure increments, or None when it is not a recycle."""
    return _COUNTED_AS[reason]


class Lifecycle(StrEnum):
    """A worker's stage as the master sees it (the diagram above)."""

    BOOTING = "booting"
    READY = "ready"
    RETIRING = "retiring"  # a replacement is booting; this one serves until it is READY
    STOPPING = "stopping"  # signalled; waiting for it to exit
    GONE = "gone"  # reaped


TRANSITIONS: dict[Lifecycle, frozenset[Lifecycle]] = {
    Lifecycle.BOOTING: frozenset({Lifecycle.READY, Lifecycle.STOPPING, Lifecycle.GONE}),
    Lifecycle.READY: frozenset({Lifecycle.RETIRING, Lifecycle.STOPPING, Lifecycle.GONE}),
    Lifecycle.RETIRING: frozenset({Lifecycle.READY, Lifecycle.STOPPING, Lifecycle.GONE}),
    Lifecycle.STOPPING: frozenset({Lifecycle.STOPPING, Lifecycle.GONE}),
    Lifecycle.GONE: frozenset(),
}


class TransitionError(RuntimeError):
    """A bug in the master: a move the lifecycle table does not allow."""


def check_transition(old: Lifecycle, new: Lifecycle) -> Lifecycle:
    if new not in TRANSITIONS[old]:
        raise TransitionError(f"worker lifecycle: {old} -> {new} is not allowed")
    return new


# ---- the zygote pipes ----------------------------------------------------------------------
# One message per line, at most MAX_LINE bytes with the newline: a write under PIPE_BUF is atomic,
# so the zygote and its short-lived intermediates can share one reply pipe without interleaving.
MAX_LINE = 481


class ZygoteWord(StrEnum):
    SPAWN = "spawn"  # master -> zygote: fork worker WID into scoreboard slot SLOT
    LOADED = "loaded"  # zygote -> master: the app is imported (a description follows)
    FAILED = "failed"  # zygote -> master: it is not (the error follows)
    SPAWNED = "spawned"  # intermediate -> master: worker WID is process PID


@dataclass(frozen=True)
class Spawn:
    wid: int
    slot: int


@dataclass(frozen=True)
class Loaded:
    detail: str


@dataclass(frozen=True)
class Failed:
    message: str


@dataclass(frozen=True)
class Spawned:
    wid: int
    pid: int


ZygoteMessage = Spawn | Loaded | Failed | Spawned


def encode(msg: ZygoteMessage) -> bytes:
    """One line: the word, its fields; text is flattened to one line and cut to fit."""
    match msg:
        case Spawn(wid, slot):
            line = f"{ZygoteWord.SPAWN} {wid} {slot}"
        case Spawned(wid, pid):
            line = f"{ZygoteWord.SPAWNED} {wid} {pid}"
        case Loaded(detail):
            line = f"{ZygoteWord.LOADED} {detail}"
        case Failed(message):
            line = f"{ZygoteWord.FAILED} {message}"
    return (line.replace("\n", " ")[: MAX_LINE - 1] + "\n").encode("utf-8", "replace")


def decode(line: bytes) -> ZygoteMessage | None:
    """One line without its newline -> a message; None for anything malformed."""
    word, _, rest = line.decode("utf-8", "replace").partition(" ")
    if word == ZygoteWord.LOADED:
        return Loaded(rest)
    if word == ZygoteWord.FAILED:
        return Failed(rest)
    numbers = rest.split()
    if len(numbers) != 2 or not all(n.isdigit() for n in numbers):
        return None
    a, b = int(numbers[0]), int(numbers[1])
    if word == ZygoteWord.SPAWN:
        return Spawn(a, b)
    if word == ZygoteWord.SPAWNED:
        return Spawned(a, b)
    return None
