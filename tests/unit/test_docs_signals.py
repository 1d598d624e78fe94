"""docs/signals.md tied to the code: the master's signal table is HANDLED_SIGNALS, the exit-code
table is corral.master.exitcodes, and the figures quoted there are the constants."""

from __future__ import annotations

import re
import signal
from pathlib import Path

import pytest

from corral.master import exitcodes, policy
from corral.master.arbiter import ABORT_GRACE_S, HANDLED_SIGNALS

pytestmark = pytest.mark.timeout(10)

DOC = Path(__file__).resolve().parents[2] / "docs" / "signals.md"


def _tables() -> list[list[list[str]]]:
    """Each markdown table of the page as rows of cells (header and rule rows dropped)."""
    tables: list[list[list[str]]] = []
    current: list[list[str]] | None = None
    for line in DOC.read_text(encoding="utf-8").splitlines():
        if not line.startswith("|"):
            current = None
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if current is None:
            current = []
            tables.append(current)
            continue  # the header row
        if not set("".join(cells)) <= set("-: "):
            current.append(cells)
    return tables


def test_the_master_signal_table_is_handled_signals() -> None:
    master_table = _tables()[0]
    documented = {
        signal.Signals[f"SIG{name}"]
        for row in master_table
        for name in re.findall(r"`([A-Z0-9]+)`", row[0])
    }
    handled = set(HANDLED_SIGNALS) - {signal.SIGCHLD}  # SIGCHLD only wakes the loop to reap
    assert documented == handled


def test_the_exit_code_table_is_exitcodes() -> None:
    exit_table = _tables()[-1]
    documented = {int(row[0]) for row in exit_table}
    defined = {v for k, v in vars(exitcodes).items() if k.isupper() and isinstance(v, int)}
    assert documented == defined
    meanings = {int(row[0]): row[1] for row in exit_table}
    assert f"{policy.MAX_BOOT_FAILURES} in a row" in meanings[exitcodes.WORKER_BOOT_ERROR]
    assert "imported" in meanings[exitcodes.APP_LOAD_ERROR]


def test_the_grace_periods_quoted_are_the_constants() -> None:
    text = DOC.read_text(encoding="utf-8")
    assert text.count(f"after {ABORT_GRACE_S:g} s") >= 1
    assert f"`KILL` {ABORT_GRACE_S:g} s later" in text
