"""ASGI connection scopes from a parsed ``corral.http.Request``: pure functions.

The HTTP scope follows the ASGI HTTP spec (version 2.4): ``path`` is the target's path with
%-escapes and UTF-8 decoded, ``raw_path`` the bytes as sent, ``headers`` the request's fields as
``(lower-cased name, value)`` byte pairs in arrival order (names containing ``_`` are dropped by
the HTTP core, as for WSGI: docs/http.md). ``root_path`` is the ``--root-path`` setting; the
path is the full path as received (a proxy that strips the prefix should not be told one).
``state`` is a shallow copy of what lifespan startup stored, per request (the spec's rule).
"""

from __future__ import annotations

import socket
from typing import Any
from urllib.parse import unquote

from corral.http import Request

ASGI_VERSION = {"version": "3.0", "spec_version": "2.4"}
WS_ASGI_VERSION = {"version": "3.0", "spec_version": "2.4"}
# Extensions a scope announces: pathsend (send a file by path: corral uses sendfile).
EXTENSIONS: dict[str, dict[str, Any]] = {"http.response.pathsend": {}}

Address = tuple[str, int] | tuple[str, None] | None


def addresses(sock: socket.socket) -> tuple[Address, Address]:
    """(client, server) of a connected socket, as the scope spells them."""
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        peer, local = sock.getpeername(), sock.getsockname()
        return (str(peer[0]), int(peer[1])), (str(local[0]), int(local[1]))
    name = sock.getsockname()
    return None, (name if isinstance(name, str) else "", None)  # unix: no client address


def decode_path(raw: bytes) -> str:
    """``%XX`` and UTF-8 decoded; undecodable bytes survive as surrogates, never an error."""
    text = raw.decode("latin-1")
    if "%" not in text and raw.isascii():
        return text
    return unquote(text, encoding="utf-8", errors="surrogateescape")


def http_scope(
    request: Request,
    client: Address,
    server: Address,
    scheme: str,
    root_path: str,
    state: dict[str, Any] | None,
) -> dict[str, Any]:
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": ASGI_VERSION,
        "http_version": request.http_version,
        "method": request.method.decode("ascii"),
        "scheme": scheme,
        "path": decode_path(request.path),
        "raw_path": request.path,
        "query_string": request.query,
        "root_path": root_path,
        "headers": request.headers,
        "client": client,
        "server": server,
        "extensions": EXTENSIONS,
    }
    if state is not None:
        scope["state"] = state.copy()
    return scope


def websocket_scope(
    request: Request,
    client: Address,
    server: Address,
    scheme: str,
    root_path: str,
    state: dict[str, Any] | None,
    subprotocols: list[str],
) -> dict[str, Any]:
    scope = http_scope(request, client, server, scheme, root_path, state)
    del scope["method"]
    scope["type"] = "websocket"
    scope["asgi"] = WS_ASGI_VERSION
    scope["scheme"] = "wss" if scheme == "https" else "ws"
    scope["subprotocols"] = subprotocols
    scope["extensions"] = {"websocket.http.response": {}}
    return scope


def wants_websocket(request: Request) -> bool:
    """An RFC 6455 opening handshake: GET, HTTP/1.1, ``Upgrade: websocket``, ``Connection:
    upgrade`` and a key (whose form, and the version, are wsproto's to check). Without a key
    the Upgrade is ignored, as RFC 9110 §7.8 allows, and the request is plain HTTP."""
    if request.method != b"GET" or request.http_version != "1.1":
        return False
    upgrade = connection = key = False
    for name, value in request.headers:
        if name == b"upgrade":
            upgrade = upgrade or b"websocket" in value.lower()
        elif name == b"connection":
            connection = connection or b"upgrade" in value.lower()
        elif name == b"sec-websocket-key":
            key = True
    return upgrade and connection and key


def subprotocols(request: Request) -> list[str]:
    out: list[str] = []
    for name, value in request.headers:
        if name == b"sec-websocket-protocol":
            out += [p.strip() for p in value.decode("latin-1").split(",") if p.strip()]
    return out
