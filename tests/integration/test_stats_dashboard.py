"""The dashboard in a real headless Chromium, against a StatsServer with changing data.

Chromium runs as a subprocess (``--dump-dom`` and ``--screenshot``) with a virtual time budget,
so the page's one-second polling runs several times without the test waiting in real time.
The provider advances a synthetic clock one second per /stats call, so the charts have a history
and a recycle or two to mark. The screenshot lands in ``artifacts/dashboard.png``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from corral.stats.demo import DemoFleet, LoopThread
from corral.stats.fleet import FleetSnapshot

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"
CHROMIUM_TIMEOUT_S = 60
PRIMED_SECONDS = 90
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--virtual-time-budget=6000",
]


def find_chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    if os.environ.get("CI"):
        pytest.fail("chromium is required in CI (apt-get install chromium)")
    pytest.skip("chromium not installed")


class SyntheticClock:
    """Each /stats call is one more second of fleet life."""

    def __init__(self, demo: DemoFleet, start: float) -> None:
        self.demo = demo
        self.t = start

    def __call__(self) -> FleetSnapshot:
        self.t += 1.0
        return self.demo.snapshot(self.t)


@pytest.fixture(params=[True], ids=["memory"])
def served(request: pytest.FixtureRequest) -> Iterator[tuple[str, DemoFleet]]:
    demo = DemoFleet(2, now=1000.0, seed=11, rps=120.0, recycle_every=5000, memory=request.param)
    clock = SyntheticClock(demo, 1000.0)
    for _ in range(PRIMED_SECONDS):
        clock()
    lt = LoopThread(clock).start()
    host, port = lt.address
    yield f"http://{host}:{port}/", demo
    lt.stop()
    demo.scoreboard.close()


def chromium(args: list[str]) -> subprocess.CompletedProcess[str]:
    with tempfile.TemporaryDirectory(prefix="corral-chromium-") as profile:
        return subprocess.run(
            [find_chromium(), *FLAGS, f"--user-data-dir={profile}", *args],
            capture_output=True,
            text=True,
            timeout=CHROMIUM_TIMEOUT_S,
            check=False,
        )


def text_of(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def test_dashboard_shows_every_worker(served: tuple[str, DemoFleet]) -> None:
    url, demo = served
    result = chromium(["--dump-dom", url])
    assert result.returncode == 0, result.stderr[-2000:]
    dom = result.stdout
    pids = [s.pid for s in demo.fleet.live_slots()]
    assert len(pids) == 2
    for pid in pids:
        assert f'data-pid="{pid}"' in dom, f"worker {pid} missing from the table"
    text = text_of(dom)
    assert "live" in text  # the status pill: /stats answered and rendered
    assert "worker 0" in text and "worker 1" in text  # memory rows
    assert re.search(r'id="kpi-rps">\d', dom), "requests/s not filled in"
    assert "<path" in dom and "l-rps" in dom  # the throughput line was drawn
    assert "retire" in text and "max-requests" in text  # recycles show in the event list
    assert "NaN" not in text and "undefined" not in text


def test_dashboard_screenshot(served: tuple[str, DemoFleet]) -> None:
    url, _ = served
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "dashboard.png"
    shot.unlink(missing_ok=True)
    started = time.monotonic()
    result = chromium(["--window-size=1400,1250", f"--screenshot={shot}", url])
    assert result.returncode == 0, result.stderr[-2000:]
    assert shot.exists() and shot.stat().st_size > 20_000, "screenshot missing or blank"
    assert time.monotonic() - started < CHROMIUM_TIMEOUT_S


@pytest.mark.parametrize("served", [False], ids=["no-memory"], indirect=True)
def test_dashboard_without_memory_figures(served: tuple[str, DemoFleet]) -> None:
    url, demo = served
    result = chromium(["--dump-dom", url])
    assert result.returncode == 0, result.stderr[-2000:]
    text = text_of(result.stdout)
    assert "No memory figures reported" in text
    for slot in demo.fleet.live_slots():
        assert f'data-pid="{slot.pid}"' in result.stdout
    assert "live" in text and "NaN" not in text and "undefined" not in text
