"""A checked-in mypy probe (not a test module): tests/unit/test_settings_typed.py runs mypy on it.

Each line marked ``# expect: CODE`` must be a mypy error with that code; the others must pass.
Excluded from the project's own mypy run (pyproject ``[tool.mypy] exclude``).
"""

from __future__ import annotations

from corral import config
from corral.memory.gcpolicy import GcPreset

cfg = config.defaults()
graceful: float = cfg.graceful_timeout_s
preset: GcPreset = cfg.gc
misspelled = cfg.gracefull_timeout_s  # expect: attr-defined
wrong_type: str = cfg.workers  # expect: assignment
cfg.workers = 3  # expect: misc
