"""Service-level objectives for ``corral chaos --sla``: a strict parser and a pure evaluator.

Grammar (whitespace around tokens is ignored, metric names are lower case)::

    sla     := term ("," term)*
    term    := latency ("<" | "<=") DURATION      DURATION = NUMBER ("us" | "ms" | "s")
             | "errors" ("<" | "<=") NUMBER "%"?   % of attempts, or an absolute count
             | "rps" (">" | ">=") NUMBER           responses per second over the window
    latency := "p50" | "p90" | "p99" | "p999" | "max"

Anything else is an ``SlaError`` naming the offending term: a latency without a unit, an
operator pointing the wrong way (``p99>200ms`` is never an objective), a metric twice, an
empty term. Strictness is the point: a typo in a CI gate must not pass silently.

Evaluation is a pure function of ``Measures`` (what one window of a run measured). An
``errors`` objective counts every error class the load generator knows -- failed attempts
(connect, reset, timeout, protocol) and non-2xx responses -- against all attempts. A window
with no responses misses every latency and rps objective: no data is not a pass.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

LATENCY_METRICS = ("p50", "p90", "p99", "p999", "max")
METRICS = (*LATENCY_METRICS, "errors", "rps")
_UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0}
_TERM = re.compile(r"^\s*([a-z0-9]+)\s*(<=|>=|<|>)\s*(\d+(?:\.\d+)?)\s*(us|ms|s|%)?\s*$")


class SlaError(ValueError):
    """The SLA text does not parse; the message names the term and says what is expected."""


@dataclass(frozen=True, slots=True)
class Objective:
    """One term: ``metric op threshold``. Latencies in ms; ``percent`` only for errors."""

    metric: str
    op: str
    threshold: float
    percent: bool = False
    text: str = ""

    def holds(self, actual: float) -> bool:
        """Whether ``actual`` meets this objective."""
        if self.op == "<":
            return actual < self.threshold
        if self.op == "<=":
            return actual <= self.threshold
        if self.op == ">":
            return actual > self.threshold
        return actual >= self.threshold


@dataclass(frozen=True, slots=True)
class Measures:
    """What one window of a run measured, in the units objectives use."""

    requests: int  # complete responses, any status
    failed: int  # attempts with no response
    errors: int  # failed + non-2xx
    latency_ms: dict[str, float]  # p50, p90, p99, p999, max
    rps: float

    @property
    def attempts(self) -> int:
        return self.requests + self.failed

    @property
    def error_percent(self) -> float:
        return 100.0 * self.errors / self.attempts if self.attempts else 0.0


@dataclass(frozen=True, slots=True)
class Check:
    """One objective against one window: the measured value and whether it was met."""

    objective: Objective
    actual: float | None  # None: nothing to measure (no responses)
    ok: bool

    def describe(self) -> str:
        o = self.objective
        if self.actual is None:
            return f"{o.text}: no responses -> missed"
        unit = "%" if o.percent else ("" if o.metric in ("errors", "rps") else " ms")
        value = f"{self.actual:.4g}" if o.metric != "errors" or o.percent else f"{self.actual:g}"
        return f"{o.text}: {value}{unit} -> {'met' if self.ok else 'MISSED'}"


def parse_sla(text: str) -> tuple[Objective, ...]:
    """Parse ``"p99<200ms,errors<0.1%"`` into objectives; ``SlaError`` on any mistake."""
    if not text.strip():
        raise SlaError("empty SLA: give terms like 'p99<200ms,errors<0.1%'")
    objectives: list[Objective] = []
    for raw in text.split(","):
        objective = parse_term(raw)
        if any(o.metric == objective.metric for o in objectives):
            raise SlaError(f"SLA names {objective.metric!r} twice")
        objectives.append(objective)
    return tuple(objectives)


def parse_term(raw: str) -> Objective:
    """One ``metric op value`` term."""
    match = _TERM.match(raw)
    if match is None:
        raise SlaError(
            f"bad SLA term {raw.strip()!r}: expected e.g. p99<200ms, errors<0.1%, rps>500"
        )
    metric, op, number, unit = match.groups()
    text = raw.strip()
    if metric not in METRICS:
        raise SlaError(f"unknown SLA metric {metric!r} in {text!r}; expected one of {METRICS}")
    _check_direction(metric, op, text)
    if metric in LATENCY_METRICS:
        return _latency(metric, op, float(number), unit, text)
    if metric == "errors":
        return _errors(op, number, unit, text)
    if unit is not None:
        raise SlaError(f"rps takes a plain number, not {unit!r}, in {text!r}")
    return Objective(metric, op, float(number), text=text)


def _check_direction(metric: str, op: str, text: str) -> None:
    upper_bound = metric != "rps"
    if upper_bound != op.startswith("<"):
        want = "'<' or '<='" if upper_bound else "'>' or '>='"
        raise SlaError(f"{metric} needs {want} in {text!r}")


def _latency(metric: str, op: str, number: float, unit: str | None, text: str) -> Objective:
    if unit is None or unit == "%":
        raise SlaError(f"{metric} needs a unit (us, ms or s) in {text!r}")
    return Objective(metric, op, number * _UNIT_MS[unit], text=text)


def _errors(op: str, number: str, unit: str | None, text: str) -> Objective:
    if unit == "%":
        return Objective("errors", op, float(number), percent=True, text=text)
    if unit is not None:
        raise SlaError(f"errors takes a count or a percentage, not {unit!r}, in {text!r}")
    if "." in number:
        raise SlaError(f"an absolute error count must be whole in {text!r} (or add %)")
    return Objective("errors", op, float(number), text=text)


def evaluate(objectives: tuple[Objective, ...], m: Measures) -> list[Check]:
    """Every objective against ``m``, in the order given."""
    return [_check(o, m) for o in objectives]


def _check(o: Objective, m: Measures) -> Check:
    if o.metric == "errors":
        actual = m.error_percent if o.percent else float(m.errors)
        return Check(o, actual, o.holds(actual))
    if m.requests == 0:
        return Check(o, None, False)
    actual = m.rps if o.metric == "rps" else m.latency_ms[o.metric]
    return Check(o, actual, o.holds(actual))


def all_met(checks: list[Check]) -> bool:
    return all(c.ok for c in checks)
