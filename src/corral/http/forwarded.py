"""What a trusted proxy says about the request it forwarded: scheme, client, host and port.

Theory of operation. A proxy in front of corral terminates TLS and opens its own connection,
so the socket shows the proxy's address and ``http``. It passes the original facts in headers:
``X-Forwarded-Proto`` (or gunicorn's ``X-Forwarded-Ssl: on`` / ``X-Forwarded-Protocol: ssl``),
``X-Forwarded-For``, ``X-Forwarded-Host``, ``X-Forwarded-Port``, or RFC 7239's ``Forwarded``.
Any client can send those headers too, so they count only when the connection comes from an
address in the allow-list (:class:`TrustedProxies`, gunicorn's ``forwarded_allow_ips``: IPs
and CIDR networks, ``*`` for all; a unix-socket peer is trusted, as gunicorn does). From any
other peer they are ignored and the request keeps the socket's values.

:func:`resolve` is pure (headers in, :class:`Resolved` out) and shared by the WSGI and ASGI
workers. Its rules:

* X-Forwarded-* win when any of them is present; ``Forwarded`` is used only without them (a
  proxy that sets X-Forwarded-* usually passes a client's ``Forwarded`` through untouched).
* The client is found by walking ``X-Forwarded-For`` (or the ``for=`` of each ``Forwarded``
  element) from the right, each hop appended by a proxy, skipping hops that are themselves
  trusted: the first untrusted one is the client; if every hop is trusted, the leftmost. A
  hop that is not an address (``unknown``, an obfuscated ``_id``, garbage) ends the walk at
  the last address before it (RFC 7239 §6.3, §6.2: the proxy chose not to say).
* Scheme, host and port come from the rightmost value of their X-Forwarded-* header (the
  nearest proxy's), or from the ``Forwarded`` element the walk chose. Only ``http``/``https``
  (``ws``/``wss`` map to them) are taken; contradictory scheme headers (gunicorn refuses those
  with 400) leave the socket's scheme, so a disagreement never makes a request look secure.
* Malformed values are ignored, never raised: the request proceeds with the socket's values.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Iterable
from typing import NamedTuple

Peer = tuple[str, int]
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# gunicorn's default forwarded_allow_ips (and proxy_allow_ips): the loopback proxy.
DEFAULT_ALLOW = ("127.0.0.1", "::1")

_SCHEMES = {"http": "http", "https": "https", "ws": "http", "wss": "https"}
# gunicorn's secure_scheme_headers default: header -> the value that means https.
_SECURE_VALUES = {b"x-forwarded-ssl": "on", b"x-forwarded-protocol": "ssl"}
_X_NAMES = frozenset(
    (
        b"x-forwarded-for",
        b"x-forwarded-proto",
        b"x-forwarded-host",
        b"x-forwarded-port",
        b"x-forwarded-ssl",
        b"x-forwarded-protocol",
    )
)
NAMES = _X_NAMES | {b"forwarded"}
# The environ keys of those headers: one isdisjoint() tells the WSGI hot path "none here".
ENVIRON_KEYS = frozenset("HTTP_" + n.decode().upper().replace("-", "_") for n in NAMES)

# A Host value: reg-name or IPv4 (RFC 3986 §3.2.2 characters) or [IPv6], with an optional port.
_HOST = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~!$&'()*+;=%]+)(?::(\d{1,5}))?")
# RFC 7239 §4 / RFC 9110 §5.6.2: token, and quoted-string with quoted-pair.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"')
_OBF = re.compile(r"_[A-Za-z0-9._\-]+")  # RFC 7239 §6.3 obfnode / obfport
_MAX_HOPS = 64  # bound the walk: a header may repeat a hop without end
_RESULTS_MAX = 256  # resolve()'s answers kept (keys hold header values: a few MiB at most)


class TrustedProxies:
    """An allow-list of proxy addresses: IPs and networks (``10.0.0.0/8``), ``*`` for any.

    Build it once (it raises ``ValueError`` naming a bad entry); ``host in trusted`` is then a
    cached lookup. IPv4-mapped IPv6 peers (``::ffff:127.0.0.1``, on a dual-stack listener)
    match their IPv4 entries.
    """

    __slots__ = ("_cache", "_nets", "everyone", "results", "spec")

    def __init__(self, entries: Iterable[str]) -> None:
        items = [part.strip() for entry in entries for part in entry.split(",") if part.strip()]
        self.spec = ",".join(items)
        self.everyone = "*" in items
        self._nets: list[Network] = []
        for item in items:
            if item == "*":
                continue
            try:
                self._nets.append(
                    ipaddress.ip_network(item.replace("[", "").replace("]", ""), strict=False)
                )
            except ValueError:
                raise ValueError(f"{item!r} is not an IP address or network") from None
        self._cache: dict[str, bool] = {}
        # resolve()'s answers, by everything they depend on: a proxy's kept-alive connection
        # sends the same headers again and again (bounded: clients choose the values).
        self.results: dict[tuple[object, ...], Resolved] = {}

    def __contains__(self, host: object) -> bool:
        if self.everyone:
            return True
        if not isinstance(host, str):
            return False
        known = self._cache.get(host)
        if known is None:
            known = self._match(host)
            if len(self._cache) >= 1024:  # bounded: hosts come from clients' headers too
                self._cache.clear()
            self._cache[host] = known
        return known

    def _match(self, host: str) -> bool:
        addr = _ip(host)
        return addr is not None and any(addr in net for net in self._nets)

    def trusts(self, peer: Peer | None) -> bool:
        """Whether headers from this peer count; ``None`` (a unix socket) is trusted."""
        return peer is None or peer[0] in self

    def __repr__(self) -> str:
        return f"TrustedProxies({self.spec!r})"


class Resolved(NamedTuple):
    """The request as the client made it. ``client`` is ``(ip, port)`` (port 0 when the
    proxy did not say) or None (a unix socket). ``host`` is the Host value to present
    (``HTTP_HOST``), ``server_host``/``server_port`` the SERVER_NAME/SERVER_PORT; None
    means unchanged (the request's own Host, the socket's port)."""

    scheme: str
    client: Peer | None
    host: str | None
    server_host: str | None
    server_port: int | None


def resolve(
    peer: Peer | None,
    server: Peer | None,
    scheme: str,
    headers: list[tuple[bytes, bytes]],
    trusted: TrustedProxies,
    *,
    client: Peer | None = None,
) -> Resolved:
    """Apply the forwarding headers of ``headers`` (lower-cased names) from ``peer``.

    ``peer`` is the connection's immediate peer, the one whose trust decides; ``client`` the
    client known so far when it differs (a PROXY protocol header named it), else ``peer``.
    ``server`` is the socket's own address (for the record; None on a unix socket).
    """
    client = client if client is not None else peer
    same = Resolved(scheme, client, None, None, None)
    if not trusted.trusts(peer):
        return same
    found = _collect(headers)
    if not found:
        return same
    key = (client, scheme, *found.items())
    resolved = trusted.results.get(key)
    if resolved is None:
        if any(name in _X_NAMES for name in found):
            resolved = _from_x_forwarded(found, scheme, client, trusted)
        else:
            resolved = _from_forwarded(found[b"forwarded"], scheme, client, trusted)
        if len(trusted.results) >= _RESULTS_MAX:
            trusted.results.clear()
        trusted.results[key] = resolved
    return resolved


def _collect(headers: list[tuple[bytes, bytes]]) -> dict[bytes, str]:
    """The forwarding headers, each repeated field joined with ", " (RFC 9110 §5.3)."""
    found: dict[bytes, str] = {}
    for name, value in headers:
        if name in NAMES:
            text = value.decode("latin-1")
            found[name] = found[name] + ", " + text if name in found else text
    return found


def _from_x_forwarded(
    found: dict[bytes, str], scheme: str, client: Peer | None, trusted: TrustedProxies
) -> Resolved:
    forwarded_for = found.get(b"x-forwarded-for")
    if forwarded_for is not None:
        hops = [_x_hop(item) for item in _split_list(forwarded_for)]
        client = _walk(hops, client, trusted)[1]
    scheme = _x_scheme(found, scheme)
    host = _last(found.get(b"x-forwarded-host"))
    port = _port(_last(found.get(b"x-forwarded-port")))
    return _with_host(scheme, client, host, port)


def _from_forwarded(
    value: str, scheme: str, client: Peer | None, trusted: TrustedProxies
) -> Resolved:
    elements = parse_forwarded(value)
    if not elements:
        return Resolved(scheme, client, None, None, None)
    hops = [parse_node(e["for"]) if "for" in e else None for e in elements]
    index, client = _walk(hops, client, trusted)
    chosen = elements[index]  # what the proxy that faced the client saw
    proto = _SCHEMES.get(chosen.get("proto", "").lower())
    return _with_host(proto or scheme, client, chosen.get("host"), None)


def _with_host(scheme: str, client: Peer | None, host: str | None, port: int | None) -> Resolved:
    """Attach a validated Host value: SERVER_NAME from it, SERVER_PORT from it, else from
    X-Forwarded-Port, else the scheme's default (a proxy on :443 sends a bare name)."""
    if host is not None:
        match = _HOST.fullmatch(host)
        explicit = _port(match.group(2)) if match is not None else None
        if match is not None and (explicit is not None or match.group(2) is None):
            default = 443 if scheme == "https" else 80
            server_port = explicit or port or default
            return Resolved(scheme, client, host, match.group(1), server_port)
    return Resolved(scheme, client, None, None, port)


