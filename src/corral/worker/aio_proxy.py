"""What the ASGI worker learns from the proxy in front of it: the PROXY header and the
forwarding headers, the same pure parsers as the WSGI worker (``corral.http.proxyproto``,
``corral.http.forwarded``), the same settings and the same trust rules (docs/deploy.md).

Theory of operation. A connection from ``proxy_allow_ips`` (with ``--proxy-protocol`` on) is
not handed to the event loop's transport at once: :func:`read_preface` watches its fd with
``loop.add_reader`` and reads the header with :class:`corral.worker.proxied.Preface` (peek,
then exactly the header's bytes, so a TLS handshake that follows is untouched), bounded by the
header timeout. Then the socket becomes a transport as any other, the header's source as its
client. Forwarding headers are applied to each scope by :func:`apply_forwarded`, only for a
connection from ``forwarded_allow_ips``: ``scheme`` (``ws``/``wss`` for a WebSocket), ``client``,
the ``host`` header (X-Forwarded-Host) and ``server`` (X-Forwarded-Port) become what the proxy
said, as ``REMOTE_ADDR``, ``wsgi.url_scheme``, ``HTTP_HOST`` and ``SERVER_PORT`` do for WSGI.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from typing import Any

from corral.http import Request
from corral.http.forwarded import Peer, TrustedProxies, resolve
from corral.http.proxyproto import ProxyHeader
from corral.worker.proxied import Preface

Opened = Callable[[Peer | None, bytes], None]  # (client named by the header, bytes after it)
_WS_SCHEME = {"http": "ws", "https": "wss"}


def read_preface(
    loop: asyncio.AbstractEventLoop,
    sock: socket.socket,
    preface: Preface,
    timeout_s: float,
    opened: Opened,
    failed: Callable[[], None],
) -> None:
    """Read the PROXY header off ``sock``, then call ``opened``; on garbage, an EOF or the
    timeout, close the socket and call ``failed``."""
    fd = sock.fileno()
    seen: list[ProxyHeader] = []
    preface.on_header = seen.append

    def give_up() -> None:
        loop.remove_reader(fd)
        sock.close()
        failed()

    timer = loop.call_later(timeout_s, give_up)

    def readable() -> None:
        try:
            left = preface.read(sock)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:  # ConnectionAbortedError (garbage: logged by Preface), a reset
            timer.cancel()
            give_up()
            return
        timer.cancel()
        loop.remove_reader(fd)
        opened(seen[0].source if seen else None, left)

    loop.add_reader(fd, readable)


def apply_forwarded(
    scope: dict[str, Any], request: Request, peer: Peer | None, trusted: TrustedProxies
) -> str | None:
    """Apply a trusted proxy's forwarding headers to ``scope``; returns the client address
    they named (for the access log), or None when nothing changed the client."""
    websocket = scope["type"] == "websocket"
    scheme = scope["scheme"]
    if websocket:
        scheme = "https" if scheme == "wss" else "http"
    client = scope["client"]
    got = resolve(peer, None, scheme, request.headers, trusted, client=client)
    scope["scheme"] = _WS_SCHEME.get(got.scheme, got.scheme) if websocket else got.scheme
    if got.host is not None:
        host = got.host.encode("latin-1")
        headers = [(n, v) for n, v in scope["headers"] if n != b"host"]
        scope["headers"] = [(b"host", host), *headers]
    if got.server_host is not None or got.server_port is not None:
        server = scope["server"] or ("", None)
        host_name = got.server_host if got.server_host is not None else server[0]
        scope["server"] = (host_name, got.server_port if got.server_port else server[1])
    if got.client is not None and got.client != client:
        scope["client"] = got.client
        return got.client[0]
    return None
