"""Request-side state machine: events, pausing, pipelining, keep-alive, unread bodies, EOF."""

from __future__ import annotations

import pytest

from corral.http import (
    CLOSED,
    NEED_DATA,
    PAUSED,
    Connection,
    Data,
    EndOfMessage,
    Limits,
    ProtocolError,
    Request,
)
from corral.http.events import Event

HOST = b"Host: example.com\r\n"
GET = b"GET / HTTP/1.1\r\n" + HOST + b"\r\n"


def post(body: bytes, extra: bytes = b"") -> bytes:
    head = b"POST /p HTTP/1.1\r\n" + HOST + extra + b"Content-Length: %d\r\n\r\n" % len(body)
    return head + body


def chunked(chunks: list[bytes]) -> bytes:
    body = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks) + b"0\r\n\r\n"
    return b"POST /c HTTP/1.1\r\n" + HOST + b"Transfer-Encoding: chunked\r\n\r\n" + body


def events(conn: Connection) -> list[Event]:
    """Pull events up to and including the first sentinel."""
    out: list[Event] = []
    while True:
        event = conn.next_event()
        out.append(event)
        if event in (NEED_DATA, PAUSED, CLOSED):
            return out


def respond(conn: Connection) -> bool:
    conn.send_response(200, [(b"Content-Length", b"0")])
    conn.send_eom()
    return conn.start_next_cycle()


def test_request_fields() -> None:
    conn = Connection()
    conn.receive_data(
        b"GET /a/b?x=1&y HTTP/1.1\r\nHost: example.com:8080\r\nX-A:  v  \r\n"
        b"X_B: dropped\r\nAccept: */*\r\n\r\n"
    )
    req = conn.next_event()
    assert isinstance(req, Request)
    assert (req.method, req.target, req.path, req.query) == (
        b"GET",
        b"/a/b?x=1&y",
        b"/a/b",
        b"x=1&y",
    )
    assert req.http_version == "1.1"
    assert req.host == b"example.com:8080"
    assert req.headers == [(b"host", b"example.com:8080"), (b"x-a", b"v"), (b"accept", b"*/*")]
    assert req.dropped_headers == [b"x_b"]
    assert req.keep_alive and not req.chunked and not req.expect_continue
    assert req.content_length is None
    assert conn.request is req


def test_absolute_form_authority_wins() -> None:
    conn = Connection()
    conn.receive_data(b"GET https://real.example:8443/p?q HTTP/1.1\r\nHost: other\r\n\r\n")
    req = conn.next_event()
    assert isinstance(req, Request)
    assert (req.host, req.scheme, req.path, req.query) == (
        b"real.example:8443",
        b"https",
        b"/p",
        b"q",
    )


def test_options_asterisk_path() -> None:
    conn = Connection()
    conn.receive_data(b"OPTIONS * HTTP/1.1\r\n" + HOST + b"\r\n")
    req = conn.next_event()
    assert isinstance(req, Request) and req.path == b"*"


def test_full_cycle_and_pause_holds_pipelined_request() -> None:
    conn = Connection()
    conn.receive_data(GET + post(b"abc"))
    evs = events(conn)
    assert [type(e) for e in evs] == [Request, EndOfMessage, type(PAUSED)]
    # The next request is buffered, never returned before start_next_cycle().
    assert conn.next_event() is PAUSED
    assert conn.buffered_bytes == len(post(b"abc"))
    assert respond(conn)
    evs = events(conn)
    assert isinstance(evs[0], Request) and evs[0].method == b"POST"
    assert evs[1] == Data(b"abc")
    assert isinstance(evs[2], EndOfMessage)
    assert conn.buffered_bytes == 0


def test_body_arrives_in_pieces() -> None:
    conn = Connection()
    raw = post(b"0123456789")
    conn.receive_data(raw[:-7])
    assert [type(e) for e in events(conn)] == [Request, Data, type(NEED_DATA)]
    conn.receive_data(raw[-7:])
    evs = events(conn)
    assert evs[0] == Data(b"3456789")
    assert isinstance(evs[1], EndOfMessage)


