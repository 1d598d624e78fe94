"""--reload's watcher: what a scan sees and what counts as a change."""

from __future__ import annotations

import os
from pathlib import Path

from corral.master.devreload import SCAN_S, Watcher, changed, scan, watcher_for


def _tree(root: Path) -> None:
    for rel in ("app.py", "pkg/mod.py", "pkg/data.txt", ".git/hook.py", "pkg/__pycache__/x.py"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text("x")
    for rel in (".venv/lib/y.py", "venv/z.py", "lib/site-packages/dep.py"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text("x")


def test_scan_sees_project_sources_only(tmp_path: Path) -> None:
    _tree(tmp_path)
    extra = tmp_path / "conf.toml"
    seen = scan([str(tmp_path)], [str(extra)])
    assert sorted(os.path.relpath(p, tmp_path) for p in seen) == [
        "app.py",
        "conf.toml",
        "pkg/mod.py",
    ]
    assert seen[str(extra)] == -1  # missing until it is created: its creation is a change
    assert len(scan([str(tmp_path)], [], limit=1)) == 1


def test_changed_names_edits_additions_and_removals() -> None:
    before = {"a": 1, "b": 2, "c": 3}
    assert changed(before, before) == []
    assert changed(before, {"a": 1, "b": 5, "d": 1}) == ["b", "c", "d"]


def test_the_watcher_scans_once_a_second_and_not_at_first(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text("1")
    w = Watcher([str(tmp_path)], [])
    assert w.tick(100.0) == []  # the first scan is the baseline
    (tmp_path / "app.py").write_text("22")
    os.utime(tmp_path / "app.py", ns=(1, 1))
    assert w.tick(100.0 + SCAN_S / 2) == []  # not due yet
    assert w.tick(100.0 + SCAN_S) == [str(tmp_path / "app.py")]
    assert w.tick(100.0 + 2 * SCAN_S) == []


def test_watcher_for(tmp_path: Path) -> None:
    assert watcher_for(False, str(tmp_path), []) is None
    w = watcher_for(True, str(tmp_path), ["x.txt"])
    assert w is not None and w.roots == [str(tmp_path)] and w.extra == ["x.txt"]
