"""corral chaos, the pure parts: scenario specs, phase windows over the per-second series,
verdicts, cross-checks, /proc/net/tcp parsing, argv validation and the report."""

from __future__ import annotations

import io
import json
import math

import pytest

from corral.bench.result import SecondStats
from corral.bench.sla import evaluate, parse_sla
from corral.chaos.cli import EXIT_OK, EXIT_USAGE, main, parse_args
from corral.chaos.report import render_text, report_dict
from corral.chaos.scenarios import Facts
from corral.chaos.session import Phase, Report, planned_max_time
from corral.chaos.spec import (
    DEFAULT_WORKER_TIMEOUT_S,
    SCENARIOS,
    ScenarioSpec,
    action_times,
    parse_scenario,
)
from corral.chaos.target import established_inodes, serve_command
from corral.chaos.verdicts import (
    Expectation,
    cross_checks,
    latency_within,
    phase_ok,
    stats_delta,
    window_stats,
)
from corral.stats.scoreboard import PUBLISH_AFTER_S


def second(s: int, requests: int, latency_us: int = 1000, **errors: int) -> SecondStats:
    return SecondStats(s, requests=requests, errors=dict(errors), latency_us={latency_us: requests})


SERIES = [
    second(0, 100),
    second(1, 100),
    second(2, 90, reset=3),
    second(3, 100, latency_us=50_000, non_2xx=2),
    second(4, 7),  # the partial second the stop leaves
]


# ------------------------------------------------------------------ scenarios


def test_parse_scenario_forms() -> None:
    assert parse_scenario("kill") == [ScenarioSpec("kill")]
    assert parse_scenario("kill:2.5") == [ScenarioSpec("kill", 2.5)]
    assert parse_scenario("slowloris:100") == [ScenarioSpec("slowloris", 100.0)]
    assert [s.name for s in parse_scenario("all")] == list(SCENARIOS)
    assert ScenarioSpec("reload", 2.0).label == "reload:2"


@pytest.mark.parametrize(
    "text",
    [
        "explode",
        "kill:",
        "kill:x",
        "kill:0",
        "kill:-1",
        "hang:3",
        "scale:1",
        "all:2",
        "slowloris:1.5",
    ],
)
def test_parse_scenario_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_scenario(text)


def test_action_times() -> None:
    assert action_times(10.0, 13.0, None) == [10.0]
    assert action_times(10.0, 13.0, 1.0) == [10.0, 11.0, 12.0]
    assert action_times(10.0, 12.4, 1.0) == [10.0, 11.0]  # not in the last half second
    assert action_times(10.0, 10.2, 1.0) == [10.0]  # always at least once
    assert len(action_times(0.0, 1e9, 0.001)) == 1000  # bounded


# ------------------------------------------------------------------ windows


def test_window_attribution_is_by_whole_second() -> None:
    baseline = window_stats(SERIES, 0, 2)
    fault = window_stats(SERIES, 2, 4)
    tail = window_stats(SERIES, 4, None)
    assert (baseline.seconds, baseline.requests, baseline.error_total) == (2, 200, 0)
    assert (fault.seconds, fault.requests, fault.failed, fault.error_total) == (2, 190, 3, 5)
    assert fault.errors == {"reset": 3, "non_2xx": 2}
    assert fault.ok_responses == 188
    assert (tail.seconds, tail.requests) == (1, 7)
    everything = window_stats(SERIES, 0, None)
    assert everything.requests == baseline.requests + fault.requests + tail.requests


def test_window_latency_percentiles_and_measures() -> None:
    fault = window_stats(SERIES, 2, 4)
    assert fault.latency_ms(40) == pytest.approx(1.0, rel=0.01)  # 90 of 190 at 1 ms
    assert fault.latency_ms(50) == pytest.approx(50.0, rel=0.01)
    assert fault.latency_ms(99) == pytest.approx(50.0, rel=0.01)
    assert fault.max_ms() == pytest.approx(50.0, rel=0.01)
    m = fault.measures()
    assert (m.requests, m.failed, m.errors, m.rps) == (190, 3, 5, 95.0)
    assert window_stats(SERIES, 9, None).measures().rps == 0.0
    assert window_stats([], 0, None).max_ms() == 0.0


# ------------------------------------------------------------------ verdicts


def test_phase_ok() -> None:
    assert phase_ok(0, 0, [])
    assert phase_ok(4, 4, [Expectation("x", True)])
    assert not phase_ok(5, 4, [])
    assert not phase_ok(0, 0, [Expectation("replaced", False)])
    assert phase_ok(10**6, None, [])


def test_latency_within() -> None:
    assert latency_within(20.0, 2.0, 10.0, 50.0)  # inside the factor
    assert latency_within(51.0, 1.0, 10.0, 50.0)  # inside the floor
    assert not latency_within(60.0, 1.0, 10.0, 50.0)
    assert not latency_within(1001.0, 100.0, 10.0, 50.0)


