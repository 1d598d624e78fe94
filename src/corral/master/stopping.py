"""The master's stop sequence as decisions: what to do now, given the clock (the arbiter applies).

Theory of operation. A stop that a balancer can follow without a failed request has three
stages, each with its own reason:

1. **Lame duck** (``shutdown_delay_s``, graceful stops only): health checks turn 503 at once --
   the stats port's ``/healthz`` because the master's phase is "stopping", the app port's
   ``--health-path`` because every worker is told so (``SIGWINCH``) -- while the workers keep
   serving *and accepting*. A balancer polling its health check takes the host out in this time
   (HAProxy: ``inter`` x ``fall``; Kubernetes: until the endpoint removal has propagated), so no
   new connection is aimed at a host that is about to stop listening.
2. **Drain**: the zygotes (which hold copies of the listening sockets to fork workers with)
   are stopped -- at the start of the lame duck, so they are gone by now -- the master closes
   its own copies, *then* the workers get ``TERM``. Each worker accepts what is
   still queued in the backlog, closes its copy, finishes in-flight requests and answers the last
   request of each connection with ``Connection: close``. When the last copy of a listening
   socket closes, the kernel refuses new connections (a ``RST`` to the ``SYN``, which a balancer
   retries elsewhere because the request was never sent) instead of the master keeping the
   socket open until it exits and connections piling up in a backlog nobody accepts, to be
   reset mid-request when it finally does (issue 13).
3. **Kill**: whatever is left after ``graceful_timeout_s`` (2 s for a fast stop) gets ``SIGKILL``
   on every tick until it is gone.

A fast stop (INT, QUIT, or a generation that failed at boot) skips the lame duck, even one
already under way; a second graceful TERM changes nothing.
"""

from __future__ import annotations

import enum
import signal
from dataclasses import dataclass


class Step(enum.Enum):
    """What the arbiter does to carry out the stop."""

    HEALTH_DOWN = "health-down"  # SIGWINCH every worker: its health path answers 503
    STOP_ZYGOTES = "stop-zygotes"  # no worker is forked while stopping; they hold listeners
    CLOSE_LISTENERS = "close-listeners"  # the master's copies (zygotes stopped too)
    DRAIN = "drain"  # SIGTERM every worker
    STOP_NOW = "stop-now"  # SIGQUIT every worker (again, if already stopping)
    KILL = "kill"  # SIGKILL every worker left


WORKER_SIGNAL = {
    Step.HEALTH_DOWN: signal.SIGWINCH,
    Step.DRAIN: signal.SIGTERM,
    Step.STOP_NOW: signal.SIGQUIT,
    Step.KILL: signal.SIGKILL,
}
ZYGOTE_STEPS = frozenset({Step.STOP_ZYGOTES, Step.CLOSE_LISTENERS})


@dataclass
class StopSequence:
    """The stop's stage and deadlines; ``begin`` on a stop signal, ``tick`` every round."""

    shutdown_delay_s: float
    graceful_timeout_s: float
    fast_grace_s: float
    drain_at: float | None = None  # during the lame duck: when the drain starts
    kill_at: float | None = None  # once draining: when whatever is left is killed

    @property
    def started(self) -> bool:
        return self.drain_at is not None or self.kill_at is not None

    def begin(self, now: float, *, fast: bool) -> list[Step]:
        """A stop was asked for (again, perhaps): the steps to take now."""
        if fast:
            self.drain_at, self.kill_at = None, now + self.fast_grace_s + 1.0
            return [Step.CLOSE_LISTENERS, Step.STOP_NOW]  # (closing twice is harmless)
        if self.started:
            return []
        if self.shutdown_delay_s > 0:
            self.drain_at = now + self.shutdown_delay_s
            return [Step.STOP_ZYGOTES, Step.HEALTH_DOWN]
        return self._drain(now)

    def tick(self, now: float) -> list[Step]:
        """The steps that fall due at ``now``."""
        if self.drain_at is not None and now >= self.drain_at:
            return self._drain(now)
        if self.kill_at is not None and now > self.kill_at:
            return [Step.KILL]
        return []

    def _drain(self, now: float) -> list[Step]:
        self.drain_at, self.kill_at = None, now + self.graceful_timeout_s + 1.0
        return [Step.CLOSE_LISTENERS, Step.DRAIN]
