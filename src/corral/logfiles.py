"""Log rotation support: SIGUSR1 makes every process of corral reopen its log files."""

from __future__ import annotations

import contextlib
import logging


def reopen_log_files() -> None:
    """Let every FileHandler reopen its file on the next record (after logrotate moved it)."""
    for logger in [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]:
        for handler in getattr(logger, "handlers", []):
            if isinstance(handler, logging.FileHandler):
                with handler.lock or contextlib.nullcontext():
                    if handler.stream is not None:
                        handler.stream.close()
                        handler.stream = None
