"""Listening sockets: parsed from bind strings, created once by the master, inherited by every
zygote and worker across fork, and kept open through reloads so no connection is ever refused.

Accepted forms: ``HOST:PORT``, ``:PORT`` (all IPv4), ``[IPv6]:PORT``, ``unix:PATH``. Port 0 asks
the kernel for a free port; the real one is read back with getsockname() and reported.
"""

from __future__ import annotations

import contextlib
import os
import socket
import stat
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


def bind(address: Address, backlog: int) -> socket.socket:
    """Create, bind and listen; the socket is inheritable and non-blocking."""
    sock = socket.socket(address.family, socket.SOCK_STREAM)
    try:
        if address.family == socket.AF_UNIX:
            _remove_stale_unix_socket(address.path)
            sock.bind(address.path)
        else:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if address.family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind((address.host, address.port))
        sock.listen(backlog)
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    sock.set_inheritable(True)
    return sock


def _remove_stale_unix_socket(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        if stat.S_ISSOCK(os.stat(path).st_mode):
            os.unlink(path)


def bound_address(sock: socket.socket, requested: Address) -> Address:
    """The address actually bound (port 0 resolved)."""
    if requested.family == socket.AF_UNIX:
        return requested
    host, port = sock.getsockname()[:2]
    return Address(requested.family, host, port)
