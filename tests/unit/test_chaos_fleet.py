"""The pure parts of ``corral chaos --fleet`` and of the locust engine: the balancer's
counters (HAProxy ``show stat``/``show servers state``, nginx log lines), the drills'
arguments, attribution and agreement, locust's CSVs, and the three renderings."""

from __future__ import annotations

import json

import pytest

from corral.bench.locust import parse_history, parse_stats, second_latency, top_up
from corral.bench.result import SecondStats, percentile_us
from corral.chaos.balancer import (
    Counts,
    by_address,
    parse_nginx_line,
    parse_servers_state,
    parse_show_stat,
    server_status,
    windows_from_log,
)
from corral.chaos.fleet import Drill, parse_fleet_scenario, parse_host
from corral.chaos.fleet_report import fleet_html, fleet_report_dict, render_fleet_text
from corral.chaos.fleet_session import FleetPhase, FleetReport, agreement, blame, finish_fleet
from corral.chaos.spec import ScenarioSpec
from corral.chaos.verdicts import WindowStats

COLS = (
    "pxname,svname,req_tot,hrsp_4xx,hrsp_5xx,econ,eresp,wretr,wredis,srv_abrt,cli_abrt,status,addr"
)
SHOW_STAT = f"""# {COLS}
stats,FRONTEND,5,0,0,,,,,,,OPEN
fe,FRONTEND,1000,1,4,,,,,,,OPEN
be,h1,400,0,0,0,3,0,10,3,0,UP
be,h2,600,0,0,2,4,2,0,0,0,DOWN
be,BACKEND,1000,1,4,2,7,2,10,3,0,UP
"""
STATE_HEAD = (
    "# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight"
    " srv_iweight srv_time_since_last_change srv_check_status srv_check_result"
    " srv_check_health srv_check_state srv_agent_state bk_f_forced_id srv_f_forced_id"
    " srv_fqdn srv_port"
)
SERVERS_STATE = f"""1
{STATE_HEAD}
3 be 1 h1 127.0.0.2 2 0 1 1 1 6 3 4 6 0 0 0 - 8001
3 be 2 h2 127.0.0.3 2 0 1 1 1 6 3 4 6 0 0 0 - 8002
"""


def test_show_stat_counts_what_clients_lost_and_who_caused_it() -> None:
    c = parse_show_stat(SHOW_STAT, None, "be")
    assert c.requests == 1000  # the stats frontend is not the service
    assert c.errors == 1 + 4 + 3  # 4xx + 5xx answered, + responses the server cut (srv_abrt)
    assert c.servers["h1"]["eresp"] == 3 and c.servers["h2"]["econ"] == 2
    named = by_address(c, parse_servers_state(SERVERS_STATE, "be"))
    assert set(named.servers) == {"127.0.0.2:8001", "127.0.0.3:8002", "be/BACKEND"}
    assert server_status(SHOW_STAT, "be") == {"h1": "UP", "h2": "DOWN"}
    with pytest.raises(Exception, match="no frontend"):
        parse_show_stat(SHOW_STAT, "nope", None)


def test_counts_subtract_per_window() -> None:
    a = Counts(10, 1, {"x": {"eresp": 1}})
    b = Counts(25, 4, {"x": {"eresp": 3}, "y": {"eresp": 1}})
    d = b.minus(a)
    assert (d.requests, d.errors, d.servers) == (15, 3, {"x": {"eresp": 2}, "y": {"eresp": 1}})


def test_nginx_lines_split_by_their_own_time() -> None:
    lines = [
        parse_nginx_line("100.5 200 127.0.0.2:8001 200"),
        parse_nginx_line("101.2 502 127.0.0.3:8002, 127.0.0.2:8001 502, 200"),
        parse_nginx_line("102.0 200 127.0.0.2:8001 200"),
    ]
    assert parse_nginx_line("garbage") is None and parse_nginx_line("x 200 -") is None
    no_live = parse_nginx_line("101.5 502 corral 502 0.000")  # nginx had no server to try
    assert no_live is not None and no_live.upstream == "-"
    parsed = [x for x in lines if x is not None]
    assert parsed[1].upstream == "127.0.0.3:8002"  # charged to the first upstream tried
    first, second = windows_from_log(parsed, [(100.0, 101.0), (101.0, 103.0)])
    assert (first.requests, first.errors) == (1, 0)
    assert (second.requests, second.errors) == (2, 1)
    assert second.servers["127.0.0.3:8002"]["hrsp_5xx"] == 1
    closed = [x for x in [parse_nginx_line("102.5 499 127.0.0.2:8001 - 0.004")] if x]
    (gave_up,) = windows_from_log(closed, [(102.0, 103.0)])
    assert (gave_up.requests, gave_up.errors) == (1, 0)  # the client's own close, not nginx's


def test_drill_and_host_arguments() -> None:
    assert parse_fleet_scenario("stop-host:2") == [ScenarioSpec("stop-host", 2.0)]
    assert parse_fleet_scenario("all")[0].name == "roll-restart"
    for bad in ("roll-hup:3", "stop-host:x", "stop-host:0", "nuke"):
        with pytest.raises(ValueError):
            parse_fleet_scenario(bad)
    assert parse_host("127.0.0.2:8001=42") == ("127.0.0.2:8001", 42)
    with pytest.raises(ValueError):
        parse_host("127.0.0.2=42")


def _window(requests: int, errors: int) -> WindowStats:
    return WindowStats(1, requests, {"reset": errors}, {1000: requests})