def test_chunked_body_events() -> None:
    conn = Connection()
    conn.receive_data(chunked([b"hello", b" ", b"world"]))
    evs = events(conn)
    req = evs[0]
    assert isinstance(req, Request) and req.chunked and req.content_length is None
    assert b"".join(e.data for e in evs if isinstance(e, Data)) == b"hello world"


def test_clean_eof_between_requests() -> None:
    conn = Connection()
    conn.receive_data(GET)
    events(conn)
    assert respond(conn)
    assert conn.next_event() is NEED_DATA
    conn.receive_data(b"")
    assert conn.next_event() is CLOSED


def test_eof_while_paused_keeps_the_cycle() -> None:
    conn = Connection()
    conn.receive_data(GET)
    conn.receive_data(b"")
    assert events(conn)[-1] is PAUSED
    assert respond(conn)
    assert conn.next_event() is CLOSED


@pytest.mark.parametrize(
    "raw", [post(b"abcdef")[:-2], chunked([b"abcdef"])[:-7], b"GET / HTTP/1.1\r\nHo"]
)
def test_eof_mid_request_is_an_error_not_a_short_body(raw: bytes) -> None:
    conn = Connection()
    conn.receive_data(raw)
    seen: list[Event] = []
    conn.receive_data(b"")
    with pytest.raises(ProtocolError) as info:
        while True:
            seen.append(conn.next_event())
    assert info.value.status == 400
    assert not any(isinstance(e, EndOfMessage) for e in seen)
    with pytest.raises(ProtocolError):
        conn.next_event()


def test_keep_alive_rules() -> None:
    cases = {
        b"GET / HTTP/1.1\r\n" + HOST + b"\r\n": True,
        b"GET / HTTP/1.1\r\n" + HOST + b"Connection: close\r\n\r\n": False,
        b"GET / HTTP/1.1\r\n" + HOST + b"Connection: keep-alive, close\r\n\r\n": False,
        b"GET / HTTP/1.0\r\n\r\n": False,
        b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n": True,
        b"GET / HTTP/1.0\r\nConnection: keep-alive\r\nConnection: close\r\n\r\n": False,
    }
    for raw, expected in cases.items():
        conn = Connection()
        conn.receive_data(raw)
        req = conn.next_event()
        assert isinstance(req, Request)
        assert req.keep_alive is expected, raw
        assert conn.keep_alive is expected


def test_unread_small_body_is_discarded_not_parsed() -> None:
    # The body looks like a request; it must be dropped, never parsed as one.
    smuggled = b"GET /admin HTTP/1.1\r\n" + HOST + b"\r\n"
    conn = Connection()
    conn.receive_data(post(smuggled) + GET)
    assert isinstance(conn.next_event(), Request)
    assert respond(conn)  # app never read the body
    req = conn.next_event()
    assert isinstance(req, Request) and req.path == b"/"
    assert isinstance(conn.next_event(), EndOfMessage)


def test_unread_body_discarded_as_it_arrives() -> None:
    body = b"x" * 1000
    raw = post(body) + GET
    conn = Connection()
    conn.receive_data(raw[:100])
    assert isinstance(conn.next_event(), Request)
    assert respond(conn)
    assert conn.next_event() is NEED_DATA
    for i in range(100, len(raw), 37):
        conn.receive_data(raw[i : i + 37])
        event = conn.next_event()
        if event is not NEED_DATA:
            break
    assert isinstance(event, Request) and event.method == b"GET"


def test_partially_read_body_then_discard() -> None:
    conn = Connection()
    conn.receive_data(post(b"abc")[:-1])
    assert isinstance(conn.next_event(), Request)
    assert conn.next_event() == Data(b"ab")
    assert respond(conn)
    conn.receive_data(b"c" + GET)
    assert isinstance(conn.next_event(), Request)


def test_unread_body_over_drain_limit_closes() -> None:
    conn = Connection(Limits(drain_unread_body=10))
    conn.receive_data(post(b"x" * 11))
    assert isinstance(conn.next_event(), Request)
    assert not respond(conn)
    assert conn.next_event() is CLOSED


