"""The master's records: one ``WorkerRecord`` per worker it spawned, one ``Generation`` per zygote,
the ``WorkerTable`` that indexes workers by id and pid, and the narrow views its helpers read.

Plain data. The arbiter is the only writer; the monitor and the stats glue receive read-only
views (``SlotReadings``, sequences of records) and return decisions, so none of them holds the
arbiter or reaches into its fields. A worker's stage is ``WorkerRecord.state``, moved only along
``corral.lifecycle.TRANSITIONS``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Protocol

from corral.lifecycle import ExitReason, Lifecycle, check_transition
from corral.stats.protocol import WorkerState


class GenState:
    """A generation's stage: LOADING -> SERVING | FAILED -> RETIRED."""

    LOADING = "loading"
    SERVING = "serving"
    FAILED = "failed"
    RETIRED = "retired"


@dataclass
class WorkerRecord:
    wid: int
    slot: int
    gen: int
    spawned_at: float
    requests_limit: int = 0
    pid: int = 0  # 0 until the zygote reports it
    state: Lifecycle = Lifecycle.BOOTING
    was_ready: bool = False  # reached READY once: an exit after that is not a boot failure
    stop_reason: ExitReason | None = None
    retire_reason: ExitReason | None = None  # why, while a replacement boots
    replaces: int = 0  # wid of the worker this one replaces
    timed_out: bool = False
    kill_at: float = 0.0

    def move(self, new: Lifecycle) -> None:
        self.state = check_transition(self.state, new)

    @property
    def stopping(self) -> bool:
        return self.state is Lifecycle.STOPPING

    @property
    def retiring(self) -> bool:
        return self.state is Lifecycle.RETIRING

    @property
    def serving(self) -> bool:
        """Ready and neither draining nor about to be replaced: counts toward the target."""
        return self.state is Lifecycle.READY


@dataclass
class Generation:
    number: int
    zygote_pid: int
    cmd_w: int
    reply_r: int
    started_at: float
    state: str = GenState.LOADING
    buf: bytes = b""
    boot_failures: int = 0
    ever_ready: bool = False
    crashes: int = 0
    next_spawn_at: float = 0.0
    zygote_alive: bool = True
    failure: str = ""

    def close_commands(self) -> None:
        """Close the command pipe: at EOF the zygote exits."""
        if self.cmd_w >= 0:
            os.close(self.cmd_w)
            self.cmd_w = -1


@dataclass
class WorkerTable:
    workers: dict[int, WorkerRecord] = field(default_factory=dict)  # by wid
    by_pid: dict[int, int] = field(default_factory=dict)
    early_exits: dict[int, int] = field(default_factory=dict)  # pid -> status, before "spawned"


class SlotReadings(Protocol):
    """What the master reads of a worker's scoreboard slot (``Scoreboard`` is one)."""

    def state(self, index: int, /) -> WorkerState: ...

    def heartbeat(self, index: int, /) -> float: ...

    def requests(self, index: int, /) -> int: ...

    def memory_alert(self, index: int, /) -> int: ...


@dataclass(frozen=True)
class Recycle:
    """A helper's decision: replace worker ``wid`` (spawn before kill) because of ``reason``."""

    wid: int
    reason: ExitReason
    why: str = ""  # a line for the log, written when the arbiter acts on it
    urgent: bool = False  # applied even while another replacement boots (a confirmed leak)
