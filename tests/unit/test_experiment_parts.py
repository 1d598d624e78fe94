"""corral experiment, the pure parts: traffic sources, capacity, the verdict and the page."""

from __future__ import annotations

import importlib.util
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from corral.bench.result import LoadResult, ProcSummary, new_histogram
from corral.experiment import cli, page, render, run, servers, traffic, verdict
from corral.experiment.run import failures, fit

MIB = 1 << 20
LOG = """\
127.0.0.1 - - [04/Dec/2026:06:00:00 +0000] "GET /catalogue/?n=5 HTTP/1.1" 200 512 "-" "curl/8"
127.0.0.1 - - [04/Dec/2026:06:00:01 +0000] "POST /cart HTTP/1.1" 200 12 "-" "curl/8"
127.0.0.1 - - [04/Dec/2026:06:00:02 +0000] "GET /missing HTTP/1.1" 404 9 "-" "curl/8"
127.0.0.1 - - [04/Dec/2026:06:00:03 +0000] "GET /health HTTP/1.0" 301 0 "-" "curl/8"
garbage line
"""


def test_access_log_replays_successful_gets_in_order(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    path.write_text(LOG)
    got = traffic.load(str(path))
    assert got.kind == "log"
    assert got.paths == ("/catalogue/?n=5", "/health")
    assert "2 requests" in got.describe()


def test_access_log_is_bounded() -> None:
    line = '1.2.3.4 - - [x] "GET /a HTTP/1.1" 200 1 "-" "-"\n'
    assert len(traffic.parse_access_log(line * 50, limit=7)) == 7


def test_urls_list_and_file(tmp_path: Path) -> None:
    assert traffic.load("/a, http://h:1/b?c=1").paths == ("/a", "/b?c=1")
    assert traffic.load(None).paths == ("/",)
    listed = tmp_path / "urls.txt"
    listed.write_text("# paths\n/x\nhttp://example/y\n")
    assert traffic.load(str(listed)).paths == ("/x", "/y")


def test_unreadable_traffic_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(traffic.TrafficError, match="cannot read traffic file"):
        traffic.load(str(tmp_path / "nope.log"))
    with pytest.raises(traffic.TrafficError, match="not a path or http URL"):
        traffic.load("ftp://x/y")
    (tmp_path / "logs").mkdir()
    for named in (tmp_path / "logs" / "access.log.1", tmp_path / "logs", "logs/access.1"):
        with pytest.raises(traffic.TrafficError, match=f"cannot read traffic file {named}"):
            traffic.load(str(named))
    assert traffic.load("/products/42").paths == ("/products/42",)  # a URL path, not a file
    assert traffic.load("/health?x=/y").paths == ("/health?x=/y",)


def test_locustfile_needs_locust(tmp_path: Path) -> None:
    locustfile = tmp_path / "locustfile.py"
    locustfile.write_text("from locust import HttpUser\n")
    if importlib.util.find_spec("locust"):
        assert traffic.load(str(locustfile)).kind == "locust"
    else:
        with pytest.raises(traffic.TrafficError, match="but locust is not installed here"):
            traffic.load(str(locustfile))


def test_fit_is_budget_less_baseline_over_worker_cost() -> None:
    assert fit(1000 * MIB, 200 * MIB, 10 * MIB) == 80
    assert fit(100 * MIB, 200 * MIB, 10 * MIB) == 0
    assert fit(100 * MIB, 0, 0) == 0


def _config(name: str, kind: str, uss_mib: float, shared_pct: float, p99: float) -> dict[str, Any]:
    workers = [
        {
            "pid": 10 + i,
            "rss": 100 * MIB,
            "pss": 60 * MIB,
            "uss": int(uss_mib * MIB),
            "shared": 90 * MIB,
            "prefork_shared_pct": shared_pct,
        }
        for i in range(2)
    ]
    start = [{**w, "uss": MIB, "shared": 99 * MIB} for w in workers]
    return {
        "name": name,
        "kind": kind,
        "samples": [
            {"requests": 0, "t": 0.0, "workers": start, "fleet_pss": 200 * MIB},
            {"requests": 100, "t": 1.0, "workers": workers, "fleet_pss": 220 * MIB},
        ],
        "load": {
            "requests": 100,
            "rps": 50.0,
            "p50_ms": 1.0,
            "p99_ms": p99,
            "cdf": [[0.5, 0], [1.0, 50], [p99, 99], [p99 * 2, 100]],
        },
        "gc": {"collections": [3, 1, 0], "pause_s": [0.001, 0.001, 0.0], "mean_pause_ms": 0.5},
        "malloc": [],
        "attribution": {
            "pid": 10,
            "copied_bytes": 3 * MIB,
            "types": [{"name": "builtins.code", "bytes": 2 * MIB, "objects": 9}],
            "modules": [],
        },
    }


def _report(configs: list[dict[str, Any]]) -> dict[str, Any]:
    for c in configs:
        c["summary"] = verdict.summarise(c, 8 << 30)
        c["malloc_summary"] = render.malloc_summary(c)
    rec = verdict.recommend(configs, "app:app", 2, ".")
    group = {"python": "py", "version": "3.13.0", "configs": configs, "recommendation": rec}
    return {"app": "app:app", "traffic": "URLs /", "workers": 2, "pythons": [group]}


def test_recommendation_names_the_preset_with_the_most_workers_per_host() -> None:
    configs = [
        _config("cpython", "corral", 30, 40.0, 5.0),
        _config("auto", "corral", 5, 97.0, 4.0),
        _config("gunicorn", "gunicorn", 2, 99.0, 3.0),  # the comparison, never the advice
    ]
    report = _report(configs)
    rec = report["pythons"][0]["recommendation"]
    assert rec["preset"] == "auto"
    assert rec["command"] == "corral serve app:app -w 2 --gc auto"
    assert "`auto` keeps 97.0%" in rec["text"]
    assert "gunicorn fits" in rec["text"] and "builtins.code 2.00 MiB" in rec["text"]
    auto = configs[1]["summary"]
    assert auto["fit_workers"] == ((8 << 30) - (220 * MIB - 10 * MIB)) // (5 * MIB)


def test_latency_is_compared_with_another_configuration_never_itself() -> None:
    configs = [
        _config("cpython", "corral", 5, 97.0, 4.0),
        _config("auto", "corral", 30, 40.0, 5.0),
        _config("gunicorn", "gunicorn", 30, 40.0, 8.0),
    ]
    text = _report(configs)["pythons"][0]["recommendation"]["text"]
    assert "`cpython` keeps" in text
    assert "p99 changes by -50.0% against `gunicorn` (4.0 ms vs 8.0 ms)" in text
    text = _report(configs[:2])["pythons"][0]["recommendation"]["text"]
    assert "p99 changes by -20.0% against `auto`" in text


def test_page_is_self_contained_with_every_chart() -> None:
    report = _report(
        [_config("cpython", "corral", 30, 40.0, 5.0), _config("auto", "corral", 5, 97, 4)]
    )
    html = page.to_html(report)
    assert "http://" not in html and "https://" not in html and "<script" not in html
    assert html.count("<svg") == 6  # memory x2, CDF, capacity, req/s and GCs over requests
    assert "--shared" in html  # the dashboard's stylesheet, inlined
    assert "NaN" not in html and "corral serve app:app -w 2 --gc auto" in html


def test_cdf_axis_is_labelled_from_a_tenth_of_a_millisecond_to_the_slowest() -> None:
    configs = [_config("cpython", "corral", 30, 40.0, 5.0), _config("auto", "corral", 5, 97, 4)]
    svg = page.cdf_svg(configs)  # the slowest request: 2 x p99 = 10 ms
    labels = re.findall(r"text-anchor='middle'>([^<]+)</text>", svg)
    assert labels[0] == "0.1" and labels[4] == "10", labels
    assert [float(x) for x in labels[:5]] == sorted(float(x) for x in labels[:5])


def test_over_requests_charts_plot_each_slice_and_the_collections_so_far() -> None:
    c = _config("auto", "corral", 5, 97, 4)
    c["samples"][0]["gc"] = {"collections": [0, 0, 0]}
    c["samples"][1]["slice"] = {"requests": 100, "rps": 250.0, "p50_ms": 1.0, "p99_ms": 4.0}
    c["samples"][1]["gc"] = {"collections": [7, 2, 1]}
    rps = page.over_requests_svg([c], "rps")
    gcs = page.over_requests_svg([c], "gc")
    assert rps.count("<polyline") == 1 and gcs.count("<polyline") == 1
    assert ">275</text>" in rps  # the axis tops at 1.1 x the fastest slice
    assert ">11</text>" in gcs  # 10 collections so far, axis at 1.1x


def test_a_file_that_is_neither_a_log_nor_urls_is_refused_naming_the_line(tmp_path: Path) -> None:
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"/ok\n\x00\x9f binary \xff\n")
    with pytest.raises(traffic.TrafficError) as got:
        traffic.load(str(junk))
    assert "neither a combined-format access log nor one URL a line" in str(got.value)
    assert "line 2:" in str(got.value) and "\n" not in str(got.value)
    errors_only = tmp_path / "errors.log"
    errors_only.write_text(LOG.replace('" 200 ', '" 500 ').replace('" 301 ', '" 404 '))
    with pytest.raises(traffic.TrafficError, match="has no GET request answered 2xx or 3xx"):
        traffic.load(str(errors_only))


