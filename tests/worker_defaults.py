"""WorkerSettings as production builds them, for tests that run a worker in-process.

``WorkerSettings`` has no defaults of its own: a test gets the values ``corral serve`` runs with
(``config.defaults()`` through the master's own translation) and changes only what it tests.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from corral import config
from corral.master.worker_settings import worker_settings
from corral.worker.settings import WorkerSettings


def production_worker_settings(**changes: Any) -> WorkerSettings:
    """What a worker of ``corral serve`` with no options gets, with ``changes`` applied."""
    return dataclasses.replace(worker_settings(config.defaults()), **changes)
