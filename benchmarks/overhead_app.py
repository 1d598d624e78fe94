"""The hello-world app of benchmarks/overhead.py, importable by `corral serve`."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any


def hello(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "14")])
    return [b"Hello, world!\n"]
