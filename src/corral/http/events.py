"""Events the sans-IO HTTP/1.1 core emits, and the errors it raises.

The core turns bytes into these events and never touches a socket. A request cycle is
``Request`` -> zero or more ``Data`` -> ``EndOfMessage``. Between cycles the connection is
``PAUSED`` until the I/O layer calls ``Connection.start_next_cycle()``; pipelined bytes are kept,
never parsed into the next cycle early.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum


class Sentinel(Enum):
    NEED_DATA = "need-data"  # feed more bytes with receive_data()
    PAUSED = "paused"  # a cycle is complete; call start_next_cycle() after the response
    CLOSED = "closed"  # the peer closed cleanly between requests (or the cycle said close)


NEED_DATA = Sentinel.NEED_DATA
PAUSED = Sentinel.PAUSED
CLOSED = Sentinel.CLOSED


@dataclass(slots=True)
class Request:
    """A request head that passed every check.

    ``headers`` keeps arrival order with names lower-cased (ASCII) and values stripped of
    surrounding whitespace; header names containing ``_`` are already dropped.
    """

    method: bytes
    target: bytes  # the raw request-target as sent
    path: bytes  # decoded-not: raw path part of the target (no query), b"*" for OPTIONS *
    query: bytes  # raw query string without "?", b"" when absent
    http_version: str  # "1.0" or "1.1"
    headers: list[tuple[bytes, bytes]]
    host: bytes  # from absolute-form authority, else Host header, else b""
    keep_alive: bool  # what the client asked for (version default + Connection header)
    content_length: int | None  # None when chunked or no body
    chunked: bool
    expect_continue: bool  # "Expect: 100-continue" was sent
    scheme: bytes = b""  # from absolute-form ("http"/"https"), else b""
    dropped_headers: list[bytes] = field(default_factory=list)  # names dropped (had "_")


@dataclass(slots=True)
class Data:
    data: bytes


@dataclass(slots=True)
class EndOfMessage:
    pass


Event = Request | Data | EndOfMessage | Sentinel


class HTTPError(Exception):
    """Base of corral's HTTP errors."""


class ProtocolError(HTTPError):
    """The peer broke the protocol; answer ``status`` once, then close (lingering)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"{status} {reason}")
        self.status = status
        self.reason = reason


class LocalProtocolError(HTTPError):
    """We (the app) tried to send something invalid, e.g. a header value with CR/LF/NUL."""
