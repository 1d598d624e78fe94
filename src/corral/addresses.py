"""Listening addresses as users write them: ``HOST:PORT``, ``:PORT`` (all IPv4), ``[IPv6]:PORT``,
``unix:PATH``. Pure parsing, no sockets: the settings table validates ``--bind`` and ``--stats``
with it, and the master binds what it returns (``corral.master.listeners``).
"""

from __future__ import annotations

import socket
from dataclasses import dataclass


@dataclass(frozen=True)
class Address:
    family: socket.AddressFamily
    host: str  # "" for unix
    port: int  # 0 for unix
    path: str = ""  # unix socket path

    def url(self) -> str:
        if self.family == socket.AF_UNIX:
            return f"unix:{self.path}"
        host = f"[{self.host}]" if self.family == socket.AF_INET6 else self.host
        return f"http://{host}:{self.port}"


def parse_address(text: str) -> Address:
    """Parse a bind string; raise ValueError with a message meant for the user."""
    text = text.strip()
    if text.startswith("unix:"):
        path = text[5:]
        if not path:
            raise ValueError(f"bind {text!r}: unix: needs a path")
        return Address(socket.AF_UNIX, "", 0, path)
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or not rest.startswith(":"):
            raise ValueError(f"bind {text!r}: expected [IPv6]:PORT")
        return Address(socket.AF_INET6, host, _port(text, rest[1:]))
    host, sep, port = text.rpartition(":")
    if not sep:
        raise ValueError(f"bind {text!r}: expected HOST:PORT, [IPv6]:PORT or unix:PATH")
    if ":" in host:
        raise ValueError(f"bind {text!r}: put IPv6 addresses in brackets, e.g. [::1]:8000")
    return Address(socket.AF_INET, host or "0.0.0.0", _port(text, port))


def _port(text: str, port: str) -> int:
    if not port.isdigit() or int(port) > 65535:
        raise ValueError(f"bind {text!r}: port must be a number from 0 to 65535")
    return int(port)
