"""The --sla grammar is strict and its evaluation exact (corral.bench.sla)."""

from __future__ import annotations

import pytest

from corral.bench.sla import Measures, Objective, SlaError, all_met, evaluate, parse_sla


def measures(
    requests: int = 1000,
    failed: int = 0,
    errors: int = 0,
    p99: float = 10.0,
    rps: float = 500.0,
) -> Measures:
    latency = {"p50": 1.0, "p90": 5.0, "p99": p99, "p999": 2 * p99, "max": 4 * p99}
    return Measures(requests, failed, errors, latency, rps)


def test_parses_every_metric_with_units() -> None:
    got = parse_sla("p50<1ms, p90<=2ms,p99<200ms,p999<1s,max<500000us,errors<0.1%,rps>=100")
    assert [(o.metric, o.op, o.threshold, o.percent) for o in got] == [
        ("p50", "<", 1.0, False),
        ("p90", "<=", 2.0, False),
        ("p99", "<", 200.0, False),
        ("p999", "<", 1000.0, False),
        ("max", "<", 500.0, False),
        ("errors", "<", 0.1, True),
        ("rps", ">=", 100.0, False),
    ]


def test_absolute_error_count() -> None:
    (o,) = parse_sla("errors<=5")
    assert (o.metric, o.op, o.threshold, o.percent) == ("errors", "<=", 5.0, False)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("", "empty"),
        ("p99<200", "needs a unit"),
        ("p99<200%", "needs a unit"),
        ("p99>200ms", "'<' or '<='"),
        ("rps<100", "'>' or '>='"),
        ("rps>100ms", "plain number"),
        ("errors<1ms", "count or a percentage"),
        ("errors<1.5", "whole"),
        ("p98<1ms", "unknown SLA metric"),
        ("P99<1ms", "bad SLA term"),
        ("p99<200ms,", "bad SLA term"),
        ("p99<1ms,p99<2ms", "twice"),
        ("p99 = 200ms", "bad SLA term"),
        ("p99<-1ms", "bad SLA term"),
        ("p99<200 ms extra", "bad SLA term"),
    ],
)
def test_rejects_bad_syntax_with_a_clear_message(text: str, needle: str) -> None:
    with pytest.raises(SlaError, match=needle):
        parse_sla(text)


def test_latency_objective_met_and_missed() -> None:
    objectives = parse_sla("p99<200ms")
    assert all_met(evaluate(objectives, measures(p99=199.9)))
    assert not all_met(evaluate(objectives, measures(p99=200.0)))
    assert all_met(evaluate(parse_sla("p99<=200ms"), measures(p99=200.0)))


def test_error_percent_counts_failed_attempts_against_all_attempts() -> None:
    # 999 responses + 1 failed attempt = 1000 attempts; 1 error = 0.1 %
    m = measures(requests=999, failed=1, errors=1)
    assert m.attempts == 1000
    (check,) = evaluate(parse_sla("errors<0.1%"), m)
    assert check.actual == pytest.approx(0.1)
    assert not check.ok
    assert all_met(evaluate(parse_sla("errors<=0.1%"), m))


def test_absolute_errors_and_rps() -> None:
    m = measures(errors=3, rps=99.0)
    checks = evaluate(parse_sla("errors<3,rps>100"), m)
    assert [c.ok for c in checks] == [False, False]
    assert [c.actual for c in checks] == [3.0, 99.0]
    assert all_met(evaluate(parse_sla("errors<4,rps>98"), m))


def test_no_responses_misses_latency_and_rps_but_not_an_error_bound() -> None:
    empty = Measures(0, 0, 0, dict.fromkeys(("p50", "p90", "p99", "p999", "max"), 0.0), 0.0)
    p99, errors, rps = evaluate(parse_sla("p99<1s,errors<1%,rps>0"), empty)
    assert (p99.actual, p99.ok) == (None, False)
    assert (errors.actual, errors.ok) == (0.0, True)
    assert (rps.actual, rps.ok) == (None, False)
    assert "no responses" in p99.describe()


def test_describe_says_met_or_missed() -> None:
    met, missed = evaluate(parse_sla("p50<2ms,p99<1ms"), measures(p99=3.0))
    assert met.describe() == "p50<2ms: 1 ms -> met"
    assert missed.describe() == "p99<1ms: 3 ms -> MISSED"


@pytest.mark.parametrize(("op", "value", "ok"), [("<", 1, True), ("<", 2, False), (">", 3, True)])
def test_objective_operators(op: str, value: float, ok: bool) -> None:
    assert Objective("x", op, 2.0).holds(value) is ok
