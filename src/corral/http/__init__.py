"""corral.http: the sans-IO HTTP/1.1 protocol core (strict RFC 9112 on top of llhttp).

Bytes in, events out, response bytes back; no sockets here. See ``connection.py`` for the
theory of operation and ``tests/corpus/`` for the requests it must accept or refuse.
"""

from corral.http.connection import Connection
from corral.http.events import (
    CLOSED,
    NEED_DATA,
    PAUSED,
    Data,
    EndOfMessage,
    Event,
    HTTPError,
    LocalProtocolError,
    ProtocolError,
    Request,
    Sentinel,
)
from corral.http.limits import Limits
from corral.http.logsafe import escape_for_log

__all__ = [
    "CLOSED",
    "NEED_DATA",
    "PAUSED",
    "Connection",
    "Data",
    "EndOfMessage",
    "Event",
    "HTTPError",
    "Limits",
    "LocalProtocolError",
    "ProtocolError",
    "Request",
    "Sentinel",
    "escape_for_log",
]
