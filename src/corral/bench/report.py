"""Turning a ``LoadResult`` into what people and programs read: ab-style text, JSON, CSV.

The text report keeps ab's headings and order so side-by-side comparison is easy, with
milliseconds printed to three decimals (a loopback request takes well under one) and two
additions ab lacks: errors by class, and for the open model how far the generator fell
behind its schedule. The JSON keys are a stable interface (``JSON_KEYS``); CSV comes as one
summary row (``--csv``) or one row per second (``--csv-series``), each with a header.
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any
from urllib.parse import urlsplit

from corral.bench import framing
from corral.bench.config import LoadConfig
from corral.bench.result import ERROR_CLASSES, FAILURE_CLASSES, LoadResult, rate_per_s
from corral.bench.sla import Measures

LATENCY_PERCENTILES = (
    ("p50", 50.0),
    ("p66", 66.0),
    ("p75", 75.0),
    ("p80", 80.0),
    ("p90", 90.0),
    ("p95", 95.0),
    ("p98", 98.0),
    ("p99", 99.0),
    ("p999", 99.9),
)
AB_PERCENTILES = (50.0, 66.0, 75.0, 80.0, 90.0, 95.0, 98.0, 99.0, 99.9, 100.0)
JSON_KEYS = (
    "url",
    "model",
    "connections",
    "procs",
    "keepalive",
    "duration_s",
    "requests",
    "failed",
    "rps",
    "bytes",
    "errors",
    "statuses",
    "latency_ms",
    "connect_ms",
    "abandoned",
    "open_model",
    "server",
    "series",
    "worker_failures",
)
SUMMARY_CSV_FIELDS = (
    "url",
    "model",
    "connections",
    "procs",
    "duration_s",
    "requests",
    "failed",
    "rps",
    "p50_ms",
    "p90_ms",
    "p99_ms",
    "p999_ms",
    "max_ms",
    *(f"{name}_errors" for name in ERROR_CLASSES),
    "bytes",
)
SERIES_CSV_FIELDS = (
    "second",
    "requests",
    "errors",
    *ERROR_CLASSES,
    "p50_ms",
    "p99_ms",
    "max_ms",
    "bytes",
)


def _ms(us: float) -> float:
    return round(us / 1000.0, 3)


def latency_summary(result: LoadResult) -> dict[str, float]:
    """Latency statistics in ms, the JSON ``latency_ms`` object."""
    hist = result.histogram
    empty = hist.get_total_count() == 0
    out: dict[str, float] = {
        "min": 0.0 if empty else _ms(hist.get_min_value()),
        "mean": _ms(hist.get_mean_value()),
        "stdev": _ms(hist.get_stddev()),
    }
    for label, pct in LATENCY_PERCENTILES:
        out[label] = round(result.latency_ms(pct), 3)
    out["max"] = round(result.max_latency_ms(), 3)
    return out


def measures(result: LoadResult) -> Measures:
    """The whole run in the units ``--sla`` objectives use."""
    latency = {
        "p50": result.latency_ms(50),
        "p90": result.latency_ms(90),
        "p99": result.latency_ms(99),
        "p999": result.latency_ms(99.9),
        "max": result.max_latency_ms(),
    }
    return Measures(result.requests, result.failed, result.error_total, latency, result.rps)


def connect_summary(result: LoadResult) -> dict[str, float]:
    """Connect times in ms: ``count min mean p50 max``."""
    hist = result.connect_histogram
    count = hist.get_total_count()
    if count == 0:
        return {"count": 0, "min": 0.0, "mean": 0.0, "p50": 0.0, "max": 0.0}
    return {
        "count": count,
        "min": _ms(hist.get_min_value()),
        "mean": _ms(hist.get_mean_value()),
        "p50": _ms(hist.get_value_at_percentile(50)),
        "max": _ms(hist.get_max_value()),
    }


def open_model_summary(result: LoadResult) -> dict[str, float] | None:
    """How the open model kept to its schedule, or None for the closed model."""
    if result.rate is None:
        return None
    summary = result.summary
    return {
        "target_rate": result.rate,
        "achieved_rate": round(result.rps, 3),
        "scheduled": summary.scheduled,
        "sent": summary.dispatched,
        "behind": summary.scheduled - summary.dispatched,
        "max_lag_ms": round(summary.max_lag_s * 1000.0, 3),
    }


def server_info(config: LoadConfig, result: LoadResult) -> dict[str, Any]:
    parts = urlsplit(config.urls[0])
    sample = result.summary.sample or b""
    return {
        "software": framing.server_software(sample),
        "host": parts.hostname or "",
        "port": parts.port or 80,
        "path": (parts.path or "/") + (f"?{parts.query}" if parts.query else ""),
        "document_length": framing.document_length(sample) if sample else None,
    }


def series_rows(result: LoadResult) -> list[dict[str, Any]]:
    """One dict per second: counts, errors by class, p50/p99/max in ms."""
    rows = []
    for second in result.series:
        row: dict[str, Any] = {
            "second": second.second,
            "requests": second.requests,
            "errors": second.error_total(),
        }
        row.update({name: second.errors.get(name, 0) for name in ERROR_CLASSES})
        row["p50_ms"] = second.latency_ms(50)
        row["p99_ms"] = second.latency_ms(99)
        row["max_ms"] = second.latency_ms(100)
        row["bytes"] = second.bytes_read
        rows.append(row)
    return rows


def to_json_dict(config: LoadConfig, result: LoadResult) -> dict[str, Any]:
    """The ``--json`` document (keys in ``JSON_KEYS``)."""
    errors: dict[str, int] = dict(result.errors)
    errors["total"] = result.error_total
    return {
        "url": config.urls[0],
        "model": "closed" if result.rate is None else "open",
        "connections": result.connections,
        "procs": result.procs,
        "keepalive": config.keepalive,
        "duration_s": round(result.duration_s, 6),
        "requests": result.requests,
        "failed": result.failed,
        "rps": round(result.rps, 3),
        "bytes": result.summary.bytes_read,
        "errors": errors,
        "statuses": {str(k): v for k, v in sorted(result.summary.statuses.items())},
        "latency_ms": latency_summary(result),
        "connect_ms": connect_summary(result),
        "abandoned": result.summary.abandoned,
        "open_model": open_model_summary(result),
        "server": server_info(config, result),
        "series": series_rows(result),
        "worker_failures": list(result.worker_failures),
    }


def to_json(config: LoadConfig, result: LoadResult) -> str:
    return json.dumps(to_json_dict(config, result), indent=2)


def to_csv_summary(config: LoadConfig, result: LoadResult) -> str:
    lat = latency_summary(result)
    row: dict[str, Any] = {
        "url": config.urls[0],
        "model": "closed" if result.rate is None else "open",
        "connections": result.connections,
        "procs": result.procs,
        "duration_s": round(result.duration_s, 6),
        "requests": result.requests,
        "failed": result.failed,
        "rps": round(result.rps, 3),
        "p50_ms": lat["p50"],
        "p90_ms": lat["p90"],
        "p99_ms": lat["p99"],
        "p999_ms": lat["p999"],
        "max_ms": lat["max"],
        "bytes": result.summary.bytes_read,
    }
    row.update({f"{name}_errors": count for name, count in result.errors.items()})
    return _csv(SUMMARY_CSV_FIELDS, [row])


def to_csv_series(result: LoadResult) -> str:
    return _csv(SERIES_CSV_FIELDS, series_rows(result))


def _csv(fields: tuple[str, ...], rows: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(fields), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


# ------------------------------------------------------------------ the ab-style text


def to_text(config: LoadConfig, result: LoadResult) -> str:
    """The human report, ab's layout with corral's additions."""
    sections = [
        _server_section(config, result),
        _totals_section(config, result),
        _open_section(result),
        _connection_times_section(result),
        _percentiles_section(result),
        _errors_section(result),
    ]
    return "\n\n".join(s for s in sections if s) + "\n"


def _rows(pairs: list[tuple[str, str]]) -> str:
    return "\n".join(f"{label + ':':<24}{value}" for label, value in pairs)


def _server_section(config: LoadConfig, result: LoadResult) -> str:
    info = server_info(config, result)
    length = info["document_length"]
    return "\n\n".join(
        [
            _rows(
                [
                    ("Server Software", info["software"]),
                    ("Server Hostname", info["host"]),
                    ("Server Port", str(info["port"])),
                ]
            ),
            _rows(
                [
                    ("Document Path", info["path"] + _more_urls(config)),
                    ("Document Length", "-" if length is None else f"{length} bytes"),
                ]
            ),
        ]
    )


def _more_urls(config: LoadConfig) -> str:
    extra = len(config.urls) - 1
    return f" (and {extra} more, round-robin)" if extra else ""


def _totals_section(config: LoadConfig, result: LoadResult) -> str:
    seconds = result.duration_s
    requests = result.requests
    mean_ms = seconds * 1000.0 / requests if requests else 0.0
    kib_s = rate_per_s(result.summary.bytes_read, seconds) / 1024.0
    failures = ", ".join(f"{n.capitalize()}: {result.errors[n]}" for n in FAILURE_CLASSES)
    model = "closed loop" if result.rate is None else f"open, {result.rate:g} req/s target"
    return _rows(
        [
            ("Concurrency Level", str(result.connections)),
            ("Processes", str(result.procs)),
            ("Model", f"{model}, keep-alive {'on' if config.keepalive else 'off'}"),
            ("Time taken for tests", f"{seconds:.3f} seconds"),
            ("Complete requests", str(requests)),
            ("Failed requests", f"{result.failed}\n   ({failures})"),
            ("Non-2xx responses", str(result.errors["non_2xx"])),
            ("Abandoned in flight", str(result.summary.abandoned)),
            ("Total transferred", f"{result.summary.bytes_read} bytes"),
            ("Requests per second", f"{result.rps:.2f} [#/sec] (mean)"),
            ("Time per request", f"{mean_ms * result.connections:.3f} [ms] (mean)"),
            ("Time per request", f"{mean_ms:.3f} [ms] (mean, across all concurrent requests)"),
            ("Transfer rate", f"{kib_s:.2f} [Kbytes/sec] received"),
        ]
    )


def _open_section(result: LoadResult) -> str:
    info = open_model_summary(result)
    if info is None:
        return ""
    return "Open model (latency from intended send time)\n" + _rows(
        [
            ("  Target rate", f"{info['target_rate']:g} req/s"),
            ("  Achieved rate", f"{info['achieved_rate']:.2f} req/s"),
            ("  Scheduled / sent", f"{info['scheduled']:.0f} / {info['sent']:.0f}"),
            ("  Max lag", f"{info['max_lag_ms']:.3f} ms"),
        ]
    )


def _connection_times_section(result: LoadResult) -> str:
    header = "Connection Times (ms)\n              min    mean[+/-sd]   median      max"
    lines = [header]
    for label, hist in (("Connect", result.connect_histogram), ("Total", result.histogram)):
        if hist.get_total_count() == 0:
            lines.append(f"{label + ':':<9} {'-':>8}")
            continue
        lines.append(
            f"{label + ':':<9}"
            f"{_ms(hist.get_min_value()):>9.3f}{_ms(hist.get_mean_value()):>9.3f}"
            f"{_ms(hist.get_stddev()):>7.3f}{_ms(hist.get_value_at_percentile(50)):>9.3f}"
            f"{_ms(hist.get_max_value()):>9.3f}"
        )
    return "\n".join(lines)


def _percentiles_section(result: LoadResult) -> str:
    lines = ["Percentage of the requests served within a certain time (ms)"]
    if result.histogram.get_total_count() == 0:
        return lines[0] + "\n  (no complete requests)"
    for pct in AB_PERCENTILES:
        value = result.latency_ms(pct)
        label = f"{pct:g}%"
        suffix = " (longest request)" if pct == 100.0 else ""
        lines.append(f"  {label:>6} {value:>10.3f}{suffix}")
    lines.append(f"  p99.9 {result.latency_ms(99.9):.3f} ms, max {result.max_latency_ms():.3f} ms")
    return "\n".join(lines)


def _errors_section(result: LoadResult) -> str:
    errors = result.errors
    parts = ", ".join(f"{name.replace('_', '-')} {count}" for name, count in errors.items())
    statuses = ", ".join(f"{k}: {v}" for k, v in sorted(result.summary.statuses.items()))
    lines = [
        f"Errors: {parts} (total {result.error_total})",
        f"Status codes: {statuses or '-'}",
    ]
    lines.extend(f"Worker failure: {text}" for text in result.worker_failures)
    return "\n".join(lines)


def progress_line(elapsed_s: float, requests: int, errors: int, rps: float, p99_ms: float) -> str:
    """The one-line progress shown on stderr while a run goes."""
    return (
        f"{elapsed_s:7.1f}s {requests:>12,} req {rps:>11,.0f} req/s "
        f"p99 {p99_ms:9.3f} ms  errors {errors:,}"
    )
