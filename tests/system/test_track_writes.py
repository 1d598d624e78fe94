"""--track-writes end to end: the worker credits pre-fork pages written to the request path."""

from __future__ import annotations

import json
import os
import signal
import tempfile
from pathlib import Path
from typing import Any

import pytest

from corral.memory import writetrack
from harness import wait_for, worker_pids

pytestmark = pytest.mark.slow


def test_pages_written_are_credited_to_the_path(corral_factory: Any) -> None:
    reason = writetrack.available()
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(f"userfaultfd tracking unavailable: {reason}")
        pytest.skip(reason)
    c = corral_factory("sysapps:touch_app", "-b", "127.0.0.1:0", "-w", "1", "--track-writes")
    (pid,) = worker_pids(c.pid)
    for path in ["/"] * 10 + ["/write"] * 3 + ["/"] * 10:
        assert c.get(path)[0] == 200
    report_file = Path(tempfile.gettempdir()) / f"corral-writes-{pid}.json"

    def written() -> bool:  # the worker rewrites it at most every 10 s while it runs
        try:
            rows = json.loads(report_file.read_text())["by_new_pages"]
        except (OSError, ValueError):
            return False
        return any(row["path"] == "/write" for row in rows)

    wait_for(written, timeout=30)
    report = json.loads(report_file.read_text())
    rows = {row["path"]: row for row in report["by_new_pages"]}
    assert rows["/write"]["new_pages"] > 100  # 20k dicts span hundreds of pages
    assert rows["/"]["new_pages"] < rows["/write"]["new_pages"] / 10
    c.signal(signal.SIGTERM)
    assert c.wait(15) == 0
    assert not report_file.exists()  # issue 16: a stop leaves nothing in the temp dir
    assert f"per-request writes, final (pid {pid})" in c.log()
    assert "new pages by path: /write " in c.log()
