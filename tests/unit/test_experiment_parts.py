"""corral experiment, the pure parts: traffic sources, capacity, the verdict and the page."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from corral.experiment import page, render, traffic, verdict
from corral.experiment.run import fit

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
    if shutil.which("locust"):
        assert traffic.load(str(locustfile)).kind == "locust"
    else:
        with pytest.raises(traffic.TrafficError, match="'locust' command is not installed"):
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
    assert html.count("<svg") == 4  # memory x2, CDF, capacity
    assert "--shared" in html  # the dashboard's stylesheet, inlined
    assert "NaN" not in html and "corral serve app:app -w 2 --gc auto" in html
