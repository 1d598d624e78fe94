"""The WSGI apps the integration tests serve; each is wrapped in wsgiref's validator."""

from __future__ import annotations

import io
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from wsgiref.validate import validator

Environ = dict[str, Any]
BIG_BLOCKS = 128  # 8 MiB: more than the socket buffers hold


def _text(start_response: Any, body: bytes, status: str = "200 OK") -> list[bytes]:
    start_response(status, [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def read_all(stream: Any) -> bytes:
    """Read wsgi.input to its end (the validator insists on read(size))."""
    parts = []
    while piece := stream.read(65536):
        parts.append(piece)
    return b"".join(parts)


def _chunks(environ: Environ, start_response: Any) -> Iterator[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    for i in range(3):
        yield b"chunk%d;" % i


def _late_boom(environ: Environ, start_response: Any) -> Iterator[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    yield b"first;"
    raise RuntimeError("failure after the response started")


def _write_app(environ: Environ, start_response: Any) -> list[bytes]:
    write = start_response("200 OK", [("Content-Type", "text/plain")])
    write(b"written;")
    return [b"returned"]


class MainApp:
    """Routes on PATH_INFO. ``marker_fd``: a pipe the app writes to when /slow starts;
    ``record``: a file where /record writes what reading the body gave."""

    def __init__(self, record: Path | None = None, marker_fd: int | None = None) -> None:
        self.record = record
        self.marker_fd = marker_fd

    def __call__(self, environ: Environ, start_response: Any) -> Any:
        path = environ["PATH_INFO"]
        handler = getattr(self, "route_" + path.strip("/").replace("-", "_"), None)
        if path == "/":
            return _text(start_response, b"Hello, world!")
        if handler is None:
            return _text(start_response, b"not found", "404 Not Found")
        return handler(environ, start_response)

    def route_echo(self, environ: Environ, start_response: Any) -> list[bytes]:
        return _text(start_response, read_all(environ["wsgi.input"]))

    def route_lines(self, environ: Environ, start_response: Any) -> list[bytes]:
        lines = list(environ["wsgi.input"])
        return _text(start_response, b"%d" % len(lines))

    def route_environ(self, environ: Environ, start_response: Any) -> list[bytes]:
        keys = [k for k, v in environ.items() if isinstance(v, str)]
        return _text(start_response, json.dumps({k: environ[k] for k in keys}).encode())

    def route_chunks(self, environ: Environ, start_response: Any) -> Iterator[bytes]:
        return _chunks(environ, start_response)

    def route_file(self, environ: Environ, start_response: Any) -> Any:
        path = environ["QUERY_STRING"]
        size = os.path.getsize(path)
        start_response(
            "200 OK",
            [("Content-Type", "application/octet-stream")]
            + ([("Content-Length", str(size))] if "cl" in environ.get("HTTP_X_MODE", "") else []),
        )
        return environ["wsgi.file_wrapper"](open(path, "rb"), 8192)

    def route_bytesio(self, environ: Environ, start_response: Any) -> Any:
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return environ["wsgi.file_wrapper"](io.BytesIO(b"x" * 100_000), 4096)

    def route_boom(self, environ: Environ, start_response: Any) -> list[bytes]:
        raise RuntimeError("failure before the response started")

    def route_late_boom(self, environ: Environ, start_response: Any) -> Iterator[bytes]:
        return _late_boom(environ, start_response)

    def route_bad_header(self, environ: Environ, start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain"), ("X-Euro", "\u20ac")])
        return [b"never"]

    def route_bad_status(self, environ: Environ, start_response: Any) -> list[bytes]:
        start_response("199 Too Early For A Final", [("Content-Type", "text/plain")])
        return [b"never"]

    def route_str_body(self, environ: Environ, start_response: Any) -> list[Any]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return ["text, not bytes"]

    def route_too_long(self, environ: Environ, start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
        return [b"longer than two"]

    def route_write(self, environ: Environ, start_response: Any) -> list[bytes]:
        return _write_app(environ, start_response)

    def route_slow(self, environ: Environ, start_response: Any) -> list[bytes]:
        if self.marker_fd is not None:
            os.write(self.marker_fd, b"S")
        time.sleep(1.0)  # the app is slow on purpose: a request in flight during SIGTERM
        return _text(start_response, b"slow done")

    def route_big(self, environ: Environ, start_response: Any) -> Iterator[bytes]:
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return iter([b"y" * 65536] * BIG_BLOCKS)

    def route_record(self, environ: Environ, start_response: Any) -> list[bytes]:
        assert self.record is not None
        try:
            body = read_all(environ["wsgi.input"])
            outcome = f"ok {len(body)}"
        except OSError as exc:
            outcome = f"error {type(exc).__name__}"
        with open(self.record, "a") as f:
            f.write(outcome + "\n")
        return _text(start_response, outcome.encode())


def make_app(
    record: Path | None = None, marker_fd: int | None = None, validate: bool = True
) -> Any:
    """The test app under wsgiref's validator. ``validate=False`` only where the validator
    would hide what is tested: it wraps every result, so a server can never see the
    ``wsgi.file_wrapper`` object it would serve with sendfile."""
    app = MainApp(record, marker_fd)
    return validator(app) if validate else app
