"""An app that leaks on purpose: ``/leak?KIB`` keeps KIB KiB (written, so resident) per request;
any other path answers hello world and keeps nothing. For benchmarks/leak.py and soak.py."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

BODY = b"Hello, world!\n"
HEADERS = [("Content-Type", "text/plain"), ("Content-Length", str(len(BODY)))]
_KEPT: list[bytes] = []


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    if environ["PATH_INFO"] == "/leak":
        kib = int(environ.get("QUERY_STRING") or 32)
        _KEPT.append(b"\x01" * (kib * 1024))  # bytes(n) would be calloc'd: zero pages, not RSS
    start_response("200 OK", HEADERS)
    return [BODY]
