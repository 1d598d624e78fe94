"""The vocabulary of a chaos session: scenario names and their ``--scenario`` arguments, the
defaults, the timeouts every wait is bounded by, and ``ChaosError``. Pure; imports nothing of
the package (every other module of corral.chaos may import it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

SCENARIOS = ("kill", "hang", "bloat", "reload", "scale", "slowloris")
DEFAULT_WORKERS = 2
DEFAULT_CONNECTIONS = 8
DEFAULT_PHASE_S = 5.0
DEFAULT_WORKER_TIMEOUT_S = 2.0  # corral's --timeout-s when chaos starts the server (gunicorn 30)
DEFAULT_REQUEST_TIMEOUT_S = 10.0  # longer than a hang's timeout + the 2 s ABRT->KILL grace
DEFAULT_BLOAT_LIMIT_MIB = 64.0
DEFAULT_BLOAT_MIB = 96  # comfortably over the limit in one request
DEFAULT_SLOWLORIS = 64
SLOWLORIS_P99_FACTOR = 10.0
SLOWLORIS_P99_FLOOR_MS = 50.0  # absolute slack: a 1 ms baseline p99 would make any factor flaky
SETTLE_S = 1  # seconds after a scenario's last effect before its phase ends
ACT_DELAY_S = 0.3  # into a phase before acting, so the phase's first second is not all fault
BOOT_TIMEOUT_S = 30.0
VERIFY_TIMEOUT_S = 20.0  # a replacement worker, a reload, a scale step
STOP_GRACE_S = 15.0
HTTP_TIMEOUT_S = 3.0
POLL_S = 0.05
WORKER_TAG = "corral worker"
PROGRESS = Callable[[str], None]


class ChaosError(Exception):
    """The session cannot go on (target gone, server failed to boot); one line for the user."""


# ----------------------------------------------------------------- scenario specs (pure)


@dataclass(frozen=True, slots=True)
class ScenarioSpec:
    """One ``--scenario`` value: a name and its optional argument (seconds or a count)."""

    name: str
    arg: float | None = None

    @property
    def label(self) -> str:
        return self.name if self.arg is None else f"{self.name}:{self.arg:g}"


def parse_scenario(text: str) -> list[ScenarioSpec]:
    """``kill``, ``kill:2``, ``slowloris:100``, ``all`` (every scenario once, in order)."""
    name, sep, arg = text.strip().partition(":")
    if name == "all" and not sep:
        return [ScenarioSpec(n) for n in SCENARIOS]
    if name not in SCENARIOS:
        raise ValueError(f"unknown scenario {name!r}; expected one of {(*SCENARIOS, 'all')}")
    if not sep:
        return [ScenarioSpec(name)]
    if name in ("hang", "bloat", "scale"):
        raise ValueError(f"scenario {name!r} takes no argument")
    try:
        value = float(arg)
    except ValueError:
        raise ValueError(f"bad argument in scenario {text!r}: expected a number") from None
    if not value > 0 or (name == "slowloris" and value != int(value)):
        raise ValueError(f"bad argument in scenario {text!r}: must be a positive number")
    return [ScenarioSpec(name, value)]


def action_times(start: float, end: float, every_s: float | None) -> list[float]:
    """When a repeated action fires in ``[start, end)``: once at ``start``, or every ``every_s``
    while at least half a second of the phase is left."""
    if every_s is None:
        return [start]
    times: list[float] = []
    t = start
    while t < end - 0.5 and len(times) < 1000:
        times.append(t)
        t += every_s
    return times or [start]
