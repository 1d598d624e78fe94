"""Limits are enforced while bytes arrive, with the statuses RFC 9110 §15 names."""

from __future__ import annotations

import pytest

from corral.http import NEED_DATA, Connection, Data, EndOfMessage, Limits, ProtocolError, Request

HOST = b"Host: example.com\r\n"
SMALL = Limits(
    request_line=100,
    header_field=50,
    header_fields=5,
    header_section=300,
    max_body_size=20,
    chunk_extension=10,
)


def status_of(raw: bytes, limits: Limits = SMALL, *, step: int = 0) -> int | None:
    """Feed ``raw`` (in ``step``-byte pieces if step) and return the error status, if any."""
    conn = Connection(limits)
    pieces = [raw[i : i + step] for i in range(0, len(raw), step)] if step else [raw]
    try:
        for piece in pieces:
            conn.receive_data(piece)
            while (event := conn.next_event()) is not NEED_DATA:
                if isinstance(event, EndOfMessage):
                    return None
    except ProtocolError as exc:
        return exc.status
    return None


def field(length: int) -> bytes:
    """A field line of exactly ``length`` bytes (without CRLF)."""
    return b"X: " + b"a" * (length - 3) + b"\r\n"


@pytest.mark.parametrize("step", [0, 1, 7])
@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"GET /" + b"a" * 86 + b" HTTP/1.1\r\n" + HOST + b"\r\n", None),  # exactly 100
        (b"GET /" + b"a" * 87 + b" HTTP/1.1\r\n" + HOST + b"\r\n", 414),
        (b"GET / HTTP/1.1\r\n" + HOST + field(50) + b"\r\n", None),
        (b"GET / HTTP/1.1\r\n" + HOST + field(51) + b"\r\n", 431),
        (b"GET / HTTP/1.1\r\n" + HOST + field(10) * 4 + b"\r\n", None),
        (b"GET / HTTP/1.1\r\n" + HOST + field(10) * 5 + b"\r\n", 431),
        (b"GET / HTTP/1.1\r\n" + HOST + field(50) * 4 + b"\r\n", None),  # 245 bytes
        (b"GET /x HTTP/1.1\r\n" + HOST + field(50) * 4 + b"\r\n", 431),  # 246 bytes
    ],
)
def test_head_limits(raw: bytes, expected: int | None, step: int) -> None:
    limits = Limits(request_line=100, header_field=50, header_fields=5, header_section=245)
    assert status_of(raw, limits, step=step) == expected


def test_endless_request_line_refused_without_crlf() -> None:
    conn = Connection(SMALL)
    conn.receive_data(b"GET /")
    assert conn.next_event() is NEED_DATA
    with pytest.raises(ProtocolError) as info:
        for _ in range(200):
            conn.receive_data(b"a")
            conn.next_event()
    assert info.value.status == 414
    assert conn.buffered_bytes == 0


def test_endless_header_refused_without_crlf() -> None:
    conn = Connection(SMALL)
    conn.receive_data(b"GET / HTTP/1.1\r\nX: ")
    with pytest.raises(ProtocolError) as info:
        for _ in range(100):
            conn.receive_data(b"a")
            conn.next_event()
    assert info.value.status == 431


def test_endless_head_of_short_lines_refused() -> None:
    conn = Connection(Limits(header_fields=10_000, header_section=1000))
    conn.receive_data(b"GET / HTTP/1.1\r\n")
    with pytest.raises(ProtocolError) as info:
        for _ in range(1000):
            conn.receive_data(b"X: y\r\n")
            conn.next_event()
    assert info.value.status == 431


def test_content_length_over_max_refused_before_body() -> None:
    conn = Connection(SMALL)
    conn.receive_data(b"POST / HTTP/1.1\r\n" + HOST + b"Content-Length: 21\r\n\r\n")
    with pytest.raises(ProtocolError) as info:
        conn.next_event()
    assert info.value.status == 413


def test_content_length_at_max_accepted() -> None:
    assert (
        status_of(b"POST / HTTP/1.1\r\n" + HOST + b"Content-Length: 20\r\n\r\n" + b"x" * 20) is None
    )


def chunked_head() -> bytes:
    return b"POST / HTTP/1.1\r\n" + HOST + b"Transfer-Encoding: chunked\r\n\r\n"


def test_chunked_over_max_refused_as_soon_as_announced() -> None:
    conn = Connection(SMALL)
    conn.receive_data(chunked_head() + b"a\r\n0123456789\r\n")
    assert isinstance(conn.next_event(), Request)
    assert conn.next_event() == Data(b"0123456789")
    assert conn.next_event() is NEED_DATA
    conn.receive_data(b"b\r\n")  # 10 + 11 > 20, before any of its data
    with pytest.raises(ProtocolError) as info:
        conn.next_event()
    assert info.value.status == 413


def test_chunked_at_max_accepted() -> None:
    body = b"a\r\n0123456789\r\na\r\n0123456789\r\n0\r\n\r\n"
    assert status_of(chunked_head() + body) is None


@pytest.mark.parametrize("step", [0, 1])
def test_chunk_extension_limit(step: int) -> None:
    ok = chunked_head() + b"1;a=" + b"b" * 7 + b"\r\nx\r\n0\r\n\r\n"  # extension: 10 bytes
    bad = chunked_head() + b"1;a=" + b"b" * 8 + b"\r\nx\r\n0\r\n\r\n"
    assert status_of(ok, step=step) is None
    assert status_of(bad, step=step) == 400


def test_endless_chunk_extension_refused_while_arriving() -> None:
    conn = Connection(SMALL)
    conn.receive_data(chunked_head() + b"1;a=")
    assert isinstance(conn.next_event(), Request)
    with pytest.raises(ProtocolError) as info:
        for _ in range(100):
            conn.receive_data(b"b")
            conn.next_event()
    assert info.value.status == 400


def test_trailer_limits() -> None:
    many = b"".join(b"T%d: v\r\n" % i for i in range(6))
    assert status_of(chunked_head() + b"0\r\n" + many + b"\r\n") == 431
    long = b"T: " + b"v" * 60 + b"\r\n"
    assert status_of(chunked_head() + b"0\r\n" + long + b"\r\n") == 431
    assert status_of(chunked_head() + b"0\r\nT: v\r\n\r\n") is None


@pytest.mark.parametrize("step", [0, 1, 5])
def test_scanned_heads_then_pipelined_requests(step: int) -> None:
    # The fields together exceed header_field, so the exact line scanner (not the quick
    # check) accepts each head; its state must be reset for the next request.
    head = b"GET / HTTP/1.1\r\n" + HOST + field(40) * 3 + b"\r\n"
    raw = head * 3 + b"\r\n" + head
    conn = Connection(Limits(header_field=50))
    pieces = [raw[i : i + step] for i in range(0, len(raw), step)] if step else [raw]
    seen = 0
    for piece in pieces:
        conn.receive_data(piece)
        while (event := conn.next_event()) is not NEED_DATA:
            if isinstance(event, Request):
                assert len(event.headers) == 4
                seen += 1
            if isinstance(event, EndOfMessage):
                assert conn.next_event() is not NEED_DATA  # PAUSED
                conn.send_response(200, [(b"Content-Length", b"0")])
                conn.send_eom()
                assert conn.start_next_cycle()
    assert seen == 4
