"""corral.bench.report and plot: the text, JSON, CSV and HTML made from a synthetic result."""

from __future__ import annotations

import csv
import io
import json
import re

import pytest

from corral.bench import plot, report
from corral.bench.config import LoadConfig
from corral.bench.result import LoadResult, ProcSummary, SecondStats, build_result

CONFIG = LoadConfig(urls=("http://127.0.0.1:8080/hello?x=1",), connections=4, requests=40)
SAMPLE = b"HTTP/1.1 200 OK\r\nServer: canned/1\r\nContent-Length: 13\r\n\r\nHello, world!"


def make_result(rate: float | None = None) -> LoadResult:
    summary = ProcSummary(
        requests=40,
        bytes_read=4000,
        errors={"non_2xx": 4, "timeout": 1},
        statuses={200: 36, 503: 4},
        connect_us={100: 3, 200: 1},
        sample=SAMPLE,
        ended=102.0,
        scheduled=45,
        dispatched=41,
        max_lag_s=0.0125,
    )
    seconds = {
        0: SecondStats(0, 30, 3000, {"non_2xx": 4}, {1000: 29, 3000: 1}),
        1: SecondStats(1, 10, 1000, {"timeout": 1}, {1500: 10}),
    }
    return build_result(summary, seconds, 100.0, 4, 1, rate, [])


def test_text_report_has_ab_sections() -> None:
    text = report.to_text(CONFIG, make_result())
    for expected in (
        "Server Software:        canned/1",
        "Server Hostname:        127.0.0.1",
        "Server Port:            8080",
        "Document Path:          /hello?x=1",
        "Document Length:        13 bytes",
        "Concurrency Level:      4",
        "Time taken for tests:   2.000 seconds",
        "Complete requests:      40",
        "Failed requests:        1",
        "Non-2xx responses:      4",
        "Total transferred:      4000 bytes",
        "Requests per second:    20.00 [#/sec] (mean)",
        "Time per request:       200.000 [ms] (mean)",
        "Time per request:       50.000 [ms] (mean, across all concurrent requests)",
        "Connection Times (ms)",
        "Percentage of the requests served within a certain time (ms)",
        "(longest request)",
        "p99.9",
        "Errors: connect 0, reset 0, timeout 1, protocol 0, non-2xx 4 (total 5)",
        "Status codes: 200: 36, 503: 4",
    ):
        assert expected in text, expected
    assert "Open model" not in text
    rows = re.findall(r"^\s+([\d.]+)%\s+([\d.]+)", text, re.MULTILINE)
    assert [p for p, _ in rows] == ["50", "66", "75", "80", "90", "95", "98", "99", "99.9", "100"]
    assert float(rows[-1][1]) == pytest.approx(3.001)  # 3000 µs bucket tops out at 3001


def test_text_report_open_model() -> None:
    text = " ".join(report.to_text(CONFIG, make_result(rate=25.0)).split())
    assert "Open model (latency from intended send time)" in text
    assert "Target rate: 25 req/s" in text
    assert "Achieved rate: 20.00 req/s" in text
    assert "Scheduled / sent: 45 / 41" in text
    assert "Max lag: 12.500 ms" in text


def test_json_schema() -> None:
    doc = json.loads(report.to_json(CONFIG, make_result()))
    assert set(report.JSON_KEYS) <= set(doc)
    assert doc["requests"] == 40
    assert doc["rps"] == 20.0
    assert doc["duration_s"] == 2.0
    assert doc["connections"] == 4
    assert doc["errors"] == {
        "connect": 0,
        "reset": 0,
        "timeout": 1,
        "protocol": 0,
        "non_2xx": 4,
        "total": 5,
    }
    lat = doc["latency_ms"]
    assert {"p50", "p90", "p99", "p999", "max"} <= set(lat)
    assert lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["p999"] <= lat["max"]
    assert doc["open_model"] is None
    assert doc["statuses"] == {"200": 36, "503": 4}
    assert [s["requests"] for s in doc["series"]] == [30, 10]
    assert doc["series"][1]["timeout"] == 1
    assert doc["connect_ms"]["count"] == 4


def test_csv_summary_and_series() -> None:
    result = make_result()
    rows = list(csv.DictReader(io.StringIO(report.to_csv_summary(CONFIG, result))))
    assert len(rows) == 1
    assert list(rows[0]) == list(report.SUMMARY_CSV_FIELDS)
    assert rows[0]["requests"] == "40" and rows[0]["non_2xx_errors"] == "4"
    series = list(csv.DictReader(io.StringIO(report.to_csv_series(result))))
    assert [r["second"] for r in series] == ["0", "1"]
    assert list(series[0]) == list(report.SERIES_CSV_FIELDS)
    assert series[1]["errors"] == "1" and series[0]["p99_ms"] == "3.001"


def test_empty_result_reports_without_failing() -> None:
    result = build_result(ProcSummary(errors={"connect": 3}, ended=1.0), {}, 0.0, 1, 1, None, [])
    text = report.to_text(CONFIG, result)
    assert "Failed requests:        3" in text
    assert "(no complete requests)" in text
    doc = report.to_json_dict(CONFIG, result)
    assert doc["latency_ms"]["max"] == 0.0
    assert plot.to_html(CONFIG, result).startswith("<!doctype html>")


def test_plot_is_self_contained() -> None:
    page = plot.to_html(CONFIG, make_result())
    assert page.count("<svg") == 2
    assert "<script" not in page
    for fetches in ("src=", "href=", "<link", "@import", "url("):  # nothing loads from elsewhere
        assert fetches not in page
    assert "second 1: 1 errors" in page  # the error tick carries its time window


def test_progress_line() -> None:
    line = report.progress_line(3.0, 12345, 2, 4115.0, 1.5)
    assert "\n" not in line
    assert "12,345 req" in line and "4,115 req/s" in line and "errors 2" in line
