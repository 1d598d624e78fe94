"""The worker's signals: handlers only set flags; ``signal.set_wakeup_fd`` wakes the loop.

SIGTERM drains, SIGWINCH says the master is stopping (health checks answer 503 while the worker
still serves: the lame-duck period, docs/fleet.md), SIGINT/SIGQUIT stop at once, SIGUSR1
reopens log files, SIGUSR2 asks for a copy-on-write attribution report. Nothing is done inside
a handler (logging there can deadlock); the loop reads the flags when the wake-up socket
becomes readable.
"""

from __future__ import annotations

import signal
import socket
from types import FrameType


class SignalFlags:
    """What the signals asked for since the loop last looked."""

    __slots__ = ("cow_report", "lame", "reopen", "stop_now", "term")

    def __init__(self) -> None:
        self.term = False
        self.lame = False
        self.stop_now = False
        self.reopen = False
        self.cow_report = False

    def install(self, wake_w: socket.socket) -> None:
        """Handle the worker's signals; each delivery writes a byte to ``wake_w``."""
        signal.set_wakeup_fd(wake_w.fileno(), warn_on_full_buffer=False)
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
            signal.signal(signum, self._on_signal)
        signal.signal(signal.SIGUSR1, self._on_signal)
        signal.signal(signal.SIGUSR2, self._on_signal)
        signal.signal(signal.SIGWINCH, self._on_signal)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if signum == signal.SIGTERM:
            self.term = True
        elif signum == signal.SIGUSR1:
            self.reopen = True
        elif signum == signal.SIGUSR2:
            self.cow_report = True
        elif signum == signal.SIGWINCH:
            self.lame = True
        else:
            self.stop_now = True
