"""Pure supervision decisions: functions of what the master observed and a clock.

Nothing here reads /proc, sends a signal or looks at the time; the arbiter feeds measurements in
and applies what comes out, so every rule can be tested with synthetic inputs.
"""

from __future__ import annotations

import logging
import os
import signal
from dataclasses import dataclass

from corral.lifecycle import ExitReason
from corral.master.exitcodes import MEMORY_LIMIT

# Respawn backoff after crashes: 0.1 s doubling to 5 s (gunicorn respawns at once and can spin).
BACKOFF_BASE_S = 0.1
BACKOFF_MAX_S = 5.0
# Consecutive boot failures of one generation before it is declared broken.
MAX_BOOT_FAILURES = 3


HEALTHY_LIFETIME_S = 1.0  # a worker ready this long that dies is respawned without backoff


def crash_streak(previous: int, was_ready: bool, lived_s: float) -> int:
    """Consecutive-crash count after an unexpected exit. A worker that served for a while and was
    killed (OOM, an operator) is replaced at once: its peers are absorbing its connections. Only
    workers dying while booting or right after lengthen the streak, which is what stops a crash
    loop without slowing recovery from one-off deaths."""
    return 0 if was_ready and lived_s > HEALTHY_LIFETIME_S else previous + 1


def respawn_delay(consecutive_crashes: int) -> float:
    if consecutive_crashes <= 0:
        return 0.0
    return float(min(BACKOFF_MAX_S, BACKOFF_BASE_S * 2.0 ** (consecutive_crashes - 1)))


@dataclass(frozen=True)
class ExitInfo:
    code: int | None  # exit status, or None when killed by a signal
    signum: int | None

    def describe(self) -> str:
        if self.signum is not None:
            try:
                name = signal.Signals(self.signum).name
            except ValueError:
                name = str(self.signum)
            return f"killed by {name}"
        return f"exited with code {self.code}"


def decode_status(status: int) -> ExitInfo:
    if os.WIFSIGNALED(status):
        return ExitInfo(None, os.WTERMSIG(status))
    return ExitInfo(os.waitstatus_to_exitcode(status), None)


def exit_reason(info: ExitInfo, *, asked_to_stop: bool, timed_out: bool) -> ExitReason:
    """Why a worker went away that the master did not stop itself. A clean exit (0, or the
    default action of SIGTERM) means someone else stopped it, e.g. systemd signalling the whole
    control group: that is no crash."""
    if timed_out:
        return ExitReason.TIMEOUT
    if asked_to_stop or info.code == 0 or info.signum == signal.SIGTERM:
        return ExitReason.STOPPED
    if info.signum == signal.SIGKILL:
        return ExitReason.OOM  # nobody here sent SIGKILL: the kernel's OOM killer, probably
    return ExitReason.CRASH


def exit_message(info: ExitInfo, reason: ExitReason, asked: bool) -> tuple[int, str]:
    """(logging level, text after "worker N (pid P)") for a worker's exit: INFO when the
    master asked for it, WARNING when someone else stopped it cleanly, ERROR otherwise."""
    if asked:
        return logging.INFO, f"{info.describe()} ({reason})"
    if reason is ExitReason.OOM:
        return logging.ERROR, "was SIGKILLed by someone else: probably the OOM killer; check dmesg"
    if reason is ExitReason.STOPPED:
        return logging.WARNING, f"{info.describe()}: stopped by someone else, not by this master"
    return logging.ERROR, f"{info.describe()} ({reason})"


def stopped_itself(info: ExitInfo) -> ExitReason | None:
    """The reason a worker exited of its own accord (MEMORY: past its memory limit, see
    ``corral.worker.memguard``), or None for any other exit: an ordinary recycle, not a crash."""
    return ExitReason.MEMORY if info.signum is None and info.code == MEMORY_LIMIT else None


def is_stuck(heartbeat: float, now: float, timeout_s: float) -> bool:
    """A worker's loop writes its heartbeat at least once a second; an old one means the loop
    (usually the app, which runs on it) is blocked."""
    return heartbeat > 0 and now - heartbeat > timeout_s


def pick_scale_down(candidates: list[tuple[int, float]]) -> int | None:
    """(worker id, started_at) -> the newest worker: it has the least warm state to lose."""
    if not candidates:
        return None
    return max(candidates, key=lambda c: c[1])[0]
