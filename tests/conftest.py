"""Session-wide hooks: the fuzzer's one-line reports (tests/corpus/fuzz.py) in the summary,
shown whether or not output is captured, so CI logs always carry the case count."""

from __future__ import annotations

import sys

import pytest


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    fuzz = sys.modules.get("tests.corpus.fuzz")
    for line in getattr(fuzz, "REPORTS", []):
        terminalreporter.write_line(line)
