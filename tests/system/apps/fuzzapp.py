"""The fuzzer's echo app: answers with a digest of the request exactly as the app saw it."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from typing import Any

SEEN_KEYS = ("REQUEST_METHOD", "RAW_URI", "SERVER_PROTOCOL", "CONTENT_LENGTH", "CONTENT_TYPE")


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """JSON: the request line's pieces, every HTTP_* field, and the body's length and sha256."""
    body = environ["wsgi.input"].read()
    seen = {key: environ[key] for key in SEEN_KEYS if key in environ}
    seen.update({key: value for key, value in environ.items() if key.startswith("HTTP_")})
    doc = {"environ": seen, "body_len": len(body), "body_sha256": hashlib.sha256(body).hexdigest()}
    out = json.dumps(doc, sort_keys=True).encode()
    start_response(
        "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(out)))]
    )
    return [out]
