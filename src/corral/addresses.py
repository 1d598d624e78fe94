"""Listening addresses as users write them: ``HOST:PORT``, ``:PORT`` (all IPv4), ``[IPv6]:PORT``,
``unix:PATH``, ``fd://N`` (a listening socket inherited as descriptor N, e.g. from systemd).
Pure parsing, no sockets: the settings table validates ``--bind`` and ``--stats`` with it, and
the master binds or adopts what it returns (``corral.master.listeners``, ``.handoff``).
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
    fd: int = -1  # fd://N: an inherited listening socket (its real address is read from it)

    def url(self) -> str:
        if self.family == socket.AF_UNIX:
            return f"unix:{self.path}"
        host = f"[{self.host}]" if self.family == socket.AF_INET6 else self.host
        return f"http://{host}:{self.port}"


def parse_address(text: str) -> Address:
    """Parse a bind string; raise ValueError with a message meant for the user."""
    text = text.strip()
    if text.startswith("fd://"):
        fd = text[5:]
        if not fd.isdigit() or int(fd) < 3:
            raise ValueError(f"bind {text!r}: fd:// needs a descriptor number of 3 or more")
        return Address(socket.AF_UNSPEC, "", 0, fd=int(fd))
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
