"""``--reload`` for development: a new generation when a source file changes.

Theory of operation. Once a second the master stats the Python files under the app's directory
(``--chdir``, else the working directory) and the ``--reload-extra-file`` paths, and compares
their modification times with the last scan (:class:`Watcher`, pure). A change asks for what
HUP does: a new zygote imports the new code, its workers start, then the old generation drains.
So ``--reload`` works with any number of workers, no request fails across it, and a file saved
with a syntax error leaves the old generation serving (the log says why) until the next save.
The walk skips hidden directories, ``__pycache__``, virtual environments and ``site-packages``,
and stops at ``MAX_FILES`` (a warning says so): polling is for a project, not a filesystem.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable

log = logging.getLogger("corral.master")

SCAN_S = 1.0
MAX_FILES = 20_000
SUFFIXES = (".py", ".pyi")
_SKIP = frozenset({"__pycache__", "site-packages", "node_modules", "venv", "env"})

Stamps = dict[str, int]  # path -> st_mtime_ns (-1: missing)


def scan(roots: Iterable[str], extra: Iterable[str], limit: int = MAX_FILES) -> Stamps:
    """Modification times of the Python files under ``roots`` and of the ``extra`` files."""
    stamps: Stamps = {}
    for path in extra:
        stamps[os.path.abspath(path)] = _mtime(path)
    for root in roots:
        for folder, dirs, files in os.walk(root):
            dirs[:] = [d for d in dirs if not (d.startswith(".") or d in _SKIP)]
            for name in files:
                if name.endswith(SUFFIXES):
                    path = os.path.join(folder, name)
                    stamps[path] = _mtime(path)
                    if len(stamps) >= limit:
                        return stamps
    return stamps


def _mtime(path: str) -> int:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return -1


class Watcher:
    """Compares scans; ``changed`` names what differs from the previous one."""

    def __init__(self, roots: list[str], extra: list[str], limit: int = MAX_FILES) -> None:
        self.roots, self.extra, self.limit = roots, extra, limit
        self.next_scan = 0.0
        self.stamps: Stamps | None = None
        self.warned = False

    def tick(self, now: float) -> list[str]:
        """Scan when due; the files that changed, appeared or went since the last scan."""
        if now < self.next_scan:
            return []
        self.next_scan = now + SCAN_S
        stamps = scan(self.roots, self.extra, self.limit)
        if len(stamps) >= self.limit and not self.warned:
            self.warned = True
            log.warning("--reload watches the first %d files only", self.limit)
        before, self.stamps = self.stamps, stamps
        return [] if before is None else changed(before, stamps)


def changed(before: Stamps, after: Stamps) -> list[str]:
    """Paths whose stamp differs, or that are in one scan only, sorted."""
    return sorted(p for p in before.keys() | after.keys() if before.get(p) != after.get(p))


def watcher_for(reload: bool, chdir: str, extra: list[str]) -> Watcher | None:
    if not reload:
        return None
    return Watcher([os.path.abspath(chdir or os.getcwd())], list(extra))
