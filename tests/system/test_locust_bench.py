"""``corral bench --locustfile``: a real locust run (2 endpoints, 3 s) against a real corral
server; locust's per-endpoint statistics must reach corral's report and SLA verdict."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from harness import start_corral

pytestmark = pytest.mark.slow

LOCUSTFILE = """\
from locust import HttpUser, constant, task


class Visitor(HttpUser):
    wait_time = constant(0.01)

    @task(3)
    def home(self):
        self.client.get("/")

    @task(1)
    def other(self):
        self.client.get("/other?x=1", name="/other")
"""


def require_locust() -> None:
    if importlib.util.find_spec("locust") is None:
        if os.environ.get("CI"):
            raise AssertionError("locust is needed (pip install -e '.[test]')")
        pytest.skip("locust is not installed")


def bench(*args: str, timeout: float = 60.0) -> tuple[int, str, str]:
    proc = subprocess.run(
        [sys.executable, "-m", "corral", "bench", *args],
        capture_output=True,
        timeout=timeout,
        check=False,
    )
    return proc.returncode, proc.stdout.decode(), proc.stderr.decode()


def test_locust_endpoints_reach_the_report_and_the_sla(tmp_path: Path) -> None:
    require_locust()
    locustfile = tmp_path / "locustfile.py"
    locustfile.write_text(LOCUSTFILE)
    server = start_corral(tmp_path, "-b", "127.0.0.1:0", "-w", "2")
    try:
        rc, out, err = bench(
            "--locustfile", str(locustfile), "-c", "4", "-d", "3", "--json",
            "--sla", "p99<2s,errors<1%", server.url + "/",
        )  # fmt: skip
        assert rc == 0, out + err
        report: dict[str, Any] = json.loads(out)
        names = {e["name"]: e for e in report["endpoints"]}
        assert set(names) == {"/", "/other"}, report
        home, other = names["/"], names["/other"]
        assert home["requests"] > other["requests"] > 0  # the 3:1 task weights
        assert home["failures"] == other["failures"] == 0
        agg = report["aggregated"]
        assert agg["requests"] == home["requests"] + other["requests"]
        assert all(c["ok"] for c in agg["sla"]) and report["sla_ok"]
        assert sum(s["requests"] for s in report["series"]) == agg["requests"]
        # a missed SLA is exit 1, with the per-endpoint figures still in the text report
        rc, out, err = bench(
            "--locustfile", str(locustfile), "-c", "2", "-d", "2", "--sla", "p50<1us",
            server.url + "/",
        )  # fmt: skip
        assert rc == 1, out + err
        assert "/other" in out and "SLA p50<1us" in out and "MISSED" in out
    finally:
        server.stop()
