"""Fixtures for system tests; the harness itself lives in harness.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import Corral, start_corral


@pytest.fixture
def corral_factory(tmp_path: Path) -> Iterator[object]:
    started: list[Corral] = []

    def factory(*args: str, **kw: object) -> Corral:
        c = start_corral(tmp_path, *args, **kw)  # type: ignore[arg-type]
        started.append(c)
        return c

    yield factory
    for c in started:
        c.stop()
