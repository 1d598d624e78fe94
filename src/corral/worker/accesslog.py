"""Access log lines in the Common and Combined Log Formats (as Apache/nginx write them), or in
gunicorn's ``access_log_format`` atoms (``%(h)s "%(r)s" %(s)s %(b)s %(D)s``...).

Only built when the access log is on: the worker checks the setting once and never calls into
this module otherwise. Everything that came from the client is escaped with
``escape_for_log`` so a request cannot forge log lines.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

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
    duration_s: float = 0.0,
) -> str:
    """One log line; ``fmt`` is "common", "combined" or gunicorn atoms; ``now`` is wall-clock
    seconds, ``duration_s`` the request's time in the server.

    ``request`` is None for a request whose head could not be parsed: logged as ``"-"``.
    """
    if fmt not in ("common", "combined"):
        return fmt % GunicornAtoms(remote, request, status, bytes_out, now, duration_s)
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
    fmt: str,
    remote: str,
    request: Request | None,
    status: int,
    bytes_out: int,
    duration_s: float = 0.0,
) -> None:
    """Write one line to the "corral.access" logger."""
    line = format_line(fmt, remote, request, status, bytes_out, time.time(), duration_s)
    access_logger.info(line)


class GunicornAtoms:
    """gunicorn's access log atoms, computed when the format asks for them.

    ``{name}o`` (response headers) is ``-``: the log line is built from the request side.
    """

    def __init__(
        self,
        remote: str,
        request: Request | None,
        status: int,
        bytes_out: int,
        now: float | None,
        duration_s: float,
    ) -> None:
        self.remote, self.request, self.status = remote, request, status
        self.bytes_out, self.now, self.duration_s = bytes_out, now, duration_s

    def __getitem__(self, key: str) -> Any:
        if key.startswith("{") and key.endswith("}i"):
            return _header(self.request, key[1:-2].lower().encode("latin-1"))
        if key.startswith("{") and key.endswith("}e"):
            return os.environ.get(key[1:-2], "-")
        if key.startswith("{") and key.endswith("}o"):
            return "-"
        atom = _ATOMS.get(key)
        if atom is None:
            raise KeyError(key)
        return atom(self)


def _request_part(atoms: GunicornAtoms, part: str) -> str:
    r = atoms.request
    if r is None:
        return "-"
    if part == "m":
        return escape_for_log(r.method)
    if part == "U":
        return escape_for_log(r.path)
    if part == "q":
        return escape_for_log(r.query)
    return f"HTTP/{r.http_version}"


_ATOMS: dict[str, Any] = {
    "h": lambda a: a.remote or "-",
    "l": lambda a: "-",
    "u": lambda a: "-",
    "t": lambda a: time.strftime("[%d/%b/%Y:%H:%M:%S %z]", time.localtime(a.now)),
    "r": lambda a: _request_line(a.request),
    "m": lambda a: _request_part(a, "m"),
    "U": lambda a: _request_part(a, "U"),
    "q": lambda a: _request_part(a, "q"),
    "H": lambda a: _request_part(a, "H"),
    "s": lambda a: a.status,
    "B": lambda a: a.bytes_out,
    "b": lambda a: a.bytes_out or "-",
    "f": lambda a: _header(a.request, b"referer"),
    "a": lambda a: _header(a.request, b"user-agent"),
    "T": lambda a: int(a.duration_s),
    "M": lambda a: int(a.duration_s * 1000),
    "D": lambda a: int(a.duration_s * 1_000_000),
    "L": lambda a: f"{a.duration_s:.6f}",
    "p": lambda a: f"<{os.getpid()}>",
}


def check_format(fmt: str) -> None:
    """Raise ValueError for a format gunicorn's atoms cannot fill (checked at startup)."""
    try:
        fmt % GunicornAtoms("", None, 200, 0, 0.0, 0.0)
    except KeyError as exc:
        raise ValueError(f"unknown atom %({exc.args[0]})s") from None
    except (TypeError, ValueError) as exc:
        raise ValueError(f"not a %-format: {exc}") from None
