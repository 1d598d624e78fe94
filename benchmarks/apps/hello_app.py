"""Hello world with ``Content-Length``: the smallest response a WSGI server can be asked for.

A fixed body and length mean every server can keep the connection alive, so the benchmark
measures the server's per-request overhead and nothing of the app's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

BODY = b"Hello, world!\n"
HEADERS = [("Content-Type", "text/plain"), ("Content-Length", str(len(BODY)))]


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """Answer every request with ``BODY``."""
    start_response("200 OK", HEADERS)
    return [BODY]
