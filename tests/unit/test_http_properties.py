"""Property tests: nothing but ProtocolError escapes, splits never change the outcome, and
valid requests round-trip."""

from __future__ import annotations

import itertools
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from corral.http import CLOSED, NEED_DATA, PAUSED, Data, EndOfMessage, Limits, Request
from corral.http.events import Event
from tests.corpus import load_cases
from tests.corpus.parsers import PARSER_IDS, PARSERS, connection, require
from tests.corpus.replay import Outcome, replay

VALID = [case.raw for case in load_cases() if case.expect_status is None]
ALL = [case.raw for case in load_cases()]
TOKEN_CHARS = "!#$%&'*+-.^`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# every property holds with each head parser (tests.corpus.parsers)
both_parsers = pytest.mark.parametrize("native_head", PARSERS, ids=PARSER_IDS)


def split(raw: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(raw) + 1) for c in cuts} | {0, len(raw)})
    return [raw[a:b] for a, b in itertools.pairwise(points) if b > a]


def outcome(o: Outcome) -> tuple[int | None, int, int, bool]:
    return (o.status, o.requests, o.body_bytes, o.close)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    raw = bytearray(draw(st.sampled_from(ALL)))
    for _ in range(draw(st.integers(1, 4))):
        pos = draw(st.integers(0, len(raw)))
        op = draw(st.sampled_from(["insert", "delete", "replace"]))
        byte = draw(st.sampled_from(b'\r\n \t:;,\x00\x7f\x80\xff0aA_-/?#%@"\\'))
        if op == "insert":
            raw[pos:pos] = bytes([byte])
        elif raw and pos < len(raw):
            if op == "delete":
                del raw[pos]
            else:
                raw[pos] = byte
    return bytes(raw)


@both_parsers
@SETTINGS
@given(st.lists(st.binary(max_size=64), max_size=8), st.booleans())
def test_arbitrary_bytes_only_raise_protocol_error(
    native_head: bool, chunks: list[bytes], eof: bool
) -> None:
    require(native_head)
    # replay catches ProtocolError only; anything else fails the test
    replay(chunks, eof, None, native_head)


@both_parsers
@SETTINGS
@given(mutated(), st.lists(st.integers(0, 10_000), max_size=6), st.booleans())
def test_mutated_requests_same_outcome_for_any_split(
    native_head: bool, raw: bytes, cuts: list[int], eof: bool
) -> None:
    require(native_head)
    whole = replay([raw], eof, None, native_head)
    assert outcome(replay(split(raw, cuts), eof, None, native_head)) == outcome(whole)
    by_byte = [raw[i : i + 1] for i in range(len(raw))]
    assert outcome(replay(by_byte, eof, None, native_head)) == outcome(whole)


@both_parsers
@SETTINGS
@given(st.sampled_from(VALID), st.lists(st.integers(0, 10_000), max_size=6))
def test_valid_corpus_any_split(native_head: bool, raw: bytes, cuts: list[int]) -> None:
    require(native_head)
    whole = replay([raw], False, None, native_head)
    assert whole.status is None
    assert outcome(replay(split(raw, cuts), False, None, native_head)) == outcome(whole)


token = st.text(TOKEN_CHARS, min_size=1, max_size=12).map(str.encode)
field_value = st.binary(max_size=40).map(
    lambda b: bytes(c for c in b if c == 9 or 32 <= c <= 126 or c >= 128).strip(b" \t")
)
path = st.text("abcxyz0189-._~!$&'()*+,;=:@/", max_size=20).map(lambda s: ("/" + s).encode())
query = st.text("abc019=&/?-._~", max_size=20).map(str.encode)


@st.composite
def requests(draw: st.DrawFn) -> tuple[bytes, Request, bytes]:
    method = draw(st.sampled_from([b"GET", b"POST", b"PUT", b"DELETE", b"PATCH", b"OPTIONS"]))
    p, q = draw(path), draw(query)
    target = p + (b"?" + q if q else b"")
    names = draw(st.lists(token, max_size=6).map(lambda ns: [n.replace(b"_", b"-") for n in ns]))
    names = [n for n in names if n.lower() not in _RESERVED]
    values = [draw(field_value) for _ in names]
    body = draw(st.binary(max_size=300))
    use_chunked = draw(st.booleans())
    headers = [
        (b"host", b"example.com"),
        *((n.lower(), v) for n, v in zip(names, values, strict=True)),
    ]
    lines = [
        b"%s: %s\r\n" % (n, v)
        for n, v in zip([b"Host", *names], [b"example.com", *values], strict=True)
    ]
    if use_chunked:
        lines.append(b"Transfer-Encoding: chunked\r\n")
        headers.append((b"transfer-encoding", b"chunked"))
        cuts = draw(st.lists(st.integers(0, len(body)), max_size=4))
        pieces = split(body, cuts)
        framed = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in pieces) + b"0\r\n\r\n"
    else:
        lines.append(b"Content-Length: %d\r\n" % len(body))
        headers.append((b"content-length", b"%d" % len(body)))
        framed = body
    raw = b"%s %s HTTP/1.1\r\n" % (method, target) + b"".join(lines) + b"\r\n" + framed
    expected = Request(
        method=method,
        target=target,
        path=p,
        query=q,
        http_version="1.1",
        headers=headers,
        host=b"example.com",
        keep_alive=True,
        content_length=None if use_chunked else len(body),
        chunked=use_chunked,
        expect_continue=False,
    )
    return raw, expected, body


_RESERVED = {b"host", b"content-length", b"transfer-encoding", b"connection", b"expect"}


def parse_all(chunks: list[bytes], native_head: bool | None = None) -> list[Event]:
    conn = connection(None, native_head)
    out: list[Event] = []
    for chunk in chunks:
        conn.receive_data(chunk)
        while (event := conn.next_event()) not in (NEED_DATA, PAUSED, CLOSED):
            out.append(event)
    return out


@both_parsers
@SETTINGS
@given(requests(), st.lists(st.integers(0, 10_000), max_size=8))
def test_valid_requests_round_trip(
    native_head: bool, req: tuple[bytes, Request, bytes], cuts: list[int]
) -> None:
    require(native_head)
    raw, expected, body = req
    for chunks in ([raw], split(raw, cuts)):
        events = parse_all(chunks, native_head)
        got = events[0]
        assert isinstance(got, Request)
        assert replace(got, dropped_headers=[]) == expected
        assert b"".join(e.data for e in events if isinstance(e, Data)) == body
        assert isinstance(events[-1], EndOfMessage)


TIGHT = Limits(
    request_line=40,
    header_field=30,
    header_fields=4,
    header_section=150,
    max_body_size=8,
    chunk_extension=6,
    drain_unread_body=4,
)


@both_parsers
@SETTINGS
@given(mutated(), st.lists(st.integers(0, 10_000), max_size=6), st.booleans())
def test_tight_limits_same_outcome_for_any_split(
    native_head: bool, raw: bytes, cuts: list[int], eof: bool
) -> None:
    # Small limits push most heads through the exact line scanner instead of the quick
    # check; both must agree, whatever the split.
    require(native_head)
    whole = replay([raw], eof, TIGHT, native_head)
    assert outcome(replay(split(raw, cuts), eof, TIGHT, native_head)) == outcome(whole)
    by_byte = [raw[i : i + 1] for i in range(len(raw))]
    assert outcome(replay(by_byte, eof, TIGHT, native_head)) == outcome(whole)
