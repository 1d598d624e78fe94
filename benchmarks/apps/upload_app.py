"""Read the request body the way Django's ``request.body`` does: one
``wsgi.input.read(CONTENT_LENGTH)``; answer "<bytes read> <CPU seconds the read took>"."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """``/`` answers 200 at once (readiness probe); any other path reads the body."""
    length = int(environ.get("CONTENT_LENGTH") or 0)
    t0 = time.process_time()
    size = len(environ["wsgi.input"].read(length)) if length else 0
    body = b"%d %.6f" % (size, time.process_time() - t0)
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
