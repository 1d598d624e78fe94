"""Response serialisation: framing, bodiless responses, HTTP/1.0, header validation."""

from __future__ import annotations

import re

import pytest

from corral.http import (
    PAUSED,
    Connection,
    EndOfMessage,
    LocalProtocolError,
    ProtocolError,
    Request,
)

HOST = b"Host: example.com\r\n"


def ready(raw: bytes) -> Connection:
    """A connection whose request (no body) has been read up to PAUSED."""
    conn = Connection()
    conn.receive_data(raw)
    assert isinstance(conn.next_event(), Request)
    assert isinstance(conn.next_event(), EndOfMessage)
    assert conn.next_event() is PAUSED
    return conn


def get11(extra: bytes = b"", method: bytes = b"GET") -> Connection:
    return ready(method + b" / HTTP/1.1\r\n" + HOST + extra + b"\r\n")


def head_lines(data: bytes) -> list[bytes]:
    head, _, _ = data.partition(b"\r\n\r\n")
    return head.split(b"\r\n")


def header(data: bytes, name: bytes) -> list[bytes]:
    prefix = name.lower() + b": "
    return [line[len(prefix) :] for line in head_lines(data)[1:] if line.lower().startswith(prefix)]


def test_content_length_framing_keeps_alive() -> None:
    conn = get11()
    head = conn.send_response(200, [(b"Content-Length", b"5")])
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert header(head, b"content-length") == [b"5"]
    assert header(head, b"transfer-encoding") == []
    assert header(head, b"connection") == []
    assert conn.send_data(b"hello") == b"hello"
    assert conn.send_eom() == b""
    assert conn.keep_alive
    assert conn.start_next_cycle()


def test_chunked_when_no_length_on_http11() -> None:
    conn = get11()
    head = conn.send_response(200, [(b"Content-Type", b"text/plain")])
    assert header(head, b"transfer-encoding") == [b"chunked"]
    assert conn.send_data(b"hello") == b"5\r\nhello\r\n"
    assert conn.send_data(b"") == b""  # an empty chunk would end the body
    assert conn.send_data(b"x" * 26) == b"1a\r\n" + b"x" * 26 + b"\r\n"
    assert conn.send_eom() == b"0\r\n\r\n"
    assert conn.start_next_cycle()


