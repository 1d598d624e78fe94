"""The hot path's reuse and caches change cost, never outcome.

* One llhttp parser per connection is reused across bodiless keep-alive heads: every corpus
  case must get the same verdict after any earlier request on the same connection as on a
  fresh connection.
* A head that passed every check is remembered by its bytes (per ``Limits``): a hit returns the
  same ``Request``, and must give every corpus case the verdict a miss gives.
* ``writer.build_head`` caches the serialised header block per (status, reason, headers);
  ``checks.check_host`` remembers valid Host values; the environ caches Host splits. Hits must
  give what a miss gives, failures must never be cached, and every cache stays bounded.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from corral.http import (
    PAUSED,
    Connection,
    EndOfMessage,
    Limits,
    LocalProtocolError,
    ProtocolError,
    Request,
    checks,
    connection,
    writer,
)
from corral.http.headfields import PythonHead
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
    # Heads never seen before (a seen head is a cache hit and llhttp is not asked again).
    unique = b"X-Test: %d\r\n" % id(object())
    conn = Connection(native_head=False)  # the Python parser keeps one llhttp parser
    head = conn._head
    assert isinstance(head, PythonHead)
    _cycle(conn, b"GET /1 HTTP/1.1\r\nHost: x\r\n" + unique + b"\r\n")
    parser = head._parser
    assert parser is not None
    _cycle(conn, b"GET /2 HTTP/1.1\r\nHost: x\r\n" + unique + b"\r\n")
    assert head._parser is parser
    _cycle(conn, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n" + unique + b"\r\nab")
    assert head._parser is None  # llhttp would take the next head for body bytes
    _cycle(conn, b"GET /3 HTTP/1.1\r\nHost: x\r\n" + unique + b"\r\n")
    assert head._parser is not None


# ------------------------------------------------------------------ request head cache


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_a_seen_head_gets_the_verdict_of_an_unseen_one(case: Case) -> None:
    connection._HEADS.clear()  # new Connections get fresh tables: the first replay misses
    first = replay([case.raw], case.eof)
    second = replay([case.raw], case.eof)  # every head that passed is now a hit
    assert second == first, case.note


def test_a_hit_is_the_same_request_and_still_frames_the_body() -> None:
    raw = b"POST /h HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\n"
    conn = Connection()
    first = _cycle(conn, raw + b"abc")
    second = _cycle(conn, raw + b"abc")
    assert second is first and first.content_length == 3


def test_the_head_cache_is_per_limits() -> None:
    raw = b"POST /l HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n"
    Connection().receive_data(raw)  # nothing parsed yet
    big = Connection()
    big.receive_data(raw)
    assert isinstance(big.next_event(), Request)  # cached for the default limits
    small = Connection(Limits(max_body_size=10))
    small.receive_data(raw)
    with pytest.raises(ProtocolError) as exc:
        small.next_event()
    assert exc.value.status == 413


def test_failures_are_not_cached_and_the_head_cache_is_bounded() -> None:
    bad = b"GET / HTTP/1.1\r\nHost: bad host\r\n\r\n"
    for _ in range(2):
        conn = Connection()
        conn.receive_data(bad)
        with pytest.raises(ProtocolError):
            conn.next_event()
    heads = Connection()._heads
    assert bad not in heads
    for i in range(connection._HEAD_CACHE_MAX * 2):
        _cycle(Connection(), b"GET /%d HTTP/1.1\r\nHost: x\r\n\r\n" % i)
    assert 0 < len(heads) <= connection._HEAD_CACHE_MAX
    long = b"GET / HTTP/1.1\r\nHost: x\r\nX: " + b"v" * connection._HEAD_CACHE_BYTES + b"\r\n\r\n"
    _cycle(Connection(), long)
    assert long not in heads


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


# ------------------------------------------------------------------ app header lists, environ


def test_frozen_headers_refuse_changes_and_keep_their_block() -> None:
    frozen = writer.FrozenHeaders([(b"Content-Length", b"0"), DATE])
    changes: tuple[Callable[[], object], ...] = (
        lambda: frozen.append((b"X", b"y")),
        lambda: frozen.__setitem__(0, (b"X", b"y")),
        lambda: frozen.clear(),
        lambda: frozen.extend([]),
    )
    for change in changes:
        with pytest.raises(TypeError):
            change()
    assert _head(200, frozen).data == _head(200, list(frozen)).data
    assert frozen.memo is not None and frozen.memo[0] == 200
    assert b"Content-Length" not in _head(204, frozen).data  # the status is checked on a hit
    assert type([*frozen, (b"X", b"y")]) is list


def test_the_same_header_tuples_are_encoded_once() -> None:
    from corral.wsgi.response import encode_headers

    pair = ("Content-Type", "text/plain")
    length = ("Content-Length", "5")
    first, cl = encode_headers([pair, length])
    again, cl2 = encode_headers([pair, length])  # a new list, the same tuples: a hit
    assert again is first and cl == cl2 == 5
    other, cl3 = encode_headers([pair, ("Content-Length", "7")])  # equal names, new tuple
    assert other is not first and cl3 == 7
    assert list(other) == [(b"Content-Type", b"text/plain"), (b"Content-Length", b"7")]

    class Sly(str):
        pass

    with pytest.raises(TypeError):  # equal to a cached list, but not of str: still refused
        encode_headers([(Sly("Content-Type"), "text/plain"), ("Content-Length", "7")])


def test_environ_part_is_reused_only_for_the_same_request_root_and_port() -> None:
    conn = Connection()
    request = _cycle(conn, b"GET /app/x?q=1 HTTP/1.1\r\nHost: h\r\nX-A: 1\r\n\r\n")
    base = wsgi_environ.connection_environ(
        server_name="s", server_port="80", remote_addr="r", remote_port="1"
    )
    env = wsgi_environ.build_environ(request, base, None)
    again = wsgi_environ.build_environ(request, base, "input")
    assert again == {**env, "wsgi.input": "input"} and again is not env
    mounted = wsgi_environ.build_environ(request, base, None, "/app")
    assert (mounted["SCRIPT_NAME"], mounted["PATH_INFO"]) == ("/app", "/x")
    other_port = wsgi_environ.build_environ(request, {**base, "SERVER_PORT": "8080"}, None)
    assert other_port["SERVER_PORT"] == "8080" and env["SERVER_PORT"] == "80"
    env["HTTP_X_A"] = "changed by the app"
    assert wsgi_environ.build_environ(request, base, None)["HTTP_X_A"] == "1"
