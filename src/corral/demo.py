"""The built-in demo app served by ``corral serve`` with no APP: a page that says what corral
is, which worker answered, and where the dashboard and metrics are.

Chaos debug hook: ``GET /__bloat?mib=N`` makes the worker that answers it keep N MiB more
(written, so the pages are really private), for ``corral chaos --scenario bloat`` to push a
worker over ``--max-worker-memory-mib``. N is capped at 1024 per request.
"""

from __future__ import annotations

import html
import os
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs

_BLOAT: list[bytes] = []  # the chaos hook's ballast; lives until the worker is recycled
_BLOAT_MAX_MIB = 1024

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>corral demo</title>
<style>
body{{font:16px/1.5 system-ui,sans-serif;max-width:44rem;margin:3rem auto;padding:0 1rem;
color:#1d2330;background:#fbfbf8}}
h1{{font-size:1.6rem}} code{{background:#eef0f3;padding:.1rem .3rem;border-radius:3px}}
.card{{border:1px solid #dde1e6;border-radius:8px;padding:1rem 1.25rem;background:#fff}}
</style></head><body>
<h1>corral is serving</h1>
<p>A prefork WSGI server that keeps the master's memory shared with its workers, recycles
workers before memory hurts, and shows where every megabyte and millisecond went.</p>
<div class="card">
<p>This page came from worker pid <code>{pid}</code> (parent <code>{ppid}</code>)
for <code>{method} {path}</code>.</p>
{stats}
</div>
<p>Serve your own app with <code>corral serve module:app</code>; see
<code>corral serve --help</code>.</p>
</body></html>
"""


def _bloat(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """The chaos hook: hold N MiB more in this worker."""
    try:
        mib = int(parse_qs(environ.get("QUERY_STRING", "")).get("mib", ["0"])[0])
    except ValueError:
        mib = -1
    if not 0 <= mib <= _BLOAT_MAX_MIB:
        body = b"mib must be 0..1024\n"
        start_response("400 Bad Request", [("Content-Length", str(len(body)))])
        return [body]
    _BLOAT.append(b"\xa5" * (mib << 20))  # not bytes(n): calloc'd zero pages stay unbacked
    held = sum(len(b) for b in _BLOAT) >> 20
    body = f"pid {os.getpid()} holds {held} MiB of ballast\n".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    if environ.get("PATH_INFO") == "/__bloat":
        return _bloat(environ, start_response)
    stats = os.environ.get("CORRAL_STATS_URL", "")
    links = (
        f'<p>Live dashboard: <a href="{html.escape(stats)}/">{html.escape(stats)}/</a> &middot; '
        f'<a href="{html.escape(stats)}/metrics">metrics</a> &middot; '
        f'<a href="{html.escape(stats)}/stats">JSON</a></p>'
        if stats
        else "<p>Start with <code>--stats 127.0.0.1:9100</code> for the live dashboard.</p>"
    )
    body = _PAGE.format(
        pid=os.getpid(),
        ppid=os.getppid(),
        method=html.escape(environ.get("REQUEST_METHOD", "")),
        path=html.escape(environ.get("PATH_INFO", "")),
        stats=links,
    ).encode()
    start_response(
        "200 OK",
        [("Content-Type", "text/html; charset=utf-8"), ("Content-Length", str(len(body)))],
    )
    return [body]
