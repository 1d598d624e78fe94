"""corral.http.forwarded: which proxy headers count, and what they say."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from corral.http.forwarded import (
    ENVIRON_KEYS,
    NAMES,
    Resolved,
    TrustedProxies,
    parse_forwarded,
    parse_node,
    resolve,
)

LOCAL = TrustedProxies(["127.0.0.1", "::1"])
PROXY = ("127.0.0.1", 40000)


def _h(*pairs: tuple[str, str]) -> list[tuple[bytes, bytes]]:
    return [(name.lower().encode(), value.encode("latin-1")) for name, value in pairs]


def _resolve(
    *pairs: tuple[str, str],
    peer: tuple[str, int] | None = PROXY,
    trusted: TrustedProxies = LOCAL,
) -> Resolved:
    return resolve(peer, ("127.0.0.1", 8000), "http", _h(*pairs), trusted)


def test_allow_list_takes_ips_networks_and_star() -> None:
    nets = TrustedProxies(["10.0.0.0/8, 192.168.1.5", "::1", "[fd00::]/8"])
    assert "10.200.3.4" in nets and "192.168.1.5" in nets and "::1" in nets
    assert "fd12::1" in nets and "::ffff:10.1.1.1" in nets  # IPv4-mapped, dual-stack listener
    assert "192.168.1.6" not in nets and "unknown" not in nets and "" not in nets
    assert "203.0.113.9" in TrustedProxies(["*"])
    assert "127.0.0.1" not in TrustedProxies([])
    assert LOCAL.trusts(None)  # a unix-socket peer, as gunicorn
    with pytest.raises(ValueError, match=r"'10\.0\.0\.300' is not an IP address"):
        TrustedProxies(["10.0.0.300"])


def test_x_forwarded_from_a_trusted_peer() -> None:
    got = _resolve(
        ("X-Forwarded-Proto", "https"),
        ("X-Forwarded-For", "203.0.113.7, 127.0.0.1"),
        ("X-Forwarded-Host", "shop.example"),
    )
    assert got == Resolved("https", ("203.0.113.7", 0), "shop.example", "shop.example", 443)


def test_untrusted_peer_changes_nothing() -> None:
    peer = ("127.0.0.2", 5555)
    got = _resolve(
        ("X-Forwarded-Proto", "https"),
        ("X-Forwarded-For", "1.2.3.4"),
        ("Forwarded", "for=1.2.3.4;proto=https"),
        peer=peer,
    )
    assert got == Resolved("http", peer, None, None, None)


def test_rightmost_untrusted_hop_is_the_client() -> None:
    trusted = TrustedProxies(["127.0.0.1", "10.0.0.0/8"])
    spoofed = ("X-Forwarded-For", "6.6.6.6, 198.51.100.2, 10.1.1.1")
    assert _resolve(spoofed, trusted=trusted).client == ("198.51.100.2", 0)
    assert _resolve(("X-Forwarded-For", "10.0.0.9, 10.1.1.1"), trusted=trusted).client == (
        "10.0.0.9",
        0,
    )  # all trusted: the leftmost
    assert _resolve(("X-Forwarded-For", "[2001:db8::1]:4711")).client == ("2001:db8::1", 4711)
    assert _resolve(("X-Forwarded-For", "2001:db8::1")).client == ("2001:db8::1", 0)
    assert _resolve(("X-Forwarded-For", "198.51.100.2:80")).client == ("198.51.100.2", 80)
    # repeated fields are one list (RFC 9110 §5.3)
    two = _resolve(("X-Forwarded-For", "198.51.100.2"), ("X-Forwarded-For", "127.0.0.1"))
    assert two.client == ("198.51.100.2", 0)


def test_a_hop_that_is_no_address_stops_the_walk() -> None:
    assert _resolve(("X-Forwarded-For", "garbage")).client == PROXY
    assert _resolve(("X-Forwarded-For", "1.2.3.4, unknown, 127.0.0.1")).client == (
        "127.0.0.1",
        0,
    )


@pytest.mark.parametrize(
    ("pairs", "scheme"),
    [
        ((("X-Forwarded-Proto", "https"),), "https"),
        ((("X-Forwarded-Proto", "HTTPS"),), "https"),
        ((("X-Forwarded-Proto", "wss"),), "https"),
        ((("X-Forwarded-Proto", "http, https"),), "https"),  # the nearest proxy's
        ((("X-Forwarded-Ssl", "on"),), "https"),  # gunicorn's secure_scheme_headers
        ((("X-Forwarded-Protocol", "ssl"),), "https"),
        ((("X-Forwarded-Proto", "ftp"),), "http"),
        ((("X-Forwarded-Proto", "https"), ("X-Forwarded-Ssl", "off")), "http"),  # contradiction
        ((("X-Forwarded-Proto", "https"), ("X-Forwarded-Ssl", "on")), "https"),
    ],
)
def test_scheme(pairs: tuple[tuple[str, str], ...], scheme: str) -> None:
    assert _resolve(*pairs).scheme == scheme


def test_host_and_port() -> None:
    assert _resolve(("X-Forwarded-Host", "a.example:8443")).server_port == 8443
    got = _resolve(("X-Forwarded-Host", "a.example"), ("X-Forwarded-Port", "8080"))
    assert (got.host, got.server_host, got.server_port) == ("a.example", "a.example", 8080)
    assert _resolve(("X-Forwarded-Port", "444")).server_port == 444
    ipv6 = _resolve(("X-Forwarded-Host", "[2001:db8::1]:81"))
    assert (ipv6.server_host, ipv6.server_port) == ("[2001:db8::1]", 81)
    for bad in ("a b", "evil.example/x", "a.example:99999", "@", ""):
        assert _resolve(("X-Forwarded-Host", bad)).host is None, bad
    assert _resolve(("X-Forwarded-Port", "0")).server_port is None
    assert _resolve(("X-Forwarded-Port", "\u00b2")).server_port is None  # isdigit(), not int()
    assert _resolve(("X-Forwarded-For", "1.2.3.4:\u00b2")).client == PROXY


def test_rfc7239_forwarded() -> None:
    got = _resolve(("Forwarded", 'for="[2001:db8:cafe::17]:4711";proto=https;host=example.com'))
    assert got == Resolved("https", ("2001:db8:cafe::17", 4711), "example.com", "example.com", 443)
    # two proxies appended: the element whose for= is untrusted is the client's
    chain = _resolve(("Forwarded", "for=192.0.2.60;proto=https, for=127.0.0.1;proto=http"))
    assert (chain.client, chain.scheme) == (("192.0.2.60", 0), "https")
    # names are case-insensitive, quoted values unquoted (quoted-pair too)
    assert _resolve(("Forwarded", 'For="192.0.2.1";Proto="https"')).scheme == "https"
    assert parse_forwarded(r'for="a\"b"') == [{"for": 'a"b'}]


def test_forwarded_unknown_and_obfuscated() -> None:
    assert _resolve(("Forwarded", "for=unknown;proto=https")).client == PROXY
    assert _resolve(("Forwarded", "for=_hidden;proto=https")).scheme == "https"
    assert _resolve(("Forwarded", 'for="_gazonk"')).client == PROXY
    assert parse_node("192.0.2.43:_port") == ("192.0.2.43", 0)
    assert parse_node("unknown") is None and parse_node("_x.y-z") is None
    assert parse_node("[::1]:80") == ("::1", 80)
    assert parse_node("::1") is None  # RFC 7239 §6: IPv6 must be bracketed
    assert parse_node("[::1") is None and parse_node("[1.2.3.4]") is None


def test_x_forwarded_wins_over_forwarded() -> None:
    got = _resolve(("Forwarded", "for=6.6.6.6;proto=https"), ("X-Forwarded-For", "198.51.100.1"))
    assert (got.client, got.scheme) == (("198.51.100.1", 0), "http")


@pytest.mark.parametrize(
    "value",
    ["for", "for=", "=x", 'for="unterminated', "for=a;for=b", "for=1.2.3.4 junk", "for=a=b"],
)
def test_malformed_forwarded_is_ignored_whole(value: str) -> None:
    assert parse_forwarded(value) == []
    assert _resolve(("Forwarded", value)) == Resolved("http", PROXY, None, None, None)


def test_client_from_a_proxy_protocol_header_is_the_default() -> None:
    real = ("198.51.100.9", 1234)
    got = resolve(PROXY, None, "http", _h(("X-Forwarded-Proto", "https")), LOCAL, client=real)
    assert got.client == real and got.scheme == "https"


def test_environ_keys_cover_every_header() -> None:
    assert "HTTP_X_FORWARDED_PROTO" in ENVIRON_KEYS and "HTTP_FORWARDED" in ENVIRON_KEYS
    assert len(ENVIRON_KEYS) == 7


_NAMES = st.sampled_from(sorted(n.decode() for n in NAMES))
_VALUES = st.one_of(
    st.binary(max_size=60),
    st.text(alphabet=' ,;="[]:_\\.abcdef0123456789ftorhspunk', max_size=60).map(str.encode),
)


@given(st.lists(st.tuples(_NAMES.map(str.encode), _VALUES), max_size=6))
def test_no_value_raises(headers: list[tuple[bytes, bytes]]) -> None:
    for trusted in (LOCAL, TrustedProxies(["*"])):
        got = resolve(PROXY, None, "http", headers, trusted)
        assert got.scheme in ("http", "https")
        assert got.client is None or isinstance(got.client[1], int)
