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

from corral.addresses import Address, parse_address

__all__ = ["Address", "bind", "bound_address", "parse_address"]


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
