"""Build the PEP 3333 ``environ`` for one request.

Theory of operation: everything that is fixed for a connection (the socket's server name and
port, the peer address, the ``wsgi.*`` constants) goes into a *base* dict once per connection
(:func:`connection_environ`); each request copies that dict and adds only what the request
carries (:func:`build_environ`). Header names map to ``HTTP_*`` keys through a small cache, so
the hot path does one dict lookup per header instead of ``upper().replace()``; the Host
value's split into SERVER_NAME/SERVER_PORT is cached the same way (both bounded).

Strings follow PEP 3333 "native strings": bytes from the wire are decoded as latin-1, so every
byte survives and an app can recover the raw bytes with ``.encode("latin-1")``.
"""

from __future__ import annotations

import sys
from typing import IO, Any
from urllib.parse import unquote_to_bytes

from corral import __version__
from corral.http.events import Request

# RFC 3875 §4.1.17 product/version; some apps and libraries branch on it.
SERVER_SOFTWARE = f"corral/{__version__}"

# Header names whose CGI keys are not "HTTP_" + name (RFC 3875 §4.1.2, §4.1.3); PEP 3333 forbids
# HTTP_CONTENT_TYPE / HTTP_CONTENT_LENGTH.
_SPECIAL_KEYS = {b"content-type": "CONTENT_TYPE", b"content-length": "CONTENT_LENGTH"}
# Repeated Cookie fields are joined with "; " (RFC 9113 §8.2.3, what browsers expect);
# every other repeated field with ", " (RFC 9110 §5.3).
_COOKIE_KEY = "HTTP_COOKIE"
_KEY_CACHE: dict[bytes, str] = {}
_KEY_CACHE_MAX = 512  # bounded: clients choose header names


def header_key(name: bytes) -> str:
    """Map a lower-cased header name to its environ key (cached)."""
    key = _KEY_CACHE.get(name)
    if key is None:
        key = _SPECIAL_KEYS.get(name) or "HTTP_" + name.decode("latin-1").upper().replace("-", "_")
        if len(_KEY_CACHE) < _KEY_CACHE_MAX:
            _KEY_CACHE[name] = key
    return key


def decode_path(path: bytes) -> str:
    """Percent-decode a raw path and return it as a latin-1 native string (PEP 3333)."""
    if b"%" in path:
        path = unquote_to_bytes(path)
    return path.decode("latin-1")


def split_host(host: bytes, default_port: str) -> tuple[str, str]:
    """Split a Host value into (name, port); IPv6 literals keep their brackets."""
    text = host.decode("latin-1")
    if text.startswith("["):
        end = text.find("]")
        if end != -1 and text[end + 1 : end + 2] == ":":
            return text[: end + 1], text[end + 2 :] or default_port
        return text, default_port
    name, sep, port = text.rpartition(":")
    if sep and port.isdigit():
        return name, port
    return text, default_port


_SERVER_CACHE: dict[tuple[bytes, str], tuple[str, str]] = {}
_SERVER_CACHE_MAX = 256  # bounded: clients choose Host values


def _server_of(host: bytes, default_port: str) -> tuple[str, str]:
    """``split_host``, cached: a server sees few distinct Host values."""
    key = (host, default_port)
    server = _SERVER_CACHE.get(key)
    if server is None:
        server = split_host(host, default_port)
        if len(_SERVER_CACHE) >= _SERVER_CACHE_MAX:
            _SERVER_CACHE.clear()
        _SERVER_CACHE[key] = server
    return server


def connection_environ(
    *,
    server_name: str,
    server_port: str,
    remote_addr: str,
    remote_port: str,
    url_scheme: str = "http",
    errors: IO[str] | None = None,
    multithread: bool = False,
    file_wrapper: Any = None,
) -> dict[str, Any]:
    """The part of the environ that is the same for every request on one connection."""
    base: dict[str, Any] = {
        "SERVER_SOFTWARE": SERVER_SOFTWARE,
        "SERVER_NAME": server_name,
        "SERVER_PORT": server_port,
        "REMOTE_ADDR": remote_addr,
        "REMOTE_PORT": remote_port,
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": url_scheme,
        "wsgi.errors": errors if errors is not None else sys.stderr,
        "wsgi.multithread": multithread,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
        "wsgi.input_terminated": True,
    }
    if file_wrapper is not None:
        base["wsgi.file_wrapper"] = file_wrapper
    return base


# What a request adds to the base, by the identity of its (read-only) ``Request``: the HTTP
# core hands out the same object for a head it has seen (``corral.http.connection._HEADS``),
# so a repeated head costs two dict copies here. The entry keeps its Request alive (an id is
# never reused while cached) and records the inputs the part depends on. Bounded.
_PARTS: dict[int, tuple[Request, str, str, dict[str, Any]]] = {}
_PARTS_MAX = 256


def build_environ(
    request: Request,
    base: dict[str, Any],
    input: Any,
    root_path: str = "",
) -> dict[str, Any]:
    """A complete PEP 3333 environ for ``request`` on a connection whose base is ``base``.

    ``root_path`` becomes SCRIPT_NAME; when PATH_INFO starts with it, it is stripped from
    PATH_INFO (the app is mounted below that prefix, as behind a path-routing proxy).
    """
    port = base["SERVER_PORT"]
    entry = _PARTS.get(id(request))
    if entry is None or entry[0] is not request or entry[1] != root_path or entry[2] != port:
        part = _request_part(request, port, root_path)
        if len(_PARTS) >= _PARTS_MAX:
            _PARTS.clear()
        _PARTS[id(request)] = (request, root_path, port, part)
    else:
        part = entry[3]
    environ = base.copy()
    environ.update(part)
    environ["wsgi.input"] = input
    return environ


def _request_part(request: Request, default_port: str, root_path: str) -> dict[str, Any]:
    """The keys ``request`` sets over a base whose SERVER_PORT is ``default_port`` (none of
    a base's keys is an ``HTTP_*``/``CONTENT_*`` one, so nothing here depends on the rest)."""
    environ: dict[str, Any] = {}
    path = decode_path(request.path)
    script_name = ""
    if root_path and (path == root_path or path.startswith(root_path + "/")):
        script_name, path = root_path, path[len(root_path) :]
    elif root_path:
        script_name = root_path
    environ["REQUEST_METHOD"] = request.method.decode("latin-1")
    environ["SCRIPT_NAME"] = script_name
    environ["PATH_INFO"] = path
    environ["QUERY_STRING"] = request.query.decode("latin-1")
    environ["RAW_URI"] = request.target.decode("latin-1")
    environ["SERVER_PROTOCOL"] = "HTTP/" + request.http_version
    if request.host:
        environ["SERVER_NAME"], environ["SERVER_PORT"] = _server_of(request.host, default_port)
    _add_headers(environ, request.headers)
    if request.content_length is not None:
        environ["CONTENT_LENGTH"] = str(request.content_length)
    else:  # chunked or no body: the app reads wsgi.input to EOF (wsgi.input_terminated)
        environ.pop("CONTENT_LENGTH", None)
    return environ


def _add_headers(environ: dict[str, Any], headers: list[tuple[bytes, bytes]]) -> None:
    cache = _KEY_CACHE
    for name, value in headers:
        key = cache.get(name) or header_key(name)
        text = value.decode("latin-1")
        if key in environ:
            sep = "; " if key == _COOKIE_KEY else ", "
            environ[key] = environ[key] + sep + text
        else:
            environ[key] = text