def test_urls_are_described_as_urls_not_requests() -> None:
    assert traffic.load("/").describe() == "URLs /: 1 URL, 1 distinct path, sent in turn"
    assert "2 URLs, 1 distinct path," in traffic.load("/a,/a").describe()
    assert traffic.load("/tmp?x=1").paths == ("/tmp?x=1",)  # a query: a URL, not the folder


def test_a_failed_start_names_the_error_not_the_exit() -> None:
    log = (
        "2026-12-04 21:22:38,429 [29752] [INFO] corral.master: generation 1: loading x:nope\n"
        "Traceback (most recent call last):\n"
        "AttributeError: module 'x' has no attribute 'nope'\n"
        "2026-12-04 21:22:38,553 [29752] [ERROR] corral.master: app 'x:nope': x has no "
        "attribute 'nope'\n"
        "2026-12-04 21:22:38,553 [29752] [INFO] corral.master: master exiting with code 4\n"
    )
    assert servers.why_failed(log) == "app 'x:nope': x has no attribute 'nope'"
    gunicorn = "[2026-12-04 21:22:57 +0000] [30101] [ERROR] Exception in worker process\n"
    assert servers.why_failed(gunicorn) == "Exception in worker process"
    assert servers.why_failed("corral serve: error: unrecognized arguments: --bogus\n") == (
        "corral serve: error: unrecognized arguments: --bogus"
    )


