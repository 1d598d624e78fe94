"""gunicorn settings for "gunicorn --preload + gc.freeze()", as the CPython docs recommend.

The ``gc.freeze()`` documentation: "If you are using Python's fork() without exec(), disabling
the garbage collector early in the parent process and freezing it right before fork() and
enabling it late in child processes" avoids copy-on-write from collections. With ``--preload``
gunicorn reads this file before importing the application, so:

* ``gc.disable()`` here, at import of the config: no collection runs while the app loads;
* ``pre_fork`` (in the master, right before each fork): ``gc.freeze()`` moves every tracked
  object into the permanent generation, which collections never scan;
* ``post_fork`` (in the worker): ``gc.enable()`` with the default thresholds.

The master keeps its collector disabled. Used by benchmarks/cow.py (server ``gunicorn-freeze``).
"""

from __future__ import annotations

import gc
from typing import Any

gc.disable()


def pre_fork(server: Any, worker: Any) -> None:
    gc.freeze()


def post_fork(server: Any, worker: Any) -> None:
    gc.enable()
