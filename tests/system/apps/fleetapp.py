"""The app the fleet drills (tests/system/test_fleet.py) and the stop tests run: a POST endpoint
that reads its body and takes ~20 ms, a version read at import (so a HUP with new code shows),
and a switch file that makes the host slow."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

StartResponse = Callable[..., Any]
_VERSION_FILE = os.environ.get("FLEET_VERSION_FILE", "")
VERSION = Path(_VERSION_FILE).read_text().strip() if _VERSION_FILE else "v1"
SLOW_FILE = os.environ.get("FLEET_SLOW_FILE", "")
WORK_S = float(os.environ.get("FLEET_WORK_S", "0.02"))


def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    """Any path: read the body, sleep WORK_S (or 1 s while the slow file exists), answer
    ``VERSION PID BODY-LENGTH``; ``/sleep?S`` sleeps S seconds (an in-flight request)."""
    body = environ["wsgi.input"].read()
    if environ["PATH_INFO"] == "/sleep":
        time.sleep(float(environ.get("QUERY_STRING") or "1"))
    else:
        time.sleep(1.0 if SLOW_FILE and os.path.exists(SLOW_FILE) else WORK_S)
    out = f"{VERSION} {os.getpid()} {len(body)}\n".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(out)))])
    return [out]
