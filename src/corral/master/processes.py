"""The arbiter's only hands on other processes: signal, reap, command a zygote.

One small class so that the arbiter's tick can be run in a unit test against a fake (recording
the signals it would send, replaying exits it would reap) without forking anything.
"""

from __future__ import annotations

import errno
import os

from corral.lifecycle import ZygoteMessage, encode


class Processes:
    def kill(self, pid: int, sig: int) -> None:
        """Send ``sig``; a process that is already gone is not an error."""
        try:
            os.kill(pid, sig)
        except OSError as exc:
            if exc.errno != errno.ESRCH:
                raise

    def reap(self) -> list[tuple[int, int]]:
        """Every (pid, wait status) of a child that has exited since the last call."""
        exits: list[tuple[int, int]] = []
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return exits
            except InterruptedError:
                continue
            if pid == 0:
                return exits
            exits.append((pid, status))

    def command(self, fd: int, msg: ZygoteMessage) -> None:
        """Write one message to a zygote's command pipe (OSError if it is gone)."""
        os.write(fd, encode(msg))
