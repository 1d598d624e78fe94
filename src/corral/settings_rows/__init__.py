"""The settings table, one module per section; each module's ``ROWS`` in table order.

A branch that adds a group of settings adds a module here and names it in ``SECTIONS``."""

from __future__ import annotations

from corral.settings_rows import (
    allocator,
    asgi,
    ha,
    http,
    memory,
    proxy,
    server,
    stats,
    supervision,
)

SECTIONS = (server, asgi, http, supervision, memory, allocator, stats, ha, proxy)
