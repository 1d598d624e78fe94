"""wsgi.input: reads never pass the end of the body, and a truncated body is an error."""

from __future__ import annotations

import pytest

from corral.wsgi import BodyError, ChunksSource, InputStream


def stream(*chunks: bytes, truncated: bool = False) -> InputStream:
    pieces = list(chunks)

    def source() -> bytes:
        if pieces:
            return pieces.pop(0)
        if truncated:
            raise BodyError("peer closed")
        return b""

    return InputStream(source)


def test_read_all_joins_chunks() -> None:
    inp = stream(b"ab", b"cd", b"ef")
    assert inp.read() == b"abcdef"
    assert inp.read() == b""
    assert inp.complete
    assert inp.bytes_read == 6


def test_read_sized_spans_chunks_and_stops_at_end() -> None:
    inp = stream(b"abc", b"defg")
    assert inp.read(2) == b"ab"
    assert inp.read(4) == b"cdef"
    assert inp.read(10) == b"g"
    assert inp.read(10) == b""
    assert inp.read(None) == b""


def test_readline_and_limits() -> None:
    inp = stream(b"line one\nli", b"ne two\nrest")
    assert inp.readline() == b"line one\n"
    assert inp.readline(3) == b"lin"
    assert inp.readline() == b"e two\n"
    assert inp.readline() == b"rest"
    assert inp.readline() == b""


def test_readline_limit_inside_buffered_line() -> None:
    inp = stream(b"abcdef\n")
    assert inp.readline(0) == b""
    assert inp.readline(4) == b"abcd"
    assert inp.readline(-1) == b"ef\n"


def test_readlines_and_hint() -> None:
    assert stream(b"a\nb\n", b"c").readlines() == [b"a\n", b"b\n", b"c"]
    assert stream(b"aa\nbb\ncc\n").readlines(3) == [b"aa\n"]


def test_iteration() -> None:
    assert list(stream(b"x\ny", b"\nz")) == [b"x\n", b"y\n", b"z"]


def test_truncated_body_raises_on_every_read() -> None:
    inp = stream(b"part", truncated=True)
    with pytest.raises(BodyError):
        inp.read()
    with pytest.raises(BodyError):
        inp.read(1)
    assert not inp.complete


def test_truncated_body_sized_read_returns_available_then_raises() -> None:
    inp = stream(b"abcd", truncated=True)
    assert inp.read(4) == b"abcd"  # these bytes are really there
    with pytest.raises(BodyError):
        inp.read(1)


def test_readline_on_truncated_body_raises() -> None:
    inp = stream(b"no newline", truncated=True)
    with pytest.raises(BodyError):
        inp.readline()


def test_drain_reports_completion() -> None:
    assert stream(b"a", b"b").drain() is True
    assert stream(b"a", truncated=True).drain() is False


def test_empty_body() -> None:
    inp = InputStream()
    assert inp.read() == b""
    assert inp.readline() == b""
    assert list(inp) == []


def test_chunks_source() -> None:
    inp = InputStream(ChunksSource([b"ab", b"c"]))
    assert inp.read() == b"abc"


def test_read_sized_keeps_the_excess_of_a_piece() -> None:
    inp = stream(b"abcdef", b"ghij", b"kl")
    assert inp.read(3) == b"abc"  # from one piece, excess kept
    assert inp.read(5) == b"defgh"  # buffered bytes, then part of the next piece
    assert inp.readline() == b"ijkl"
    assert inp.read(1) == b""
    assert inp.bytes_read == 12


def test_read_returns_a_whole_piece_as_it_is() -> None:
    piece = b"x" * 65536
    inp = stream(piece, b"y")
    assert inp.read(65536) is piece  # the streaming case copies nothing
    assert inp.read(0) == b""
    assert inp.read() == b"y"


def test_one_large_read_then_lines() -> None:
    pieces = [bytes([65 + i % 26]) * 1000 + b"\n" for i in range(300)]
    body = b"".join(pieces)
    inp = stream(*pieces)
    assert inp.read(150_000) == body[:150_000]
    rest = list(inp)
    assert b"".join(rest) == body[150_000:]
    assert all(line.endswith(b"\n") for line in rest)
