"""Access log lines in the Common and Combined Log Formats (as Apache/nginx write them).

Only built when the access log is on: the worker checks the setting once and never calls into
this module otherwise. Everything that came from the client is escaped with
``escape_for_log`` so a request cannot forge log lines.
"""

from __future__ import annotations

import logging
import time

from corral.http import Request
from corral.http import escape_for_log as _escape

access_logger = logging.getLogger("corral.access")


def escape_for_log(data: bytes) -> str:
    """``corral.http.escape_for_log`` plus ``"`` as ``\\x22``: fields are quoted here."""
    return _escape(data).replace('"', "\\x22")


def format_line(
    fmt: str,
    remote: str,
    request: Request | None,
    status: int,
    bytes_out: int,
    now: float | None = None,
) -> str:
    """One log line; ``fmt`` is "common" or "combined"; ``now`` is wall-clock seconds.

    ``request`` is None for a request whose head could not be parsed: logged as ``"-"``.
    """
    stamp = time.strftime("%d/%b/%Y:%H:%M:%S %z", time.localtime(now))
    line = f'{remote or "-"} - - [{stamp}] "{_request_line(request)}" {status} {bytes_out or "-"}'
    if fmt == "combined":
        referer = _header(request, b"referer")
        agent = _header(request, b"user-agent")
        line += f' "{referer}" "{agent}"'
    return line


def _request_line(request: Request | None) -> str:
    if request is None:
        return "-"
    method, target = escape_for_log(request.method), escape_for_log(request.target)
    return f"{method} {target} HTTP/{request.http_version}"


def _header(request: Request | None, name: bytes) -> str:
    if request is None:
        return "-"
    for key, value in request.headers:
        if key == name:
            return escape_for_log(value)
    return "-"


def log_request(
    fmt: str, remote: str, request: Request | None, status: int, bytes_out: int
) -> None:
    """Write one line to the "corral.access" logger."""
    access_logger.info(format_line(fmt, remote, request, status, bytes_out, time.time()))
