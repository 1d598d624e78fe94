"""Listening sockets: parsed from bind strings, created once by the master, inherited by every
zygote and worker across fork, and kept open through reloads so no connection is ever refused.

Accepted forms: ``HOST:PORT``, ``:PORT`` (all IPv4), ``[IPv6]:PORT``, ``unix:PATH``. Port 0 asks
the kernel for a free port; the real one is read back with getsockname() and reported.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import stat

from corral.addresses import Address, parse_address

__all__ = ["Address", "bind", "bound_address", "parse_address"]


class BindError(OSError):
    """A listener that cannot be opened; ``str()`` is one line naming the address and a hint."""

    def __str__(self) -> str:
        return str(self.strerror)


def bind(address: Address, backlog: int) -> socket.socket:
    """Create, bind and listen; the socket is inheritable and non-blocking. Raises
    ``BindError`` with a message for the user."""
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
    except OSError as exc:
        sock.close()
        if isinstance(exc, BindError):
            raise
        raise BindError(exc.errno, explain(address, exc)) from None
    sock.setblocking(False)
    sock.set_inheritable(True)
    return sock


def explain(address: Address, exc: OSError) -> str:
    """What went wrong binding ``address``, and what to do about it, in one line."""
    where = address.url().removeprefix("http://")
    unix = address.family == socket.AF_UNIX
    if exc.errno == errno.EADDRINUSE:
        if unix:
            return f"{where} is in use by a running server (it accepts connections)"
        return (
            f"{where} is already in use: another server listens there "
            f"(ss -ltnp 'sport = :{address.port}' names it); stop it or bind another port"
        )
    if exc.errno == errno.EACCES:
        if unix:
            return f"{where}: permission denied creating the socket file in its directory"
        if 0 < address.port < 1024:
            return (
                f"{where}: ports below 1024 need root or CAP_NET_BIND_SERVICE "
                "(or bind a higher port behind a proxy, or use systemd socket activation)"
            )
        return f"{where}: permission denied"
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"{where}: {address.host} is not an address of this machine"
    if exc.errno == errno.ENOENT and unix:
        return f"{where}: the directory {os.path.dirname(address.path) or '.'} does not exist"
    return f"{where}: {exc.strerror or exc}"


def _remove_stale_unix_socket(path: str) -> None:
    """A socket file left by a server that is gone is removed; one that still accepts
    connections belongs to a live server and is never taken over."""
    try:
        if not stat.S_ISSOCK(os.stat(path).st_mode):
            return
    except FileNotFoundError:
        return
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(path)
    except (ConnectionRefusedError, FileNotFoundError):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)  # stale: nobody listens
        return
    except OSError:
        return  # cannot tell (EACCES, a timeout): leave it to bind() to say
    finally:
        probe.close()
    raise BindError(errno.EADDRINUSE, f"unix:{path} is in use by a running server")


def bound_address(sock: socket.socket, requested: Address) -> Address:
    """The address actually bound (port 0 resolved)."""
    if requested.family == socket.AF_UNIX:
        return requested
    host, port = sock.getsockname()[:2]
    return Address(requested.family, host, port)
