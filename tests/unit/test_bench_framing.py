"""corral.bench.framing: the head-only and close-delimited cases httptools cannot frame."""

from __future__ import annotations

import pytest

from corral.bench.framing import (
    FramingError,
    document_length,
    ends_at_eof,
    is_interim,
    keeps_alive,
    parse_head,
    server_software,
)

OK = b"HTTP/1.1 200 OK\r\nServer: x/1\r\nContent-Length: 5\r\n\r\nhello"


def test_parse_head_complete_and_incomplete() -> None:
    head = parse_head(OK)
    assert head is not None
    assert (head.status, head.version, head.length) == (200, b"1.1", len(OK) - 5)
    assert head.headers[b"content-length"] == b"5"
    for cut in range(len(OK) - 5):  # every prefix short of the blank line: not yet
        assert parse_head(OK[:cut]) is None


@pytest.mark.parametrize(
    "data",
    [
        b"HTTP/2 200 OK\r\n\r\n",
        b"garbage\r\n\r\n",
        b"HTTP/1.1 20 OK\r\n\r\n",
        b"HTTP/1.1 abc OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n",
        b"HTTP/1.1 200 OK\r\n X: y\r\n\r\n",
    ],
)
def test_parse_head_rejects(data: bytes) -> None:
    with pytest.raises(FramingError):
        parse_head(data)


def test_oversized_head_is_an_error() -> None:
    with pytest.raises(FramingError):
        parse_head(b"HTTP/1.1 200 OK\r\nX: " + b"a" * 70000)


@pytest.mark.parametrize(
    ("head", "alive"),
    [
        (b"HTTP/1.1 200 OK\r\n\r\n", True),
        (b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n", False),
        (b"HTTP/1.1 200 OK\r\nConnection: Keep-Alive, Close\r\n\r\n", False),
        (b"HTTP/1.0 200 OK\r\n\r\n", False),
        (b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n\r\n", True),
    ],
)
def test_keeps_alive(head: bytes, alive: bool) -> None:
    parsed = parse_head(head)
    assert parsed is not None
    assert keeps_alive(parsed) is alive


@pytest.mark.parametrize(
    ("head", "eof"),
    [
        (b"HTTP/1.0 200 OK\r\n\r\n", True),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n", False),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", False),
        (b"HTTP/1.1 204 No Content\r\n\r\n", False),
        (b"HTTP/1.1 304 Not Modified\r\n\r\n", False),
        (b"HTTP/1.1 100 Continue\r\n\r\n", False),
    ],
)
def test_ends_at_eof(head: bytes, eof: bool) -> None:
    parsed = parse_head(head)
    assert parsed is not None
    assert ends_at_eof(parsed) is eof


def test_is_interim() -> None:
    assert is_interim(100) and is_interim(103)
    assert not is_interim(101) and not is_interim(200)


def test_sample_info() -> None:
    assert server_software(OK) == "x/1"
    assert document_length(OK) == 5
    assert document_length(b"HTTP/1.0 200 OK\r\n\r\nabc") == 3
    assert server_software(b"junk") == "" and document_length(b"junk") is None
    assert server_software(b"bad\r\n\r\n") == "" and document_length(b"bad\r\n\r\n") is None
