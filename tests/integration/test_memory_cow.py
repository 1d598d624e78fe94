"""``corral cow`` against a real server: sharing per worker, and one-shot attribution.

Starts ``python -m corral serve cowapp:app -w 1 --stats 127.0.0.1:0`` in its own session with a
test app written to ``tmp_path``: 20,000 ``PlantedRecord`` objects built at import (so they live
in the zygote's heap), which ``GET /mutate`` rewrites in the worker. Readiness comes on
``--ready-fd``; the stats address from the master's log line ``stats on http://HOST:PORT``.
``corral cow`` runs as ``python -m corral.memory.cowcli`` with a deadline.

A second test runs the attribution itself on each interpreter (3.11 ``--gc freeze``, 3.12 and
3.13 ``--gc auto``: a frozen, immortal heap) in a forked child of a script that built the heap;
a missing interpreter skips, except when ``CI`` is set: then it fails.

The planted records use ``__slots__`` so that the write lands inside each object on every
Python version (3.11 and 3.12 keep ordinary instance attributes in a separate values array,
which attribution does not map; see docs/memory.md).
"""

from __future__ import annotations

import http.client
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from corral.launch import corral_serve, start
from tests.pythons import interpreter

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
READY_TIMEOUT_S = 60.0
CLI_TIMEOUT_S = 120.0

APP_SOURCE = """
class PlantedRecord:
    __slots__ = ("name", "hits", "payload")

    def __init__(self, i):
        self.name = "record-%d" % i
        self.hits = 0
        self.payload = (i, "p%d" % i)


RECORDS = [PlantedRecord(i) for i in range(20000)]


def app(environ, start_response):
    if environ["PATH_INFO"] == "/mutate":
        for record in RECORDS:
            record.hits += 1000  # a new int each time: a real write into every record
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]
"""


INTERPRETERS = {
    "3.11": (interpreter("3.11"), "freeze"),
    "3.12": (interpreter("3.12"), "auto"),
    "3.13": (interpreter("3.13"), "auto"),
}

HEAP_SCRIPT = r"""# Build a heap with planted records, apply a --gc preset, fork, mutate, attribute.
import json, os, sys, traceback

from corral.memory import attribution, gcpolicy, proc
from corral.memory.gcpolicy import GcPreset

preset = GcPreset(sys.argv[1])
gcpolicy.begin_preload(preset)


class PlantedRecord:
    __slots__ = ("name", "hits", "payload")

    def __init__(self, i):
        self.name = "record-%d" % i
        self.hits = 0
        self.payload = (i, "p%d" % i)


FILLER = [{"k": "v%d" % i, "n": [i, str(i)]} for i in range(100_000)]
RECORDS = [PlantedRecord(i) for i in range(20_000)]
MORE = ["s%d" % i * 3 for i in range(100_000)]
report = gcpolicy.finish_preload(preset)
ranges = proc.anonymous_ranges(os.getpid())
r, w = os.pipe()
pid = os.fork()
if pid == 0:
    code = 1
    try:
        gcpolicy.in_worker(preset)
        for record in RECORDS:
            record.hits += 1000
        out = attribution.run_attribution(ranges, top=10)
        out["immortal"] = report.immortal
        os.write(w, json.dumps(out).encode())
        code = 0
    except BaseException:
        traceback.print_exc()
    finally:
        gcpolicy.fast_exit(code)
os.close(w)
chunks = []
while chunk := os.read(r, 1 << 16):
    chunks.append(chunk)
_, status = os.waitpid(pid, 0)
assert status == 0, status
print(b"".join(chunks).decode())
"""


@dataclass
class Running:
    proc: subprocess.Popen[bytes]
    host: str
    port: int
    stats: str
    log_path: Path
    env: dict[str, str]

    def get(self, path: str) -> int:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=10)
        try:
            conn.request("GET", path)
            resp = conn.getresponse()
            resp.read()
            return resp.status
        finally:
            conn.close()

    def cow(self, *args: str) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-m", "corral.memory.cowcli", *args]
        return subprocess.run(
            cmd, capture_output=True, text=True, timeout=CLI_TIMEOUT_S, env=self.env, check=False
        )

    def cow_json(self, *args: str) -> dict[str, Any]:
        done = self.cow(self.stats, "--json", *args)
        assert done.returncode == 0, done.stderr + self.log_path.read_text(errors="replace")
        result: dict[str, Any] = json.loads(done.stdout)
        return result


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Running]:
    (tmp_path / "cowapp.py").write_text(APP_SOURCE)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT / "src")]),
        "PYTHONUNBUFFERED": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    argv = corral_serve("cowapp:app", "-b", "127.0.0.1:0", "-w", "1", "--stats", "127.0.0.1:0")
    log_path = tmp_path / "corral.log"
    c = start(argv, log_path=log_path, env=env, cwd=tmp_path, timeout_s=READY_TIMEOUT_S)
    try:
        host, _, port = c.url.removeprefix("http://").rpartition(":")
        match = re.search(r"stats on http://(\S+?)\)", c.log())
        assert match, c.log()
        yield Running(c.proc, host, int(port), match.group(1), log_path, env)
    finally:
        c.stop()


def test_sharing_then_attribution(server: Running) -> None:
    before = server.cow_json()["workers"]
    assert len(before) == 1
    worker = before[0]
    assert worker["shared_pages"] > 0 and 0 < worker["shared_pct"] <= 100
    pid = worker["pid"]

    assert server.get("/mutate") == 200
    after = server.cow_json()["workers"][0]
    assert after["pid"] == pid
    # 20,000 records of 40+ bytes each: at least 0.6 MiB of pages newly copied.
    assert after["copied_pages"] - worker["copied_pages"] >= (600 << 10) // 4096

    report = server.cow_json("--attribute", str(pid), "--top", "5")
    assert report["pid"] == pid and report["ranges_from"].startswith("zygote")
    types = [entry["name"] for entry in report["types"]]
    modules = [entry["name"] for entry in report["modules"]]
    assert "cowapp.PlantedRecord" in types[:3], report["types"]
    planted = report["types"][types.index("cowapp.PlantedRecord")]
    assert planted["objects"] >= 19_000  # nearly every record sits on a copied page
    assert "cowapp" in modules[:3], report["modules"]
    assert server.get("/") == 200  # the worker keeps serving after the diagnostic


def test_errors_are_one_line(server: Running) -> None:
    done = server.cow("127.0.0.1:1", "--json")
    assert done.returncode == 1
    assert done.stderr.startswith("corral cow: no stats server answers") and "Traceback" not in (
        done.stderr
    )
    done = server.cow(server.stats, "--attribute", "999999999")
    assert done.returncode == 1 and "no worker with pid or id" in done.stderr
    done = server.cow(server.stats, "--top", "-1")
    assert done.returncode == 2


@pytest.mark.parametrize("version", sorted(INTERPRETERS))
def test_attribution_on_frozen_heap(version: str, tmp_path: Path) -> None:
    python, preset = INTERPRETERS[version]
    if not python.exists():
        message = f"Python {version} not found at {python}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    script = tmp_path / "heap_script.py"
    script.write_text(HEAP_SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    done = subprocess.run(
        [str(python), str(script), preset],
        env=env,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["python"].startswith(version)
    assert report["immortal"] == (preset == "auto")
    types = [entry["name"] for entry in report["types"]]
    assert "__main__.PlantedRecord" in types[:3], report["types"]
    planted = report["types"][types.index("__main__.PlantedRecord")]
    assert planted["objects"] >= 19_000, planted
    assert report["attributed_bytes"] <= report["copied_bytes"]