def _x_scheme(found: dict[bytes, str], scheme: str) -> str:
    """The scheme the X-Forwarded-* headers agree on; the socket's when none or they differ."""
    said: set[str] = set()
    proto = _last(found.get(b"x-forwarded-proto"))
    if proto is not None and proto.lower() in _SCHEMES:
        said.add(_SCHEMES[proto.lower()])
    for name, secure_value in _SECURE_VALUES.items():
        value = found.get(name)
        if value is not None:
            said.add("https" if value.strip().lower() == secure_value else "http")
    return said.pop() if len(said) == 1 else scheme


def _walk(
    hops: list[Peer | None], client: Peer | None, trusted: TrustedProxies
) -> tuple[int, Peer | None]:
    """(index, client) of the hop that faced the client, walking from the right: the first
    untrusted address, the leftmost if all are trusted; a hop that is not an address stops
    the walk with the client known so far (``client``, or the trusted hop right of it)."""
    index = len(hops) - 1
    for index in range(len(hops) - 1, max(len(hops) - 1 - _MAX_HOPS, -1), -1):
        hop = hops[index]
        if hop is None:
            return index, client
        client = hop
        if hop[0] not in trusted:
            return index, client
    return max(index, 0), client


# ------------------------------------------------------------------------------------ parsing


