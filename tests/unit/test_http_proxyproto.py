"""corral.http.proxyproto: PROXY protocol v1 and v2 headers, whole and in pieces."""

from __future__ import annotations

import socket
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from corral.http.proxyproto import (
    V2_MAX,
    V2_SIGNATURE,
    ProxyHeader,
    ProxyMode,
    ProxyProtocolError,
    parse,
)

V1 = b"PROXY TCP4 198.51.100.7 10.0.0.1 56324 443\r\n"
REQUEST = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"


def v2(command: int, family: int, body: bytes) -> bytes:
    return V2_SIGNATURE + bytes([0x20 | command, family]) + struct.pack("!H", len(body)) + body


def tcp4(src: str, dst: str, sport: int, dport: int, tlvs: bytes = b"") -> bytes:
    body = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!HH", sport, dport)
    return v2(1, 0x11, body + tlvs)


def test_v1_tcp4_and_tcp6() -> None:
    assert parse(V1 + REQUEST, ProxyMode.V1) == (
        ProxyHeader(1, ("198.51.100.7", 56324), ("10.0.0.1", 443)),
        len(V1),
    )
    six = b"PROXY TCP6 2001:db8::1 ::1 1 2\r\n"
    assert parse(six, ProxyMode.AUTO) == (ProxyHeader(1, ("2001:db8::1", 1), ("::1", 2)), len(six))
    unknown = b"PROXY UNKNOWN ffff::1 ffff::2 3 4\r\n"
    assert parse(unknown, ProxyMode.V1) == (ProxyHeader(1, None, None), len(unknown))


def test_v2_families_and_tlvs_skipped() -> None:
    tlv = b"\x01\x00\x02h2" + b"\x04\x00\x00"  # ALPN, NOOP
    header = tcp4("203.0.113.5", "10.0.0.2", 40000, 80, tlv)
    assert parse(header + REQUEST, ProxyMode.V2) == (
        ProxyHeader(2, ("203.0.113.5", 40000), ("10.0.0.2", 80)),
        len(header),
    )
    six = v2(1, 0x21, socket.inet_pton(socket.AF_INET6, "2001:db8::7") * 2 + b"\x00\x01\x00\x02")
    assert parse(six, ProxyMode.AUTO) == (
        ProxyHeader(2, ("2001:db8::7", 1), ("2001:db8::7", 2)),
        len(six),
    )
    unix = v2(1, 0x31, b"/tmp/a".ljust(108, b"\0") + b"/tmp/b".ljust(108, b"\0"))
    assert parse(unix, ProxyMode.V2) == (ProxyHeader(2, None, None), len(unix))
    local = v2(0, 0x00, b"")  # a health check from the proxy itself
    assert parse(local, ProxyMode.V2) == (ProxyHeader(2, None, None), 16)


@pytest.mark.parametrize("header", [V1, tcp4("192.0.2.1", "192.0.2.2", 1, 2, b"\x04\x00\x01x")])
def test_byte_by_byte_needs_more_until_whole(header: bytes) -> None:
    for cut in range(len(header)):
        assert parse(header[:cut], ProxyMode.AUTO) is None, cut
    assert parse(header, ProxyMode.AUTO) is not None


def test_auto_lets_plain_bytes_through() -> None:
    assert parse(REQUEST, ProxyMode.AUTO) == (None, 0)
    assert parse(b"PROPFIND / HTTP/1.1\r\n", ProxyMode.AUTO) == (None, 0)
    assert parse(b"\x16\x03\x01\x02\x00", ProxyMode.AUTO) == (None, 0)  # a TLS ClientHello
    assert parse(b"PRO", ProxyMode.AUTO) is None  # could still be either


@pytest.mark.parametrize(
    ("data", "mode"),
    [
        (REQUEST, ProxyMode.V1),
        (REQUEST, ProxyMode.V2),
        (V1, ProxyMode.V2),  # the other version
        (tcp4("1.1.1.1", "2.2.2.2", 1, 2), ProxyMode.V1),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", ProxyMode.V1),
        (b"PROXY TCP4 ::1 ::1 1 2\r\n", ProxyMode.V1),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 99999\r\n", ProxyMode.V1),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", ProxyMode.V1),
        (b"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n", ProxyMode.V1),
        (b"PROXY " + b"x" * 120, ProxyMode.V1),  # no CRLF within 107 bytes
        (V2_SIGNATURE + b"\x31\x11\x00\x0c" + b"\0" * 12, ProxyMode.V2),  # version 3
        (V2_SIGNATURE + b"\x22\x11\x00\x0c" + b"\0" * 12, ProxyMode.V2),  # command 2
        (V2_SIGNATURE + b"\x21\x11\x00\x04" + b"\0" * 4, ProxyMode.V2),  # short addresses
        (V2_SIGNATURE + b"\x21\x51\x00\x0c" + b"\0" * 12, ProxyMode.V2),  # family 5
        (V2_SIGNATURE + b"\x21\x11" + struct.pack("!H", V2_MAX), ProxyMode.V2),  # too long
    ],
)
def test_garbage_is_refused(data: bytes, mode: ProxyMode) -> None:
    with pytest.raises(ProxyProtocolError):
        parse(data, mode)


def test_mode_words_include_gunicorns_boolean() -> None:
    on, off = ProxyMode(True), ProxyMode(False)  # type: ignore[arg-type]
    assert on is ProxyMode.AUTO and off is ProxyMode.OFF
    assert ProxyMode("v2") is ProxyMode.V2


@given(st.binary(max_size=300), st.sampled_from([ProxyMode.V1, ProxyMode.V2, ProxyMode.AUTO]))
def test_any_bytes_parse_or_refuse_cleanly(data: bytes, mode: ProxyMode) -> None:
    for prefix in (b"", b"PROXY ", V2_SIGNATURE):
        try:
            result = parse(prefix + data, mode)
        except ProxyProtocolError:
            continue
        if result is not None:
            assert 0 <= result[1] <= len(prefix + data)
