"""Warm-up: run a few requests through the WSGI application inside the preloading process.

Theory of operation. The first request through an application does one-off work: lazy imports,
caches filled, templates compiled, type and dict version tags assigned, and the interpreter's
specialisation of hot bytecode. Done in each worker, that work writes (and so copies) shared
pages; done once before the freeze, it lands in the shared heap instead (measured: immortal +
warm-up kept 97.2% shared against 95.5% without, on 3.12). No sockets: the environ is built
here, as PEP 3333 describes it, for a plain ``GET`` over HTTP/1.1.

A failing warm-up path is logged and skipped: warming up is an optimisation, and the same
request will fail visibly when a client sends it.
"""

from __future__ import annotations

import io
import logging
import sys
from collections.abc import Callable, Iterable, Sequence
from types import TracebackType
from typing import Any
from urllib.parse import unquote_to_bytes
from wsgiref.types import WSGIApplication, WSGIEnvironment

__all__ = ["make_environ", "make_warmup", "run_request"]

log = logging.getLogger("corral.memory")

_ExcInfo = tuple[type[BaseException], BaseException, TracebackType] | tuple[None, None, None]


def make_environ(target: str, *, host: str = "localhost", port: int = 80) -> WSGIEnvironment:
    """A minimal PEP 3333 environ for ``GET target`` (``/path?query``)."""
    path, _, query = target.partition("?")
    return {
        "REQUEST_METHOD": "GET",
        "SCRIPT_NAME": "",
        # PEP 3333: PATH_INFO is the percent-decoded path, bytes carried as latin-1 str.
        "PATH_INFO": unquote_to_bytes(path).decode("latin-1"),
        "QUERY_STRING": query,
        "SERVER_NAME": host,
        "SERVER_PORT": str(port),
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_HOST": host,
        "HTTP_USER_AGENT": "corral-warmup",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(b""),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": False,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }


def run_request(app: WSGIApplication, target: str) -> tuple[str, int]:
    """Call ``app`` for ``GET target``; return the status line and the body length."""
    status: list[str] = []

    def start_response(
        status_line: str, headers: list[tuple[str, str]], exc_info: _ExcInfo | None = None
    ) -> Callable[[bytes], object]:
        status[:] = [status_line]
        return lambda data: None

    body = app(make_environ(target), start_response)
    try:
        length = _consume(body)
    finally:
        close: Any = getattr(body, "close", None)
        if close is not None:
            close()
    return (status[0] if status else ""), length


def _consume(body: Iterable[bytes]) -> int:
    return sum(len(chunk) for chunk in body)


def make_warmup(app: WSGIApplication, paths: Sequence[str]) -> Callable[[], None]:
    """A callable for ``finish_preload(warmup=...)`` that requests each path once, in order."""
    targets = list(paths)

    def warmup() -> None:
        for target in targets:
            try:
                status, length = run_request(app, target)
            except Exception:
                log.warning("warm-up request GET %s failed", target, exc_info=True)
                continue
            log.debug("warm-up GET %s -> %s (%d bytes)", target, status, length)

    return warmup
