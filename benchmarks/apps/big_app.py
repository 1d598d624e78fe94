"""A 10 MiB response as a list of one preallocated object (``/``), and hello world on any other
path: for benchmarks/slowclients.py (issue 16, points 7 and 8)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

TEN_MIB = b"t" * (10 << 20)  # built once at import (in the zygote), shared by every response
BODY = b"Hello, world!\n"
HEADERS = [("Content-Type", "text/plain"), ("Content-Length", str(len(BODY)))]


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    if environ["PATH_INFO"] == "/":
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return [TEN_MIB]
    start_response("200 OK", HEADERS)
    return [BODY]
