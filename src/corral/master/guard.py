"""A last-resort guard around each periodic step of the master's loop.

The master's own work (reading /proc, building stats, reaping) can fail in ways no step
anticipates — EMFILE when the master is at its fd limit is the one seen. An exception escaping
the loop would take every worker and the listeners down with it, so each step runs under a
``Guard``: the first failure is logged with its traceback, the step is then skipped for a
doubling pause (0.1 s up to 5 s) while the rest of the loop keeps supervising, and recovery is
logged once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

log = logging.getLogger("corral.master")

BACKOFF_BASE_S = 0.1
BACKOFF_MAX_S = 5.0


class Guard:
    def __init__(self, name: str, *, pause: bool = True) -> None:
        self.name = name
        self.pause = pause
        self.failures = 0
        self.resume_at = 0.0

    def run(self, now: float, step: Callable[[], object]) -> None:
        """Run ``step`` unless it is backing off; never raise (except to exit)."""
        if now < self.resume_at:
            return
        try:
            step()
        except Exception:
            self.failures += 1
            pause = min(BACKOFF_MAX_S, BACKOFF_BASE_S * 2.0 ** (self.failures - 1))
            self.resume_at = now + pause if self.pause else 0.0
            if self.failures == 1:
                log.exception("%s failed; retrying with backoff, supervision goes on", self.name)
            return
        if self.failures:
            log.warning("%s works again after %d failed attempts", self.name, self.failures)
            self.failures = 0
