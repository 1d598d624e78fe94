"""A tiny raw HTTP/1.1 response reader for tests that need byte-level control
(pipelining, 100-continue, truncation). Reads from one buffered file so that several
responses on one connection can be read in order."""

from __future__ import annotations

from dataclasses import dataclass
from typing import BinaryIO


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]  # lower-cased names; repeated ones joined with ", "
    body: bytes
    complete: bool  # the body ended as its framing promised


def read_head(f: BinaryIO) -> tuple[int, dict[str, str]]:
    line = f.readline(65536)
    if not line:
        raise EOFError("connection closed before a response")
    parts = line.decode("latin-1").split(" ", 2)
    status = int(parts[1])
    headers: dict[str, str] = {}
    while True:
        line = f.readline(65536)
        if line in (b"\r\n", b"\n", b""):
            break
        name, _, value = line.decode("latin-1").partition(":")
        key = name.strip().lower()
        value = value.strip()
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    return status, headers


def read_response(f: BinaryIO, head_request: bool = False) -> RawResponse:
    """Read one final response (interim 1xx responses are skipped)."""
    status, headers = read_head(f)
    while 100 <= status < 200:
        status, headers = read_head(f)
    if head_request or status in (204, 304):
        return RawResponse(status, headers, b"", True)
    if "chunked" in headers.get("transfer-encoding", ""):
        return _read_chunked(f, status, headers)
    if "content-length" in headers:
        length = int(headers["content-length"])
        body = f.read(length)
        return RawResponse(status, headers, body, len(body) == length)
    body = f.read()
    return RawResponse(status, headers, body, True)


def _read_chunked(f: BinaryIO, status: int, headers: dict[str, str]) -> RawResponse:
    parts: list[bytes] = []
    while True:
        line = f.readline(1024)
        if not line:
            return RawResponse(status, headers, b"".join(parts), False)
        size = int(line.split(b";")[0].strip() or b"0", 16)
        if size == 0:
            f.readline(1024)  # the blank line after the last chunk (no trailers sent)
            return RawResponse(status, headers, b"".join(parts), True)
        data = f.read(size)
        f.read(2)
        parts.append(data)
        if len(data) < size:
            return RawResponse(status, headers, b"".join(parts), False)