def test_unread_chunked_body_closes_and_says_so() -> None:
    conn = Connection()
    conn.receive_data(chunked([b"GET / HTTP/1.1\r\n"]) + GET)
    assert isinstance(conn.next_event(), Request)
    assert b"Connection: close\r\n" in conn.send_response(200, [(b"Content-Length", b"0")])
    conn.send_eom()
    assert not conn.start_next_cycle()
    assert conn.next_event() is CLOSED


def test_fully_read_chunked_body_keeps_alive() -> None:
    conn = Connection()
    conn.receive_data(chunked([b"abc"]) + GET)
    assert [type(e) for e in events(conn)] == [Request, Data, EndOfMessage, type(PAUSED)]
    assert respond(conn)
    assert isinstance(conn.next_event(), Request)


def test_unread_body_over_drain_limit_says_close() -> None:
    conn = Connection(Limits(drain_unread_body=10))
    conn.receive_data(post(b"x" * 11)[:-5])
    assert isinstance(conn.next_event(), Request)
    assert conn.next_event() == Data(b"x" * 6)  # 5 left: within the limit now
    assert b"Connection: close" not in conn.send_response(200, [(b"Content-Length", b"0")])
    conn = Connection(Limits(drain_unread_body=10))
    conn.receive_data(post(b"x" * 11))
    assert isinstance(conn.next_event(), Request)
    assert b"Connection: close\r\n" in conn.send_response(200, [(b"Content-Length", b"0")])


def test_answering_before_100_continue_closes() -> None:
    # The client may be waiting for "100 Continue" and never send the body: keeping the
    # connection would eat its next request as body bytes.
    conn = Connection()
    conn.receive_data(post(b"abcd", b"Expect: 100-continue\r\n")[:-4])
    assert isinstance(conn.next_event(), Request)
    assert b"Connection: close\r\n" in conn.send_response(401, [(b"Content-Length", b"0")])
    conn.send_eom()
    assert not conn.start_next_cycle()


def test_answering_after_100_continue_may_discard_body() -> None:
    conn = Connection()
    conn.receive_data(post(b"abcd", b"Expect: 100-continue\r\n")[:-4])
    assert isinstance(conn.next_event(), Request)
    assert conn.send_continue()
    assert b"Connection: close" not in conn.send_response(200, [(b"Content-Length", b"0")])
    conn.send_eom()
    assert conn.start_next_cycle()
    conn.receive_data(b"abcd" + GET)
    assert isinstance(conn.next_event(), Request)


def test_start_next_cycle_after_close_request() -> None:
    conn = Connection()
    conn.receive_data(b"GET / HTTP/1.1\r\n" + HOST + b"Connection: close\r\n\r\n" + GET)
    events(conn)
    assert not respond(conn)
    assert conn.next_event() is CLOSED


def test_expect_100_continue() -> None:
    conn = Connection()
    conn.receive_data(
        b"POST /p HTTP/1.1\r\n" + HOST + b"Expect: 100-Continue\r\nContent-Length: 4\r\n\r\n"
    )
    req = conn.next_event()
    assert isinstance(req, Request) and req.expect_continue
    assert conn.send_continue() == b"HTTP/1.1 100 Continue\r\n\r\n"
    assert conn.send_continue() == b""  # once
    assert conn.next_event() is NEED_DATA
    conn.receive_data(b"data")
    assert conn.next_event() == Data(b"data")


def test_no_continue_after_response_started_or_without_expect() -> None:
    conn = Connection()
    conn.receive_data(post(b"abcd", b"Expect: 100-continue\r\n"))
    conn.next_event()
    conn.send_response(413, [(b"Content-Length", b"0")])
    assert conn.send_continue() == b""
    conn = Connection()
    conn.receive_data(post(b"abcd"))
    conn.next_event()
    assert conn.send_continue() == b""


def test_expect_ignored_for_http10() -> None:
    conn = Connection()
    conn.receive_data(b"POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 0\r\n\r\n")
    req = conn.next_event()
    assert isinstance(req, Request) and not req.expect_continue
    assert conn.send_continue() == b""


