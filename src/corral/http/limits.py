"""Parsing limits. Defaults follow gunicorn/nginx precedent (8190-byte line and field,
100 fields) and RFC 9112 §3/§5 advice to bound what a server will buffer."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Limits:
    request_line: int = 8190  # -> 414
    header_field: int = 8190  # one "name: value" line -> 431
    header_fields: int = 100  # -> 431
    header_section: int = 65536  # whole head in bytes -> 431
    max_body_size: int = 100 * 1024 * 1024  # -> 413, checked before the body is read
    chunk_extension: int = 4096  # bytes of chunk extensions per chunk -> 400
    drain_unread_body: int = 65536  # unread body bytes we will discard to keep a connection
