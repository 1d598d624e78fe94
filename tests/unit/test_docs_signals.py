"""docs/signals.md tied to the code: the master's signal table is HANDLED_SIGNALS, the worker's
table is what both worker loops install (the epoll loop's SignalFlags, the asyncio worker's
loop handlers, faulthandler for ABRT), the exit-code table is corral.master.exitcodes, and the
figures quoted there are the constants."""

from __future__ import annotations

import ast
import asyncio
import re
import signal
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import TypeVarTuple

import pytest

from corral.master import exitcodes, policy
from corral.master.arbiter import ABORT_GRACE_S, HANDLED_SIGNALS
from corral.worker import aio, loop
from corral.worker.signals import SignalFlags

pytestmark = pytest.mark.timeout(10)

DOC = Path(__file__).resolve().parents[2] / "docs" / "signals.md"
MASTER_TABLE, WORKER_TABLE = 0, 1
_Ts = TypeVarTuple("_Ts")


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


def _documented(table: int) -> set[signal.Signals]:
    """The signals named in the first column of one of the page's tables."""
    return {
        signal.Signals[f"SIG{name}"]
        for row in _tables()[table]
        for name in re.findall(r"`([A-Z0-9]+)`", row[0])
    }


def test_the_master_signal_table_is_handled_signals() -> None:
    handled = set(HANDLED_SIGNALS) - {signal.SIGCHLD}  # SIGCHLD only wakes the loop to reap
    assert _documented(MASTER_TABLE) == handled


@pytest.fixture
def restored_signals() -> Iterator[None]:
    """Every handler and the wakeup fd as they were, whatever the test installed."""
    saved = {s: signal.getsignal(s) for s in signal.valid_signals() if _catchable(s)}
    wakeup_fd = signal.set_wakeup_fd(-1)
    signal.set_wakeup_fd(wakeup_fd)
    try:
        yield
    finally:
        signal.set_wakeup_fd(wakeup_fd)
        for s, handler in saved.items():
            signal.signal(s, handler)


def _catchable(s: int) -> bool:
    return s not in (signal.SIGKILL, signal.SIGSTOP) and signal.getsignal(s) is not None


def test_the_epoll_worker_handles_the_documented_signals(restored_signals: None) -> None:
    flags = SignalFlags()
    wake_r, wake_w = socket.socketpair()
    with wake_r, wake_w:
        wake_w.setblocking(False)  # as the worker loop makes it (set_wakeup_fd insists)
        flags.install(wake_w)
        handled = {
            signal.Signals(s)
            for s in signal.valid_signals()
            if _catchable(s) and signal.getsignal(s) == flags._on_signal
        }
    assert _documented(WORKER_TABLE) == handled | {signal.SIGABRT}


class RecordingLoop(asyncio.SelectorEventLoop):
    """A real event loop that records the signal handlers added instead of installing them."""

    def __init__(self) -> None:
        super().__init__()
        self.handled: set[signal.Signals] = set()

    def add_signal_handler(self, sig: int, callback: Callable[[*_Ts], object], *args: *_Ts) -> None:
        self.handled.add(signal.Signals(sig))


def test_the_asyncio_worker_handles_the_documented_signals() -> None:
    worker = object.__new__(aio.AsgiWorker)  # only its bound methods are needed
    recording = RecordingLoop()
    try:
        worker._install_signals(recording)
    finally:
        recording.close()
    assert _documented(WORKER_TABLE) == recording.handled | {signal.SIGABRT}


@pytest.mark.parametrize("module", [loop, aio], ids=["epoll", "asyncio"])
def test_abrt_dumps_the_stack_in_both_workers(module: ModuleType) -> None:
    """The ABRT row: faulthandler, enabled in each worker loop, dumps every thread then dies."""
    assert module.__file__ is not None
    source = Path(module.__file__).read_text(encoding="utf-8")
    calls = {
        ast.unparse(node.func) for node in ast.walk(ast.parse(source)) if isinstance(node, ast.Call)
    }
    assert "faulthandler.enable" in calls


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
