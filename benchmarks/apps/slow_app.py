"""A 50 ms endpoint that reports which version of its code answered.

``benchmarks/reload.py`` copies this file into a scratch directory next to an ``appversion``
module that it rewrites before every reload. ``appversion`` is imported at load time, so a
server that preloads the app answers with whatever version was on disk when its app was
imported: a reload that really loads new code answers with the new version, one that forks
from an old image keeps answering with the old one.

The 50 ms sleep stands in for a database call: it keeps requests in flight, which is what
makes a careless reload or a killed worker visible as failed requests.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

import appversion  # type: ignore[import-not-found]  # written by benchmarks/reload.py

DELAY_S = 0.050
BODY = f"{appversion.VERSION}\n".encode()


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """Sleep ``DELAY_S`` then answer with this code's version."""
    time.sleep(DELAY_S)
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(BODY)))])
    return [BODY]