def test_http10_without_length_is_close_delimited() -> None:
    conn = ready(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    head = conn.send_response(200, [])
    assert header(head, b"connection") == [b"close"]
    assert header(head, b"transfer-encoding") == []
    assert not conn.keep_alive
    assert conn.send_data(b"abc") == b"abc"
    conn.send_eom()
    assert not conn.start_next_cycle()


def test_http10_keep_alive_with_length() -> None:
    conn = ready(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    head = conn.send_response(200, [(b"Content-Length", b"0")])
    assert header(head, b"connection") == [b"keep-alive"]
    conn.send_eom()
    assert conn.start_next_cycle()


def test_http10_default_closes() -> None:
    conn = ready(b"GET / HTTP/1.0\r\n\r\n")
    head = conn.send_response(200, [(b"Content-Length", b"0")])
    assert header(head, b"connection") == [b"close"]


@pytest.mark.parametrize("status", [204, 304])
def test_bodiless_statuses(status: int) -> None:
    conn = get11()
    head = conn.send_response(status, [(b"Content-Length", b"10")])
    assert header(head, b"transfer-encoding") == []
    assert header(head, b"content-length") == ([] if status == 204 else [b"10"])
    assert conn.send_data(b"ignored") == b""
    assert conn.send_eom() == b""
    assert conn.start_next_cycle()


def test_head_keeps_content_length_and_sends_no_body() -> None:
    conn = get11(method=b"HEAD")
    head = conn.send_response(200, [(b"Content-Length", b"1234")])
    assert header(head, b"content-length") == [b"1234"]
    assert conn.send_data(b"x" * 1234) == b""
    assert conn.send_eom() == b""
    assert conn.start_next_cycle()


def test_head_without_length_has_no_chunked_framing() -> None:
    conn = get11(method=b"HEAD")
    head = conn.send_response(200, [])
    assert header(head, b"transfer-encoding") == []
    conn.send_eom()
    assert conn.start_next_cycle()


def test_adds_date_and_server_once() -> None:
    conn = get11()
    head = conn.send_response(200, [(b"Content-Length", b"0")])
    assert header(head, b"server") == [b"corral"]
    (date,) = header(head, b"date")
    assert re.fullmatch(rb"[A-Z][a-z]{2}, \d\d [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d GMT", date)
    conn = get11()
    head = conn.send_response(
        200, [(b"Server", b"app"), (b"Date", b"x"), (b"Content-Length", b"0")]
    )
    assert header(head, b"server") == [b"app"]
    assert header(head, b"date") == [b"x"]


def test_hop_by_hop_headers_are_stripped() -> None:
    conn = get11()
    hop = [
        (b"Keep-Alive", b"timeout=5"),
        (b"TE", b"trailers"),
        (b"Trailer", b"X"),
        (b"Transfer-Encoding", b"gzip"),
        (b"Upgrade", b"h2c"),
        (b"Proxy-Connection", b"keep-alive"),
        (b"Connection", b"keep-alive"),
    ]
    head = conn.send_response(200, [*hop, (b"Content-Length", b"0")])
    for name, _ in hop:
        assert header(head, name) == []
    assert conn.keep_alive


def test_app_connection_close_is_honoured() -> None:
    conn = get11()
    head = conn.send_response(200, [(b"Connection", b"close"), (b"Content-Length", b"0")])
    assert header(head, b"connection") == [b"close"]
    assert not conn.keep_alive
    conn.send_eom()
    assert not conn.start_next_cycle()


def test_close_after_cycle_says_close() -> None:
    conn = get11()
    conn.close_after_cycle()
    head = conn.send_response(200, [(b"Content-Length", b"0")])
    assert header(head, b"connection") == [b"close"]
    conn.send_eom()
    assert not conn.start_next_cycle()


def test_client_connection_close_says_close() -> None:
    conn = get11(b"Connection: close\r\n")
    assert header(conn.send_response(200, []), b"connection") == [b"close"]


@pytest.mark.parametrize(
    "headers",
    [
        [(b"Bad Name", b"v")],
        [(b"", b"v")],
        [(b"X:Y", b"v")],
        [(b"X\r\nY", b"v")],
        [(b"X", b"a\r\nSet-Cookie: evil")],
        [(b"X", b"a\nb")],
        [(b"X", b"a\rb")],
        [(b"X", b"a\x00b")],
        [(b"Content-Length", b"-1")],
        [(b"Content-Length", b"1, 1")],
        [(b"Content-Length", b"1"), (b"Content-Length", b"2")],
    ],
)
def test_invalid_headers_are_refused(headers: list[tuple[bytes, bytes]]) -> None:
    conn = get11()
    with pytest.raises(LocalProtocolError):
        conn.send_response(200, headers)
    assert not conn.response_started


def test_non_bytes_headers_are_refused() -> None:
    conn = get11()
    with pytest.raises(LocalProtocolError):
        conn.send_response(200, [("X", "v")])  # type: ignore[list-item]


def test_reason_phrase_and_custom_status() -> None:
    conn = get11()
    assert conn.send_response(299, [], reason=b"Fine").startswith(b"HTTP/1.1 299 Fine\r\n")
    conn = get11()
    with pytest.raises(LocalProtocolError):
        conn.send_response(200, [], reason=b"OK\r\nX: y")


@pytest.mark.parametrize("status", [100, 101, 199, 1000, 0])
def test_interim_or_invalid_status_refused(status: int) -> None:
    with pytest.raises(LocalProtocolError):
        get11().send_response(status, [])


def test_identical_duplicate_content_length_is_sent_once() -> None:
    conn = get11()
    head = conn.send_response(200, [(b"Content-Length", b"2"), (b"content-length", b"2")])
    assert header(head, b"content-length") == [b"2"]


def test_body_longer_than_content_length() -> None:
    conn = get11()
    conn.send_response(200, [(b"Content-Length", b"3")])
    conn.send_data(b"ab")
    with pytest.raises(LocalProtocolError):
        conn.send_data(b"cd")
    assert not conn.keep_alive


def test_body_shorter_than_content_length_closes() -> None:
    conn = get11()
    conn.send_response(200, [(b"Content-Length", b"3")])
    conn.send_data(b"ab")
    conn.send_eom()
    assert not conn.keep_alive
    assert not conn.start_next_cycle()


def test_response_api_misuse() -> None:
    conn = Connection()
    with pytest.raises(LocalProtocolError):
        conn.send_response(200, [])  # no request yet
    conn = get11()
    with pytest.raises(LocalProtocolError):
        conn.send_data(b"x")  # before the head
    conn.send_response(200, [])
    with pytest.raises(LocalProtocolError):
        conn.send_response(200, [])  # twice
    conn.send_eom()
    with pytest.raises(LocalProtocolError):
        conn.send_eom()


def test_start_next_cycle_before_response_done_closes() -> None:
    conn = get11()
    conn.send_response(200, [])
    assert not conn.start_next_cycle()


def test_error_response_is_complete_and_closes() -> None:
    conn = Connection()
    conn.receive_data(b"GET / HTTP/1.1\r\n\r\n")
    with pytest.raises(ProtocolError) as info:
        conn.next_event()
    data = conn.error_response(info.value)
    assert data.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert header(data, b"connection") == [b"close"]
    assert header(data, b"content-type") == [b"text/plain; charset=utf-8"]
    body = data.partition(b"\r\n\r\n")[2]
    assert header(data, b"content-length") == [str(len(body)).encode()]
    assert not conn.keep_alive
    assert not conn.start_next_cycle()
    with pytest.raises(ProtocolError):
        conn.next_event()  # keeps raising


def test_error_response_for_head_has_no_body() -> None:
    conn = get11(method=b"HEAD")
    data = conn.error_response(ProtocolError(413, "too large"))
    assert data.endswith(b"\r\n\r\n")
    assert int(header(data, b"content-length")[0]) > 0


def test_error_response_after_response_started_is_empty() -> None:
    conn = get11()
    conn.send_response(200, [])
    assert conn.error_response(ProtocolError(500, "app failed")) == b""
    assert not conn.keep_alive
    with pytest.raises(ProtocolError):
        conn.next_event()
