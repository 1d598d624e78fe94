"""What a worker may say to the master: the write side of its scoreboard slot.

A worker holds one ``SlotWriter``; the master reads the same memory. Every method is called on
the worker's hot path, so implementations write a few integers into shared memory (or batch
them until ``publish``) and nothing else: no locks, no system calls. ``NullSlot`` is for tests
and single-process use.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Protocol


class WorkerState(IntEnum):
    EMPTY = 0  # slot unused
    BOOTING = 1  # forked, not yet accepting
    READY = 2  # accepting and serving
    DRAINING = 3  # stopped accepting, finishing in-flight requests
    EXITED = 4


class SlotWriter(Protocol):
    def set_state(self, state: WorkerState) -> None: ...

    def heartbeat(self, now: float) -> None:
        """``now`` is ``time.monotonic()``; CLOCK_MONOTONIC is shared by all processes."""

    def start_request(self, now: float, method: bytes, path: bytes) -> None: ...

    def finish_request(
        self, now: float, status: int, duration_s: float, bytes_in: int, bytes_out: int
    ) -> None: ...

    def set_connections(self, open_connections: int) -> None: ...

    def set_memory_alert(self, estimate: int) -> None:
        """Over the memory limit: the worker's estimate in bytes (0: under it). The master reads
        it every tick and replaces the worker (see ``corral.worker.memguard``)."""

    def publish(self, now: float) -> float | None:
        """Called by the loop after each round of events: store what ``finish_request``
        batched if it is due. Returns None when nothing is left unpublished, else the seconds
        until it is due (the loop wakes up by then)."""

    def flush(self) -> None:
        """Store everything batched now (before the worker exits)."""


class NullSlot:
    """A slot that records nothing."""

    def set_state(self, state: WorkerState) -> None:
        pass

    def heartbeat(self, now: float) -> None:
        pass

    def start_request(self, now: float, method: bytes, path: bytes) -> None:
        pass

    def finish_request(
        self, now: float, status: int, duration_s: float, bytes_in: int, bytes_out: int
    ) -> None:
        pass

    def set_connections(self, open_connections: int) -> None:
        pass

    def set_memory_alert(self, estimate: int) -> None:
        pass

    def publish(self, now: float) -> float | None:
        return None

    def flush(self) -> None:
        pass
