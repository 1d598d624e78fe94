"""The hot path's reuse and caches change cost, never outcome.

* One llhttp parser per connection is reused across bodiless keep-alive heads: every corpus
  case must get the same verdict after any earlier request on the same connection as on a
  fresh connection.
* ``writer.build_head`` caches the serialised header block per (status, reason, headers);
  ``checks.check_host`` remembers valid Host values; the environ caches Host splits. Hits must
  give what a miss gives, failures must never be cached, and every cache stays bounded.
"""

from __future__ import annotations

import pytest

from corral.http import (
    PAUSED,
    Connection,
    EndOfMessage,
    LocalProtocolError,
    ProtocolError,
    Request,
    checks,
    writer,
)
from corral.wsgi import environ as wsgi_environ
from tests.corpus import Case, load_cases
from tests.corpus.replay import replay

CASES = load_cases()

# Earlier requests on the connection, chosen to leave llhttp in each state it can be left in:
# at the start of a message (reused), waiting for a body or paused by Upgrade (replaced),
# and "closed" by a header only llhttp acts on (then the reused parser objects, and a fresh
# one must decide).
PRIMERS: dict[str, tuple[bytes, int]] = {
    "get": (b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n", 0),
    "zero-length": (b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", 0),
    "http10-keep-alive": (b"GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", 0),
    "length-body": (b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc", 3),
    "chunked-body": (
        b"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        3,
    ),
    "upgrade": (b"GET /a HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: h2c\r\n\r\n", 0),
    "proxy-connection-close": (b"GET /a HTTP/1.1\r\nHost: x\r\nProxy-Connection: close\r\n\r\n", 0),
    "two-gets": (b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n" * 2, 0),
}


@pytest.mark.parametrize("primer", PRIMERS.values(), ids=list(PRIMERS))
@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_verdict_does_not_depend_on_earlier_requests(case: Case, primer: tuple[bytes, int]) -> None:
    raw, primer_body = primer
    primed_requests = replay([raw], False).requests
    assert primed_requests >= 1
    fresh = replay([case.raw], case.eof)
    primed = replay([raw + case.raw], case.eof)
    assert primed.status == fresh.status, case.note
    assert primed.requests == fresh.requests + primed_requests
    assert primed.close == fresh.close
    assert primed.body_bytes == fresh.body_bytes + primer_body


def _cycle(conn: Connection, raw: bytes) -> Request:
    conn.receive_data(raw)
    request = conn.next_event()
    assert isinstance(request, Request)
    while not isinstance(conn.next_event(), EndOfMessage):
        pass
    assert conn.next_event() is PAUSED
    conn.send_response(200, [(b"Content-Length", b"0")])
    conn.send_eom()
    assert conn.start_next_cycle()
    return request


def test_parser_is_reused_only_after_bodiless_heads() -> None:
    conn = Connection()
    _cycle(conn, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    parser = conn._parser
    assert parser is not None
    _cycle(conn, b"GET /b HTTP/1.1\r\nHost: x\r\n\r\n")
    assert conn._parser is parser
    _cycle(conn, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nab")
    assert conn._parser is None  # llhttp would take the next head for body bytes
    _cycle(conn, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert conn._parser is not None


def test_reused_parser_still_rejects_and_reports_like_a_fresh_one() -> None:
    bad = b"GET / HTTP/1.1\r\nHost: x\r\nBad Name: v\r\n\r\n"
    fresh = Connection()
    fresh.receive_data(bad)
    with pytest.raises(ProtocolError) as expected:
        fresh.next_event()
    conn = Connection()
    _cycle(conn, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    conn.receive_data(bad)
    with pytest.raises(ProtocolError) as got:
        conn.next_event()
    assert (got.value.status, got.value.reason) == (expected.value.status, expected.value.reason)


# ------------------------------------------------------------------ response head cache

DATE = (b"Date", b"Mon, 23 Nov 2026 16:00:00 GMT")  # fixed, so heads compare byte for byte


def _head(status: int, headers: list[tuple[bytes, bytes]], **kw: bool) -> writer.Head:
    opts = {"head_request": False, "http11": True, "keep_alive": True, **kw}
    return writer.build_head(status, headers, None, **opts)


def test_cached_head_equals_uncached() -> None:
    headers = [(b"Content-Type", b"text/plain"), (b"Content-Length", b"5"), DATE]
    writer._BLOCKS.clear()
    miss = _head(200, headers)
    hit = _head(200, list(headers))
    assert hit.data == miss.data
    assert (hit.framing, hit.content_length, hit.close) == (writer.LENGTH, 5, False)


def test_status_is_part_of_the_key() -> None:
    headers = [(b"Content-Length", b"0"), DATE]
    assert b"Content-Length" in _head(200, headers).data
    assert b"Content-Length" not in _head(204, headers).data  # RFC 9110 §8.6


def test_per_call_arguments_still_apply_on_a_hit() -> None:
    headers = [(b"Content-Type", b"text/plain"), DATE]
    assert b"Transfer-Encoding: chunked" in _head(200, headers).data
    http10 = _head(200, headers, http11=False)
    assert http10.framing == writer.UNTIL_CLOSE and http10.close
    assert _head(200, headers, head_request=True).framing == writer.NO_BODY
    assert b"Connection: close" in _head(200, headers, keep_alive=False).data


def test_app_connection_close_is_honoured_with_chunked_framing() -> None:
    headers = [(b"Connection", b"close"), DATE]
    for _ in range(2):  # miss, then hit
        head = _head(200, headers)
        assert head.framing == writer.CHUNKED
        assert head.close and head.data.endswith(b"Connection: close\r\n\r\n")


@pytest.mark.parametrize(
    "headers",
    [
        [(b"Bad Name", b"v")],
        [(b"X", b"a\r\nb")],
        [(b"Content-Length", b"x")],
        [(b"Content-Length", b"1"), (b"Content-Length", b"2")],
        [("X", "str")],
    ],
)
def test_invalid_headers_fail_every_time(headers: list[tuple[bytes, bytes]]) -> None:
    for _ in range(2):
        with pytest.raises((LocalProtocolError, ValueError, TypeError)):
            _head(200, headers)


def test_unhashable_headers_bypass_the_cache() -> None:
    pairs: list[list[bytes]] = [[b"X", b"v"], list(DATE)]
    assert _head(200, pairs).data == _head(200, [(b"X", b"v"), DATE]).data  # type: ignore[arg-type]


def test_head_cache_is_bounded() -> None:
    for i in range(writer._BLOCKS_MAX * 3):
        _head(200, [(b"ETag", b'"%d"' % i), DATE])
    assert len(writer._BLOCKS) <= writer._BLOCKS_MAX
    assert b'ETag: "1"' in _head(200, [(b"ETag", b'"1"'), DATE]).data  # evicted: recomputed


# ------------------------------------------------------------------ Host caches


def test_host_check_caches_only_valid_hosts() -> None:
    for _ in range(2):
        assert checks.check_host(b"example.com:80") == b"example.com:80"
        with pytest.raises(ProtocolError):
            checks.check_host(b"bad host")
    assert b"bad host" not in checks._VALID_HOSTS


def test_host_caches_are_bounded() -> None:
    for i in range(checks._VALID_HOSTS_MAX * 3):
        host = b"h%d.example:8%d" % (i, i)
        checks.check_host(host)
        assert wsgi_environ._server_of(host, "80") == (f"h{i}.example", f"8{i}")
    assert len(checks._VALID_HOSTS) <= checks._VALID_HOSTS_MAX
    assert len(wsgi_environ._SERVER_CACHE) <= wsgi_environ._SERVER_CACHE_MAX


def test_server_split_cache_keys_on_the_default_port() -> None:
    assert wsgi_environ._server_of(b"example.com", "80") == ("example.com", "80")
    assert wsgi_environ._server_of(b"example.com", "8080") == ("example.com", "8080")