def test_errors_are_sticky_and_drop_the_buffer() -> None:
    conn = Connection()
    conn.receive_data(b"GET / HTTP/9.9\r\n\r\n" + GET)
    with pytest.raises(ProtocolError) as first:
        conn.next_event()
    assert first.value.status == 505
    assert conn.buffered_bytes == 0
    conn.receive_data(GET)
    with pytest.raises(ProtocolError) as again:
        conn.next_event()
    assert again.value is first.value
    assert not conn.start_next_cycle()


def test_pipelined_error_is_raised_only_in_its_own_cycle() -> None:
    conn = Connection()
    conn.receive_data(GET + b"BAD\r\n\r\n")
    assert [type(e) for e in events(conn)] == [Request, EndOfMessage, type(PAUSED)]
    assert respond(conn)
    with pytest.raises(ProtocolError):
        conn.next_event()


def test_upgrade_is_ignored_and_body_still_framed() -> None:
    conn = Connection()
    conn.receive_data(
        b"POST / HTTP/1.1\r\n" + HOST + b"Upgrade: h2c\r\nConnection: Upgrade\r\n"
        b"Content-Length: 2\r\n\r\nhi" + GET
    )
    evs = events(conn)
    assert evs[1] == Data(b"hi")
    assert respond(conn)
    assert isinstance(conn.next_event(), Request)


def test_many_pipelined_requests() -> None:
    conn = Connection()
    conn.receive_data(GET * 50 + post(b"xy") + GET)
    seen = 0
    while True:
        evs = events(conn)
        if evs[-1] is not PAUSED:
            break
        seen += 1
        assert respond(conn)
    assert seen == 52


def test_no_continue_once_the_body_is_complete() -> None:
    conn = Connection()
    conn.receive_data(post(b"abcd", b"Expect: 100-continue\r\n"))
    assert [type(e) for e in events(conn)] == [Request, Data, EndOfMessage, type(PAUSED)]
    assert conn.send_continue() == b""


def test_input_after_error_is_not_buffered() -> None:
    conn = Connection()
    conn.receive_data(b"\x16\x03\x01")
    with pytest.raises(ProtocolError):
        conn.next_event()
    conn.receive_data(b"x" * 100_000)  # the I/O layer keeps reading during a lingering close
    assert conn.buffered_bytes == 0


@pytest.mark.parametrize("method", [b"BREW", b"X-CUSTOM", b"MKCOLA", b"DESCRIBE", b"PRI", b"get"])
def test_extension_methods_reach_the_app_on_a_reused_parser(method: bytes) -> None:
    """RFC 9110 §9.1: any token is a method (llhttp knows a fixed list); the connection's kept
    parser sees a known method first, then the extension one, then a known one again."""
    conn = Connection()
    conn.receive_data(
        GET + method + b" /x?q HTTP/1.1\r\n" + HOST + b"Content-Length: 2\r\n\r\nhi" + GET
    )
    seen: list[bytes] = []
    for _ in range(3):
        evs = events(conn)
        assert isinstance(evs[0], Request)
        seen.append(evs[0].method)
        assert respond(conn)
    assert seen == [b"GET", method, b"GET"]


def test_an_extension_method_keeps_every_field_check() -> None:
    conn = Connection()
    conn.receive_data(b"BREW / HTTP/1.1\r\n" + HOST + b"X : y\r\n\r\n")
    with pytest.raises(ProtocolError) as info:
        conn.next_event()
    assert info.value.status == 400


def test_take_received_counts_every_byte_the_socket_delivered() -> None:
    """Heads count too (a GET has no body), and so do bytes after an error."""
    conn = Connection()
    assert conn.take_received() == 0
    conn.receive_data(GET[:5])
    conn.receive_data(GET[5:] + post(b"abc"))
    assert isinstance(events(conn)[0], Request)
    assert conn.take_received() == len(GET) + len(post(b"abc"))
    assert conn.take_received() == 0
    assert respond(conn)
    assert isinstance(events(conn)[0], Request)  # the POST
    assert respond(conn)
    conn.receive_data(b"\x16\x03garbage")
    with pytest.raises(ProtocolError):
        events(conn)
    conn.receive_data(b"more")
    conn.receive_data(b"")
    assert conn.take_received() == len(b"\x16\x03garbage") + 4
