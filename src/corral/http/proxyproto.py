"""The PROXY protocol (HAProxy's, versions 1 and 2): the header a TCP proxy sends first.

Theory of operation. A layer-4 proxy (HAProxy ``send-proxy``/``send-proxy-v2``, an AWS NLB,
stunnel) opens its own connection to corral, so the socket shows the proxy's address. Before
any other byte it sends one header naming the real client:

* v1, text: ``PROXY TCP4|TCP6|UNKNOWN src dst sport dport\\r\\n``, at most 107 bytes.
* v2, binary: the 12-byte signature ``\\r\\n\\r\\n\\0\\r\\nQUIT\\n``, version/command byte
  (``0x21`` PROXY, ``0x20`` LOCAL: a health check, keep the socket's address), family/
  transport byte (TCP4 ``0x11``, TCP6 ``0x21``, UNIX ``0x31``, UNSPEC ``0x00``), a 16-bit
  length, then the addresses and optional TLVs (skipped). Bounded here to ``V2_MAX`` bytes.

:func:`parse` is sans-IO: bytes in, ``(header, size)`` out, ``None`` while more bytes are
needed, :class:`ProxyProtocolError` for anything else (the caller closes the connection: it
is not HTTP and not a proxy we understand). In ``auto`` mode bytes that start neither version
are not a header (``(None, 0)``) and go to the HTTP parser as they are. While ``parse`` says
more is needed, every byte seen so far belongs to the header, so a reader may consume them all
and still never read past the header (TLS must get the bytes after it from the socket).
"""

from __future__ import annotations

import ipaddress
from enum import StrEnum
from typing import NamedTuple

V1_PREFIX = b"PROXY "
V1_MAX = 107  # the spec's longest v1 line, CRLF included
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
V2_HEAD = 16  # signature, version/command, family, length
V2_MAX = V2_HEAD + 4096  # addresses (216 at most, for UNIX) plus TLVs; more is refused

_V2_ADDRESS_SIZE = {0x1: 12, 0x2: 36, 0x3: 216}  # INET, INET6, UNIX: src, dst (+ ports)


class ProxyMode(StrEnum):
    """``--proxy-protocol``: which header a connection from an allowed proxy must start with."""

    OFF = "off"
    V1 = "v1"
    V2 = "v2"
    AUTO = "auto"  # either version, or none (the bytes are plain HTTP/TLS)

    @classmethod
    def _missing_(cls, value: object) -> ProxyMode | None:
        """gunicorn's older boolean ``proxy_protocol = True`` meant "detect": auto."""
        if isinstance(value, bool):
            return cls.AUTO if value else cls.OFF
        if isinstance(value, str) and value.strip().lower() in ("true", "false"):
            return cls.AUTO if value.strip().lower() == "true" else cls.OFF
        return None


class ProxyProtocolError(ValueError):
    """The bytes are not a PROXY header of an accepted version; close the connection."""


class ProxyHeader(NamedTuple):
    """A parsed header. ``source``/``dest`` are ``(ip, port)``, or None when the header
    carries no IP address (v1 UNKNOWN, v2 LOCAL, UNSPEC or UNIX): keep the socket's."""

    version: int
    source: tuple[str, int] | None
    dest: tuple[str, int] | None


def parse(data: bytes, mode: ProxyMode) -> tuple[ProxyHeader | None, int] | None:
    """The header at the start of ``data``: ``(header, bytes it takes)``; ``None`` when more
    bytes are needed; ``(None, 0)`` in ``auto`` mode when ``data`` starts no header."""
    version = _version(data, mode)
    if version == 0:
        return (None, 0) if mode is ProxyMode.AUTO else _refuse(data, mode)
    if version < 0:
        return None
    return _parse_v1(data) if version == 1 else _parse_v2(data)