def _failing(c: dict[str, Any], n: int) -> dict[str, Any]:
    c["load"]["statuses"] = {"200": 100 - n, "404": n}
    c["load"]["error_classes"] = {"non_2xx": n, "reset": 1}
    return c


def test_failed_requests_are_counted_and_never_favoured() -> None:
    assert failures({"statuses": {"200": 5, "302": 3}, "error_classes": {"non_2xx": 3}}) == 0
    assert failures({"statuses": {"500": 2}, "error_classes": {"non_2xx": 2, "timeout": 1}}) == 3
    configs = [
        _config("cpython", "corral", 30, 40.0, 5.0),
        _failing(_config("auto", "corral", 5, 97.0, 4.0), 40),  # fits more, but answered 404s
    ]
    rec = _report(configs)["pythons"][0]["recommendation"]
    assert rec["preset"] == "cpython"
    assert "`auto` 41 of 100 (404 x40, reset x1)" in rec["text"]
    assert "measure error pages" in rec["text"]


def test_recommendation_says_tie_and_when_gunicorn_fits_more() -> None:
    configs = [
        _config("cpython", "corral", 10.1, 80.0, 5.0),
        _config("auto", "corral", 10.0, 81.0, 4.0),
        _config("gunicorn", "gunicorn", 5, 90.0, 3.0),
    ]
    text = _report(configs)["pythons"][0]["recommendation"]["text"]
    assert "`cpython` fit within 2% of that: a tie" in text
    assert "gunicorn --preload fits more" in text and "no corral preset beats it" in text
    configs[2] = _config("gunicorn", "gunicorn", 50, 20.0, 3.0)
    text = _report(configs)["pythons"][0]["recommendation"]["text"]
    assert "gunicorn --preload fits more" not in text


def test_production_command_carries_the_measured_serve_args() -> None:
    cmd = verdict.production_command("a:b", 4, "auto", "/srv/app", ["--warmup=/", "-t", "30"])
    assert cmd == "corral serve a:b -w 4 --gc auto --chdir /srv/app --warmup=/ -t 30"


def test_report_files_and_budget_are_checked_before_any_server_starts(tmp_path: Path) -> None:
    cli.check_outputs(str(tmp_path / "r.json"), None, "")
    for bad, why in (
        (tmp_path, "it is a directory"),
        (tmp_path / "no" / "r.json", f"no directory {tmp_path / 'no'}"),
    ):
        with pytest.raises(cli.ExperimentError, match=re.escape(f"cannot write {bad}: {why}")):
            cli.check_outputs(str(bad))
    args = cli._parser().parse_args(["a:b", "--budget-gib", "-1"])
    with pytest.raises(cli.ExperimentError, match="--budget-gib must be > 0"):
        cli.spec_from_args(args)


def test_python_that_is_not_a_python_is_refused_in_one_line() -> None:
    ls = shutil.which("ls")
    assert ls is not None
    with pytest.raises(servers.ServerError) as got:
        servers.python_version(ls)
    assert str(got.value) == f"--python {ls}: not a Python interpreter that can run corral"


def test_locust_failures_count_as_failed_requests() -> None:
    result = LoadResult(
        summary=ProcSummary(requests=10, errors={"locust_failures": 3}),
        series=[],
        started=0.0,
        duration_s=1.0,
        connections=1,
        procs=1,
        rate=None,
        histogram=new_histogram(),
        connect_histogram=new_histogram(),
    )
    load = run._load_summary([result], "locust")
    assert load["source"] == "locust" and load["error_classes"]["locust_failures"] == 3
    assert failures(load) == 3
