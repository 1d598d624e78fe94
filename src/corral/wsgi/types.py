"""The WSGI application type, as corral sees it."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

# (environ, start_response) -> iterable of bytes. start_response is typed loosely: apps call
# it with 2 or 3 positional arguments and use its return value as write().
WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