def _version(data: bytes, mode: ProxyMode) -> int:
    """1 or 2 when ``data`` starts that version's header, 0 when it starts neither accepted
    one, -1 when it is still a prefix of one."""
    undecided = False
    for version, magic in ((1, V1_PREFIX), (2, V2_SIGNATURE)):
        if mode not in (ProxyMode.AUTO, ProxyMode(f"v{version}")):
            continue
        if data[: len(magic)] == magic:
            return version
        if magic.startswith(data[: len(magic)]):
            undecided = True
    return -1 if undecided else 0


def _refuse(data: bytes, mode: ProxyMode) -> tuple[ProxyHeader | None, int]:
    raise ProxyProtocolError(f"expected a PROXY protocol {mode.value} header, got {data[:16]!r}")


def _parse_v1(data: bytes) -> tuple[ProxyHeader, int] | None:
    end = data.find(b"\r\n", 0, V1_MAX)
    if end == -1:
        if len(data) >= V1_MAX or b"\n" in data:
            raise ProxyProtocolError("PROXY v1 line too long or not ended by CRLF")
        return None
    parts = data[:end].split(b" ")
    if len(parts) >= 2 and parts[1] == b"UNKNOWN":
        return ProxyHeader(1, None, None), end + 2
    if len(parts) != 6 or parts[1] not in (b"TCP4", b"TCP6"):
        raise ProxyProtocolError(f"malformed PROXY v1 line {data[:end]!r}")
    family = 4 if parts[1] == b"TCP4" else 6
    source = _v1_address(parts[2], parts[4], family)
    dest = _v1_address(parts[3], parts[5], family)
    return ProxyHeader(1, source, dest), end + 2


def _v1_address(host: bytes, port: bytes, family: int) -> tuple[str, int]:
    try:
        addr = ipaddress.ip_address(host.decode("ascii"))
    except (ValueError, UnicodeDecodeError):
        raise ProxyProtocolError(f"bad address {host!r} in PROXY v1 line") from None
    if addr.version != family:
        raise ProxyProtocolError(f"address {host!r} is not IPv{family}")
    if not port.isdigit() or len(port) > 5 or int(port) > 65535:
        raise ProxyProtocolError(f"bad port {port!r} in PROXY v1 line")
    return str(addr), int(port)


def _parse_v2(data: bytes) -> tuple[ProxyHeader, int] | None:
    if len(data) < V2_HEAD:
        return None
    ver_cmd, fam = data[12], data[13]
    size = V2_HEAD + int.from_bytes(data[14:16], "big")
    if ver_cmd >> 4 != 2 or ver_cmd & 0xF > 1:
        raise ProxyProtocolError(f"PROXY v2 version/command byte {ver_cmd:#x} unknown")
    if size > V2_MAX:
        raise ProxyProtocolError(f"PROXY v2 header of {size} bytes (more than {V2_MAX})")
    if len(data) < size:
        return None
    if ver_cmd & 0xF == 0:  # LOCAL: the proxy's own connection (a health check)
        return ProxyHeader(2, None, None), size
    family, body = fam >> 4, data[V2_HEAD:size]
    want = _V2_ADDRESS_SIZE.get(family)
    if family == 0 or family == 0x3:  # UNSPEC, UNIX: no IP address to report
        if want is not None and len(body) < want:
            raise ProxyProtocolError("PROXY v2 header shorter than its addresses")
        return ProxyHeader(2, None, None), size
    if want is None or fam & 0xF not in (1, 2):
        raise ProxyProtocolError(f"PROXY v2 family/transport byte {fam:#x} unknown")
    if len(body) < want:
        raise ProxyProtocolError("PROXY v2 header shorter than its addresses")
    n = 4 if family == 0x1 else 16
    src, dst = ipaddress.ip_address(body[:n]), ipaddress.ip_address(body[n : 2 * n])
    ports = body[2 * n : 2 * n + 4]
    source = (str(src), int.from_bytes(ports[:2], "big"))
    dest = (str(dst), int.from_bytes(ports[2:], "big"))
    return ProxyHeader(2, source, dest), size  # TLVs (body[want:]) are skipped