def test_stats_delta_and_cross_checks() -> None:
    before = {
        "requests": 10,
        "by_status": {"2xx": 9, "5xx": 1},
        "restarts": 1,
        "recycles": {"crash": 1, "memory": 0},
    }
    after = {
        "requests": 110,
        "by_status": {"2xx": 108, "5xx": 2},
        "restarts": 3,
        "recycles": {"crash": 2, "memory": 1},
    }
    delta = stats_delta(before, after)
    assert delta == {
        "requests": 100,
        "by_status": {"2xx": 99, "5xx": 1},
        "restarts": 2,
        "recycles": {"crash": 1, "memory": 1},
    }
    assert all(c.ok for c in cross_checks(99, delta, kills=1, hangs=1))
    too_many, restarts = cross_checks(100, delta, kills=2, hangs=1)
    assert not too_many.ok and not restarts.ok
    assert cross_checks(5, None, 1, 0) == []
    # a killed worker's unpublished batch: at most PUBLISH_AFTER_S of the peak rate per kill
    lost = math.ceil(2 * 4000 * PUBLISH_AFTER_S)
    assert cross_checks(99 + lost, delta, kills=1, hangs=1, peak_rps=4000)[0].ok
    assert not cross_checks(100 + lost, delta, kills=1, hangs=1, peak_rps=4000)[0].ok


def test_report_verdict_needs_phases_sla_and_cross_checks() -> None:
    def report(errors: int, allowed: int, sla: str, cross_ok: bool = True) -> Report:
        phase = Phase("kill", 0, None, Facts(allowed=allowed, kills=1))
        phase.stats = window_stats([second(0, 100, reset=errors)], 0, None)
        totals = phase.stats
        return Report(
            "http://127.0.0.1:1/",
            2,
            8,
            None,
            [phase],
            totals,
            1.0,
            evaluate(parse_sla(sla), totals.measures()),
            None,
            [Expectation("x", cross_ok)],
            [],
        )

    assert report(3, 4, "p99<1s").ok
    assert not report(5, 4, "p99<1s").ok
    assert not report(0, 4, "p99<1us").ok
    assert not report(0, 4, "p99<1s", cross_ok=False).ok
    text = render_text(report(3, 4, "p99<1s"))
    assert "verdict: PASS" in text and "kill" in text
    doc = report_dict(report(5, 4, "p99<1s"))
    assert doc["ok"] is False
    assert doc["phases"][0]["errors"]["reset"] == 5
    assert doc["phases"][0]["allowed_errors"] == 4
    json.dumps(doc)  # serialisable


# ------------------------------------------------------------------ /proc/net/tcp


PROC_NET_TCP = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000 0 111 1
   1: 0100007F:1F90 0100007F:C350 01 00000000:00000000 00:00000000 00000000  1000 0 222 1
   2: 0100007F:1F90 0100007F:C351 01 00000000:00000000 00:00000000 00000000  1000 0 333 1
   3: 0100007F:1F90 0100007F:C352 06 00000000:00000000 00:00000000 00000000  1000 0 444 1
   4: 0100007F:C350 0100007F:1F90 01 00000000:00000000 00:00000000 00000000  1000 0 555 1
"""


def test_established_inodes_on_the_server_port_only() -> None:
    # 0x1F90 = 8080: the listener (0A), TIME_WAIT (06) and the client's end (local C350) are out
    assert established_inodes(PROC_NET_TCP, 8080) == {222, 333}
    assert established_inodes(PROC_NET_TCP, 8081) == set()
    assert established_inodes("header only\n", 8080) == set()


# ------------------------------------------------------------------ argv


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        ([], "--app"),
        (["--app", "x:app", "--sla", "p99<200"], "needs a unit"),
        (["--app", "x:app", "--scenario", "nope"], "unknown scenario"),
        (["--pid", "1"], "--pid and --url"),
        (["--pid", "1", "--url", "http://127.0.0.1:1/", "--app", "x:app"], "no --app"),
        (["--pid", "1", "--url", "http://127.0.0.1:1/", "--scenario", "bloat"], "--stats"),
        (["--app", "x:app", "-c", "0"], "connections"),
        (["--app", "x:app", "--phase-s", "0"], "phase-s"),
        (["--app", "x:app", "--bogus"], "unrecognized"),
    ],
)
def test_bad_usage_exits_2_with_one_line(argv: list[str], needle: str) -> None:
    out, err = io.StringIO(), io.StringIO()
    assert main(argv, stdout=out, stderr=err) == EXIT_USAGE
    assert needle in err.getvalue()
    assert err.getvalue().count("\n") == 1
    assert out.getvalue() == ""


def test_parse_args_defaults_and_hang_wait() -> None:
    opts, specs, objectives = parse_args(
        ["--app", "", "--scenario", "kill:1", "--scenario", "hang", "--sla", "p99<1s"]
    )
    assert [s.label for s in specs] == ["kill:1", "hang"]
    assert [o.metric for o in objectives] == ["p99"]
    assert opts.hang_wait_s == DEFAULT_WORKER_TIMEOUT_S + 10.0
    assert planned_max_time(opts, specs) > opts.phase_s * 3
    cmd = serve_command(opts, 7, bloat=True)
    assert cmd[cmd.index("--ready-fd") + 1] == "7"
    assert "--max-worker-memory-mib" in cmd and "-b" in cmd


def test_help_returns_0_without_exiting() -> None:
    out = io.StringIO()
    assert main(["--help"], stdout=out, stderr=io.StringIO()) == EXIT_OK