def test_agreement_and_blame_can_fail() -> None:
    st = _window(1000, 10)
    assert all(e.ok for e in agreement(st, Counts(1012, 10), inflight=4, boundaries=2))
    bad = agreement(st, Counts(1010, 3), inflight=4, boundaries=2)
    assert [e.ok for e in bad] == [False, True]
    phase = FleetPhase("kill-host", 0, 3, Drill(victims=["127.0.0.2:8001"]), stats=st)
    phase.balancer = Counts(1010, 10, {"127.0.0.3:8002": {"eresp": 10}})
    charged, checks = blame(phase)
    assert charged == {"127.0.0.3:8002": 10} and not checks[0].ok  # a host never signalled
    phase.balancer = Counts(1010, 10, {"127.0.0.2:8001": {"eresp": 6}})
    charged, checks = blame(phase)  # 4 no server counter names: charged to the drill's host
    assert charged == {"127.0.0.2:8001": 10} and checks[0].ok
    phase.balancer = Counts(1010, 10, {"127.0.0.2:8001": {"eresp": 12}})
    assert blame(phase)[0] == {"127.0.0.2:8001": 12}  # the balancer's word (it retried 2)
    phase.balancer = None
    assert blame(phase) == ({"127.0.0.2:8001": 10}, [])


def _series() -> list[SecondStats]:
    return [SecondStats(s, 100, 0, {"reset": 2} if s == 3 else {}, {800: 100}) for s in range(6)]


def _report() -> FleetReport:
    phases = [
        FleetPhase("baseline", 0, 3, Drill()),
        FleetPhase("kill-host", 3, None, Drill(allowed=4, victims=["127.0.0.2:8001"])),
    ]
    windows: list[Counts | None] = [
        Counts(300, 0),
        Counts(302, 2, {"127.0.0.2:8001": {"eresp": 2}}),
    ]
    from corral.bench.sla import parse_sla

    totals, agree, sla = finish_fleet(
        phases, windows, Counts(602, 2), _series(), parse_sla("p99<5ms,errors<1%"), 4
    )
    return FleetReport(
        "http://127.0.0.1:8000/", ["127.0.0.2:8001"], "-c 4", "haproxy", phases, totals,
        Counts(602, 2), agree, sla, _series(), 6.0, [],
    )  # fmt: skip


def test_report_renders_the_per_phase_verdict_three_ways() -> None:
    r = _report()
    assert r.ok, render_fleet_text(r)
    text = render_fleet_text(r)
    assert "kill-host" in text and "charged to 127.0.0.2:8001 2" in text and "PASS" in text
    doc = json.loads(json.dumps(fleet_report_dict(r)))
    kill = doc["phases"][1]
    assert kill["error_total"] == 2 and kill["balancer"]["errors"] == 2
    assert kill["charged_to"] == {"127.0.0.2:8001": 2} and kill["sla_ok"]
    assert 99.0 < kill["availability_percent"] < 100.0
    assert kill["error_percent"] == pytest.approx(100.0 - kill["availability_percent"])
    assert kill["latency_ms"]["p99"] > 0 and kill["sla"][0]["objective"] == "p99<5ms"
    page = fleet_html(r)
    assert page.startswith("<!doctype html>") and page.count("<tr>") == 3
    assert "kill-host" in page and "#e8f4e8" in page


PCTS = "50%,66%,75%,80%,90%,95%,98%,99%,99.9%,99.99%,100%"
HIST_HEAD = (
    f"Timestamp,User Count,Type,Name,Requests/s,Failures/s,{PCTS},"
    "Total Request Count,Total Failure Count"
)
HISTORY = f"""{HIST_HEAD}
1000,0,,Aggregated,0,0,N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A,0,0
1001,4,GET,/,0,0,2,2,2,2,3,3,4,5,6,7,8,90,0
1001,4,,Aggregated,0,0,2,2,2,2,3,3,4,5,6,7,8,100,0
1002,4,,Aggregated,0,0,2,2,2,2,3,3,4,50,60,70,80,300,5
"""
STATS_HEAD = (
    "Type,Name,Request Count,Failure Count,Median Response Time,Average Response Time,"
    f"Min Response Time,Max Response Time,Average Content Size,Requests/s,Failures/s,{PCTS}"
)
STATS = f"""{STATS_HEAD}
GET,/,250,4,2,2.1,0.5,81.0,10,120.0,2,2,2,2,2,3,3,4,40,60,80,81
GET,/x,60,1,2,2.1,0.5,9.0,10,30.0,0.5,2,2,2,2,3,3,4,5,9,9,9
,Aggregated,310,5,2,2.1,0.5,81.0,10,150.0,2.5,2,2,2,2,3,3,4,30,60,80,81
"""


def test_locust_csv_becomes_endpoints_and_a_series() -> None:
    endpoints = parse_stats(STATS)
    assert [e.name for e in endpoints] == ["/", "/x", "Aggregated"]
    home = endpoints[0]
    assert (home.requests, home.failures, home.percentiles_ms["99%"]) == (250, 4, 40.0)
    m = home.measures()
    assert m.error_percent == pytest.approx(1.6) and m.latency_ms["p99"] == 40.0
    series = parse_history(HISTORY, t0_wall=999.5)
    assert [(s.second, s.requests, s.errors.get("non_2xx", 0)) for s in series] == [
        (0, 100, 0),
        (1, 200, 5),
    ]
    assert percentile_us(series[1].latency_us, 99) // 1000 == 50  # locust's p99 of that second
    top_up(series, endpoints[-1])
    assert sum(s.requests for s in series) == 310
    assert sum(sum(second_latency(n, {"50%": "1"}).values()) for n in (1, 7, 99)) == 107
