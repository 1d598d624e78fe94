"""Both request-head parsers for the corpus, property and fuzz tests (corral.http.native).

A test parametrized with ``PARSERS`` runs once with the C parser and once with the Python one;
``require`` skips the native run where the extension was not built, except under CI where that
is a failure (a CI without a C compiler would otherwise test one parser and pass). ``connection``
gives each connection its own head cache, so a head one parser accepted is never a cache hit for
the other: every head in such a run is judged by the parser named.
"""

from __future__ import annotations

import os

import pytest

from corral.http import Connection, Limits, native

PARSERS = (True, False)
PARSER_IDS = ("native", "python")


def require(native_head: bool | None) -> None:
    if native_head and not native.AVAILABLE:
        if os.environ.get("CI"):
            pytest.fail("corral.http._nativehead was not built (is a C compiler installed?)")
        pytest.skip("corral.http._nativehead was not built")


def connection(limits: Limits | None = None, native_head: bool | None = None) -> Connection:
    """A Connection; with a parser named, one with a private head cache (see above)."""
    conn = Connection(limits or Limits(), native_head)
    if native_head is not None:
        conn._heads = {}
    return conn
