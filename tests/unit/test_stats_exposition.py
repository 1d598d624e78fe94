"""Prometheus text 0.0.4 and the /stats JSON, checked against a tiny parser and a schema."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from corral.stats.exposition import render_json, render_prometheus, shared_ratio
from corral.stats.fleet import Fleet, FleetSnapshot
from corral.stats.protocol import WorkerState
from corral.stats.scoreboard import Scoreboard

NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL = r'[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*"'
VALUE = r"(?:[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?|[+-]Inf|NaN)"
SAMPLE = re.compile(rf"^({NAME})(?:\{{((?:{LABEL})(?:,{LABEL})*)?\}})? ({VALUE})$")
HELP = re.compile(rf"^# HELP ({NAME}) .+$")
TYPE = re.compile(rf"^# TYPE ({NAME}) (counter|gauge|histogram|summary|untyped)$")
LABEL_PAIR = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')
SUFFIXES = {"histogram": ("_bucket", "_sum", "_count"), "summary": ("_sum", "_count", "")}


@dataclass
class Family:
    kind: str
    help: bool = False
    samples: list[tuple[str, dict[str, str], float]] = field(default_factory=list)


def parse(text: str) -> dict[str, Family]:
    """Parse text format 0.0.4 strictly enough to reject what Prometheus would reject."""
    assert text.endswith("\n")
    families: dict[str, Family] = {}
    current: str | None = None
    for line in text.splitlines():
        if m := HELP.match(line):
            current = m.group(1)
            assert current not in families, f"duplicate family {current}"
            families[current] = Family(kind="untyped", help=True)
        elif m := TYPE.match(line):
            assert current is not None and m.group(1) == current, f"TYPE without HELP: {line}"
            families[current].kind = m.group(2)
        else:
            m = SAMPLE.match(line)
            assert m, f"bad sample line: {line!r}"
            name, labels, value = m.group(1), m.group(2) or "", m.group(3)
            assert current is not None and _belongs(name, current, families[current].kind), line
            pairs = dict(LABEL_PAIR.findall(labels))
            families[current].samples.append((name, pairs, float(value)))
    return families


def _belongs(name: str, family: str, kind: str) -> bool:
    if kind == "counter":
        return name == family + "_total"
    return any(name == family + s for s in SUFFIXES.get(kind, ("",)))


@pytest.fixture
def snapshot() -> Iterator[FleetSnapshot]:
    board = Scoreboard.create(3)
    fleet = Fleet(board, now=0.0)
    for i, pid in enumerate((100, 101)):
        board.reset(i, pid, i, 0, 0.0)
        w = board.writer(i, claim_pid=False)
        w.set_state(WorkerState.READY)
        for n in range(50):
            w.start_request(0.0, b"GET", b"/")
            w.finish_request(0.0, 200 if n % 10 else 503, 0.0001 * (n + 1), 100, 1000)
        w.record_gc(2, 0.002)
        w.flush()
    fleet.snapshot(0.0)
    fleet.retire(board.read(1), "crash", now=1.0)
    board.reset(1, 102, 1, 1, 1.0)
    board.writer(1, claim_pid=False).start_request(1.0, b"GET", b'/q?"x"')
    fleet.set_memory(100, {"rss": 1000, "pss": 600, "uss": 400, "shared": 600, "swap": 0})
    yield fleet.snapshot(2.0)
    board.close()


def test_prometheus_text_parses_and_has_help_and_type(snapshot: FleetSnapshot) -> None:
    families = parse(render_prometheus(snapshot))
    assert all(f.help for f in families.values())
    required = {
        "corral_up": ("gauge", set()),
        "corral_requests": ("counter", {"worker", "status"}),
        "corral_request_duration_seconds": ("histogram", set()),
        "corral_requests_in_flight": ("gauge", {"worker"}),
        "corral_websockets_open": ("gauge", {"worker"}),
        "corral_worker_memory_bytes": ("gauge", {"worker", "kind"}),
        "corral_worker_recycles": ("counter", {"reason"}),
        "corral_worker_restarts": ("counter", set()),
        "corral_gc_collections": ("counter", {"generation"}),
        "corral_gc_pause_seconds": ("summary", {"generation"}),
        "corral_workers": ("gauge", {"state"}),
        "corral_bytes_received": ("counter", set()),
        "corral_bytes_sent": ("counter", set()),
    }
    for name, (kind, labels) in required.items():
        fam = families[name]
        assert fam.kind == kind, name
        assert fam.samples, name
        for sample_name, pairs, _ in fam.samples:
            if not sample_name.endswith("_bucket"):
                assert set(pairs) == labels, (sample_name, pairs)


def test_counters_include_retired_workers(snapshot: FleetSnapshot) -> None:
    families = parse(render_prometheus(snapshot))
    requests = families["corral_requests"].samples
    by = {(p["worker"], p["status"]): v for _, p, v in requests}
    assert by[("1", "2xx")] == 45 and by[("1", "5xx")] == 5  # worker 1 was retired, then replaced
    assert sum(v for _, _, v in requests) == 100
    assert families["corral_worker_restarts"].samples[0][2] == 1
    recycles = {p["reason"]: v for _, p, v in families["corral_worker_recycles"].samples}
    assert recycles["crash"] == 1 and recycles["reload"] == 0
    gc_counts = {p["generation"]: v for _, p, v in families["corral_gc_collections"].samples}
    assert gc_counts["2"] == 2
    assert families["corral_bytes_sent"].samples[0][2] == 100 * 1000


def test_histogram_buckets_are_cumulative_and_end_at_count(snapshot: FleetSnapshot) -> None:
    fam = parse(render_prometheus(snapshot))["corral_request_duration_seconds"]
    buckets = [(p["le"], v) for n, p, v in fam.samples if n.endswith("_bucket")]
    edges = [float(le) for le, _ in buckets]
    counts = [v for _, v in buckets]
    assert edges == sorted(edges) and math.isinf(edges[-1])
    assert counts == sorted(counts)
    count = next(v for n, _, v in fam.samples if n.endswith("_count"))
    assert counts[-1] == count == 100
    # 50 requests of 0.1..5 ms per worker: none at or below 50 µs, all at or below 6.4 ms
    le = dict(zip(edges, counts, strict=True))
    assert le[5e-05] == 0 and le[0.0064] == 100


def test_memory_and_workers_by_state(snapshot: FleetSnapshot) -> None:
    families = parse(render_prometheus(snapshot))
    mem = {
        (p["worker"], p["kind"]): v for _, p, v in families["corral_worker_memory_bytes"].samples
    }
    assert mem[("0", "rss")] == 1000 and mem[("0", "uss")] == 400
    assert not any(w == "1" for w, _ in mem)  # no sample for the new worker: no series
    states = {p["state"]: v for _, p, v in families["corral_workers"].samples}
    assert states == {"booting": 1, "ready": 1, "draining": 0}


def test_label_values_are_escaped() -> None:
    families = parse('# HELP x y\n# TYPE x gauge\nx{a="q\\"\\\\\\n"} 1\n')
    assert families["x"].samples[0][1] == {"a": 'q\\"\\\\\\n'}
    with pytest.raises(AssertionError):
        parse('# HELP x y\n# TYPE x gauge\nx{a="bad"quote"} 1\n')


WORKER_KEYS: dict[str, type | tuple[type, ...]] = {
    "index": int,
    "id": int,
    "pid": int,
    "generation": int,
    "state": str,
    "uptime_s": float,
    "heartbeat_age_s": float,
    "requests": int,
    "by_status": dict,
    "in_flight": int,
    "connections": int,
    "websockets": int,
    "bytes_in": int,
    "bytes_out": int,
    "rps": float,
    "errors_4xx_per_s": float,
    "errors_5xx_per_s": float,
    "p50_ms": (float, type(None)),
    "p90_ms": (float, type(None)),
    "p99_ms": (float, type(None)),
    "p999_ms": (float, type(None)),
    "memory": (dict, type(None)),
    "cow": (dict, type(None)),
    "shared_ratio": (float, type(None)),
    "memory_history": list,
    "gc": dict,
    "malloc": (dict, type(None)),
    "current": (dict, type(None)),
}
TOTALS_KEYS = {
    "requests",
    "by_status",
    "in_flight",
    "websockets",
    "bytes_in",
    "bytes_out",
    "rps",
    "errors_4xx_per_s",
    "errors_5xx_per_s",
    "p50_ms",
    "p90_ms",
    "p99_ms",
    "p999_ms",
    "lifetime_p50_ms",
    "lifetime_p99_ms",
    "gc",
    "restarts",
    "recycles",
    "workers",
}


def _is(value: object, types: type | tuple[type, ...]) -> bool:
    floaty = types is float or (isinstance(types, tuple) and float in types)
    if floaty and isinstance(value, int) and not isinstance(value, bool):
        return True  # JSON does not distinguish 1.0 from 1
    return isinstance(value, types)


def test_json_schema(snapshot: FleetSnapshot) -> None:
    doc = json.loads(render_json(snapshot))
    assert doc["version"] == 1
    assert set(doc) == {
        "version",
        "now",
        "uptime_s",
        "window_s",
        "workers",
        "totals",
        "master",
        "series",
        "events",
    }
    assert [w["pid"] for w in doc["workers"]] == [100, 102]
    for w in doc["workers"]:
        assert set(w) == set(WORKER_KEYS)
        for key, types in WORKER_KEYS.items():
            assert _is(w[key], types), (key, w[key])
        assert set(w["by_status"]) == {"1xx", "2xx", "3xx", "4xx", "5xx"}
        assert set(w["gc"]) == {"collections", "pause_s"} and len(w["gc"]["collections"]) == 3
    assert set(doc["totals"]) == TOTALS_KEYS
    assert doc["totals"]["requests"] == 100 and doc["totals"]["restarts"] == 1
    new = doc["workers"][1]
    assert new["current"]["request"] == 'GET /q?"x"' and new["memory"] is None
    assert doc["workers"][0]["shared_ratio"] == pytest.approx(0.6)
    assert doc["workers"][0]["memory_history"] == [[2.0, 600, 400]]
    assert doc["workers"][1]["memory_history"] == []
    assert [e["kind"] for e in doc["events"]] == ["retire"]
    for point in doc["series"]:
        assert set(point) == {
            "t",
            "rps",
            "p50_ms",
            "p99_ms",
            "errors_4xx_per_s",
            "errors_5xx_per_s",
        }


def test_shared_ratio_prefers_cow_page_counts() -> None:
    mem = {"rss": 100, "shared": 50}
    assert shared_ratio(mem, None) == 0.5
    assert shared_ratio(mem, {"cow_shared_pages": 3, "cow_copied_pages": 1}) == 0.75
    assert shared_ratio(None, None) is None
    assert shared_ratio({"rss": 0, "shared": 0}, None) is None