def parse_forwarded(value: str) -> list[dict[str, str]]:
    """RFC 7239 §4: the elements of a ``Forwarded`` value, each {parameter: value} with
    names lower-cased and quoted strings unquoted; ``[]`` when any of it is malformed (a
    half-understood header is not trusted at all)."""
    elements: list[dict[str, str]] = [{}]
    pos, end = 0, len(value)
    while pos < end:
        char = value[pos]
        if char in " \t":
            pos += 1
        elif char == ",":
            elements.append({})
            pos += 1
        elif char == ";":
            pos += 1
        else:
            parsed = _pair(value, pos)
            if parsed is None:
                return []
            name, text, pos = parsed
            if name in elements[-1]:
                return []  # §4: a parameter MUST NOT occur more than once per element
            elements[-1][name] = text
    return [e for e in elements if e]


def _pair(value: str, pos: int) -> tuple[str, str, int] | None:
    """``token "=" (token / quoted-string)`` at ``pos``: (name, value, end) or None."""
    name = _TOKEN.match(value, pos)
    if name is None or value[name.end() : name.end() + 1] != "=":
        return None
    start = name.end() + 1
    token = _TOKEN.match(value, start)
    if token is not None:
        return name.group().lower(), token.group(), token.end()
    quoted = _QUOTED.match(value, start)
    if quoted is None:
        return None
    text = re.sub(r"\\(.)", r"\1", quoted.group(1))
    return name.group().lower(), text, quoted.end()


def parse_node(node: str) -> Peer | None:
    """RFC 7239 §6: ``nodename [":" node-port]`` as (ip, port), port 0 when absent or
    obfuscated; None for ``unknown``, an obfuscated identifier or anything malformed.
    IPv6 is bracketed (``"[2001:db8::1]:80"``, quoted in the header)."""
    if node.startswith("["):
        close = node.find("]")
        if close == -1:
            return None
        host, rest = node[1:close], node[close + 1 :]
        if _ip(host) is None or host.count(":") < 2:
            return None
    else:
        host, colon, port_text = node.partition(":")
        rest = colon + port_text
        if _ip(host) is None:
            return None
    if not rest:
        return host, 0
    if rest[0] != ":":
        return None
    if _OBF.fullmatch(rest[1:]):
        return host, 0
    port = _port(rest[1:])
    return (host, port) if port is not None else None


def _x_hop(item: str) -> Peer | None:
    """One X-Forwarded-For entry: ``ip``, ``ip:port``, ``[v6]:port`` or a bare IPv6."""
    if ":" in item and not item.startswith("[") and item.count(":") > 1:
        return (item, 0) if _ip(item) is not None else None  # a bare IPv6 address
    return parse_node(item)


def _split_list(value: str) -> list[str]:
    return [item.strip().strip('"') for item in value.split(",") if item.strip()]


def _last(value: str | None) -> str | None:
    if value is None:
        return None
    items = _split_list(value)
    return items[-1] if items else None


def _port(text: str | None) -> int | None:
    if text is None or not (text.isascii() and text.isdigit()) or len(text) > 5:
        return None
    if not 0 < int(text) < 65536:
        return None
    return int(text)


def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """``host`` as an address (IPv4-mapped IPv6 as its IPv4), or None."""
    return _address(host) if len(host) <= _ADDRESS_MAX else None


_ADDRESS_MAX = 45  # the longest IPv6 text (IPv4-mapped, RFC 4291 §2.2); keeps the cache small


@functools.lru_cache(maxsize=4096)  # ipaddress takes microseconds; proxies repeat clients
def _address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr
