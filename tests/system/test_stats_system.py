"""The stats server of a real `corral serve`: exact counts, memory that matches /proc, latency
that matches what clients saw, totals that survive recycling."""

from __future__ import annotations

import http.client
import json
import re
import statistics
import time
import urllib.request
from typing import Any

import pytest

from corral.memory.proc import read_smaps_rollup
from harness import Corral, wait_for

pytestmark = pytest.mark.slow
SAMPLE = re.compile(r"^(\w+)(\{[^}]*\})? (\S+)$")


def _stats_url(c: Corral) -> str:
    return c.wait_log("stats on http://").split("stats on ")[1].split(")")[0]


def _get(url: str) -> tuple[int, str, str]:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return resp.status, resp.headers.get("Content-Type", ""), resp.read().decode()


def _metrics(url: str) -> list[tuple[str, dict[str, str], float]]:
    out = []
    for line in _get(url + "/metrics")[2].splitlines():
        if not line or line.startswith("#"):
            continue
        match = SAMPLE.match(line)
        assert match, f"bad exposition line {line!r}"
        name, labels, value = match.groups()
        pairs = dict(re.findall(r'(\w+)="([^"]*)"', labels or ""))
        out.append((name, pairs, float(value)))
    return out


def _total(metrics: list[tuple[str, dict[str, str], float]], name: str, **want: str) -> float:
    return sum(
        v
        for n, labels, v in metrics
        if n == name and all(labels.get(k) == w for k, w in want.items())
    )


def _requests(c: Corral, paths: list[str]) -> list[float]:
    conn = http.client.HTTPConnection(c.host, c.port, timeout=10)
    timings = []
    for path in paths:
        started = time.perf_counter()
        conn.request("GET", path)
        resp = conn.getresponse()
        resp.read()
        timings.append(time.perf_counter() - started)
    conn.close()
    return timings


def test_counts_are_exact_and_memory_matches_proc(corral_factory: Any) -> None:
    c = corral_factory(
        "sysapps:app",
        "-b",
        "127.0.0.1:0",
        "-w",
        "2",
        "--stats",
        "127.0.0.1:0",
        "--memory-sample-s",
        "0.2",
    )
    url = _stats_url(c)
    _requests(c, ["/"] * 300 + ["/status/404"] * 7 + ["/status/503"] * 3)
    # workers publish their counts within ~5 ms of the last response: wait for the last batch,
    # then demand exact figures (a count past 310 fails here, one short fails the wait)
    wait_for(lambda: _total(_metrics(url), "corral_request_duration_seconds_count") >= 310)
    metrics = _metrics(url)
    assert _total(metrics, "corral_requests_total", status="2xx") == 300
    assert _total(metrics, "corral_requests_total", status="4xx") == 7
    assert _total(metrics, "corral_requests_total", status="5xx") == 3
    assert _total(metrics, "corral_request_duration_seconds_count") == 310
    assert any(n.startswith("corral_gc_collections") for n, _, _ in metrics)
    status, ctype, body = _get(url + "/stats")
    doc = json.loads(body)
    assert status == 200 and ctype.startswith("application/json")
    assert len(doc["workers"]) == 2
    assert _get(url + "/")[1].startswith("text/html")
    assert _get(url + "/healthz")[0] == 200

    def gauges_ready() -> bool:
        m = _metrics(url)
        return all(
            _total(m, "corral_worker_memory_bytes", worker=str(w["index"]), kind=k) > 0
            for w in doc["workers"]
            for k in ("rss", "pss", "uss", "shared")
        )

    wait_for(gauges_ready)
    for worker in json.loads(_get(url + "/stats")[2])["workers"]:
        mem = worker["memory"]
        actual = read_smaps_rollup(worker["pid"])
        assert abs(mem["rss"] - actual.rss) <= 0.05 * actual.rss
        # A young worker's private memory still moves by a few hundred KiB between samples.
        assert abs(mem["uss"] - actual.uss) <= max(0.10 * actual.uss, 1024 * 1024)


def test_latency_histogram_agrees_with_clients(corral_factory: Any) -> None:
    c = corral_factory("sysapps:app", "-b", "127.0.0.1:0", "-w", "1", "--stats", "127.0.0.1:0")
    url = _stats_url(c)
    timings = _requests(c, ["/slow?20"] * 40)
    client_p50_ms = statistics.median(timings) * 1000
    wait_for(lambda: json.loads(_get(url + "/stats")[2])["workers"][0]["requests"] == 40)
    worker = json.loads(_get(url + "/stats")[2])["workers"][0]
    metrics = _metrics(url)
    mean_ms = (
        _total(metrics, "corral_request_duration_seconds_sum")
        / _total(metrics, "corral_request_duration_seconds_count")
    ) * 1000
    # The server's time is the client's minus the network and client overhead; bucket error 4.4%.
    assert 19.0 <= mean_ms <= client_p50_ms + 1.0
    p50 = worker.get("p50_ms")
    if p50 is not None:  # present while the requests are inside the rate window
        assert 19.0 * 0.95 <= p50 <= client_p50_ms * 1.05


def test_totals_survive_worker_recycling(corral_factory: Any) -> None:
    c = corral_factory(
        "sysapps:app", "-b", "127.0.0.1:0", "-w", "2", "--stats", "127.0.0.1:0",
        "--max-requests", "50", "--min-worker-lifetime-s", "0",
    )  # fmt: skip
    url = _stats_url(c)
    _requests(c, ["/"] * 200)  # at least one worker passes 50 and is replaced
    c.wait_log("exited with code 0 (max-requests)")
    _requests(c, ["/"] * 100)
    wait_for(lambda: _total(_metrics(url), "corral_requests_total") >= 300)
    metrics = _metrics(url)
    assert _total(metrics, "corral_requests_total", status="2xx") == 300
    assert _total(metrics, "corral_worker_recycles_total", reason="max-requests") >= 1
