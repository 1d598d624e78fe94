"""WSGI apps used by the system tests."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from typing import Any

StartResponse = Callable[..., Any]
_LEAK: list[bytes] = []


def _reply(start_response: StartResponse, body: bytes, status: str = "200 OK") -> list[bytes]:
    start_response(status, [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def hello(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    return _reply(start_response, b"Hello, world!\n")


def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    """Routes: /pid, /slow?ms, /crash (worker exits), /hang, /leak?kib, /status/NNN."""
    path = environ["PATH_INFO"]
    if path == "/pid":
        return _reply(start_response, str(os.getpid()).encode())
    if path == "/slow":
        ms = int(environ.get("QUERY_STRING") or 50)
        time.sleep(ms / 1000)
        return _reply(start_response, b"slept %d\n" % ms)
    if path == "/crash":
        os._exit(17)
    if path == "/hang":
        while True:
            time.sleep(1)
    if path == "/leak":
        kib = int(environ.get("QUERY_STRING") or 32)
        _LEAK.append(os.urandom(kib * 1024))
        return _reply(start_response, b"leaked\n")
    if path.startswith("/status/"):
        code = int(path.rsplit("/", 1)[1])
        return _reply(start_response, b"status\n", f"{code} X")
    return _reply(start_response, b"Hello, world!\n")


def corpus_app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    """What the corpus expectations assume: read the whole body, answer 200 with 3 bytes."""
    environ["wsgi.input"].read()
    return _reply(start_response, b"ok\n")


SHARED_TABLE = [{"n": i} for i in range(20000)]  # built at import: pre-fork, shared


def touch_app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    """/write rewrites every dict of the pre-fork table (un-sharing its pages); / does nothing."""
    if environ["PATH_INFO"] == "/write":
        for row in SHARED_TABLE:
            row["n"] += 1
    return _reply(start_response, b"ok\n")


def upload_app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    """Read the body and answer "<bytes> <cpu seconds>": /one in one ``read(CONTENT_LENGTH)``
    (Django's ``request.body``), /stream in 64 KiB reads, /lines by iterating lines."""
    inp, path = environ["wsgi.input"], environ["PATH_INFO"]
    t0 = time.process_time()
    if path == "/one":
        size = len(inp.read(int(environ["CONTENT_LENGTH"])))
    elif path == "/lines":
        size = sum(len(line) for line in inp)
    else:
        size = 0
        while piece := inp.read(65536):
            size += len(piece)
    return _reply(start_response, b"%d %.6f" % (size, time.process_time() - t0))


def method_app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    """Echo the method and SERVER_SOFTWARE back: custom methods reach the app."""
    body = f"{environ['REQUEST_METHOD']} {environ.get('SERVER_SOFTWARE', '')}".encode()
    return _reply(start_response, body)


_TEN_MIB = b"t" * (10 << 20)  # built once at import (in the zygote), shared by every response


def big_app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    """The same preallocated 10 MiB object in a list, for every request."""
    start_response("200 OK", [("Content-Type", "application/octet-stream")])
    return [_TEN_MIB]
