"""Connections balanced across the workers that share a listener (issue 14).

Theory of operation. Every worker waits on the shared listening socket with ``EPOLLEXCLUSIVE``:
the kernel walks the socket's queue of exclusive waiters from its head and wakes the first
worker that is blocked in ``epoll_wait``. Left alone that favours whoever is first in the
queue, and, when every worker is busy, whoever polls first, which is the busiest one: wrk's
64 keep-alive connections split 60/4 across 2 workers and 41/15/4/4 across 4. Two rules
correct it, both on the worker's side of the listener, so nothing changes for reloads or
scale-down (no socket is handed over; queued connections stay in the one shared backlog):

* **Round robin.** After accepting, a worker re-registers the listener, which moves its
  waiter to the tail of the socket's queue, so the next connection wakes the next idle worker.
* **A fair share.** After accepting, a worker reads the connection counts every READY worker
  publishes in the scoreboard (single words, no lock) and, holding more than the average plus
  ``SLACK``, stops accepting. It accepts again once it is back within its share or after
  ``HOLD_S``, whichever comes first, so a backlog never waits longer than that on a worker
  that cannot accept (busy in a long app call, or gone): fairness costs at most ``HOLD_S`` of
  accept latency, and only to a worker that already holds more than its share.

A worker without a scoreboard census (tests, the in-process benchmarks) only does the round
robin.
"""

from __future__ import annotations

import select
from collections.abc import Callable

SLACK = 1  # connections over the average a worker may hold and still accept
HOLD_S = 0.05  # the longest a worker over its share stays out of the accept rotation
Census = Callable[[], tuple[int, int]]  # () -> (READY workers, connections they hold)


class FairAccept:
    """The accept rules of one worker (see the module docstring)."""

    __slots__ = ("census", "until")

    def __init__(self, census: Census | None) -> None:
        self.census = census
        self.until = 0.0  # holding back until then (0: not holding)

    def over(self, mine: int) -> bool:
        """Whether ``mine`` connections are more than this worker's share plus SLACK."""
        if self.census is None:
            return False
        workers, total = self.census()
        return workers > 1 and mine * workers > total + SLACK * workers

    def after_accept(self, ep: select.epoll, lfd: int, mine: int, now: float) -> bool:
        """After new connections: True when the worker should stop accepting for now, else
        the listener is re-registered (to the back of the queue of exclusive waiters)."""
        if self.over(mine):
            self.until = now + HOLD_S
            return True
        ep.unregister(lfd)
        ep.register(lfd, select.EPOLLIN | select.EPOLLEXCLUSIVE)
        return False

    def may_resume(self, mine: int, now: float) -> bool:
        """While holding: True (and no longer holding) once within the share or HOLD_S on."""
        if now < self.until and self.over(mine):
            return False
        self.until = 0.0
        return True
