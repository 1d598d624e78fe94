"""The native (C) head parser agrees with the Python one, case by case (corral.http.native).

Agreement is checked at two levels: the head parser's own answer (``fields``: the same lists,
or a ProtocolError with the same status and reason) for every corpus head, fuzz mutant and
hypothesis-made head, including heads the connection's framing would never pass on; and what a
client sees (every byte written back, the events delivered) for the corpus whole, byte by byte
and split, and for the fuzz mutants. The other test files run their properties with each parser
(tests.corpus.parsers.PARSERS); this one compares the two directly.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from corral.choices import HttpParser
from corral.http import Connection, ProtocolError, native
from corral.http.headfields import SPECIAL, Fields, PythonHead
from tests.corpus import Case, fuzz, load_cases
from tests.corpus.parsers import require
from tests.corpus.replay import Outcome, replay

CASES = load_cases()
SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
MUTANTS = 3000

Answer = tuple[str, Fields] | tuple[str, int, str]


@pytest.fixture(autouse=True)
def _native_built() -> None:
    require(True)


def answer(fields: Callable[[bytes, bytes], Fields], head: bytes, method: bytes) -> Answer:
    try:
        return ("ok", fields(head, method))
    except ProtocolError as exc:
        return ("error", exc.status, exc.reason)


def both(head: bytes, method: bytes) -> tuple[Answer, Answer]:
    return (
        answer(native.head_parser(True).fields, head, method),
        answer(PythonHead().fields, head, method),
    )


def heads_of(raw: bytes) -> tuple[bytes, bytes]:
    """The first head in ``raw`` (up to CRLFCRLF, or all of it) and its method-like prefix."""
    end = raw.find(b"\r\n\r\n")
    head = raw[: end + 4] if end >= 0 else raw
    return head, head.split(b" ", 1)[0]


# ------------------------------------------------------------------ the parser's own answer


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_corpus_heads_same_fields_or_same_error(case: Case) -> None:
    head, method = heads_of(case.raw)
    c, py = both(head, method)
    assert c == py


def test_fuzz_mutant_heads_same_fields_or_same_error() -> None:
    differ = []
    verdicts = set()
    for mutant in fuzz.cases(MUTANTS, 14_2):
        head, method = heads_of(mutant.raw)
        c, py = both(head, method)
        verdicts.add(c[0])
        if c != py:
            differ.append((mutant.raw, c, py))
    assert not differ, differ[:3]
    assert verdicts == {"ok", "error"}  # the mutants reach both verdicts


@SETTINGS
@given(
    st.sampled_from([heads_of(case.raw)[0] for case in CASES]),
    st.lists(st.tuples(st.integers(0, 10_000), st.binary(max_size=3)), max_size=4),
    st.integers(0, 12),
)
def test_arbitrary_heads_same_fields_or_same_error(
    head: bytes, edits: list[tuple[int, bytes]], method_len: int
) -> None:
    raw = bytearray(head)
    for pos, new in edits:
        at = pos % (len(raw) + 1)
        raw[at : at + len(new) // 2] = new
    data = bytes(raw)
    method = data[: min(method_len, len(data))]
    c, py = both(data, method)
    assert c == py


def test_fields_split_like_python() -> None:
    head = (
        b"PURGE /x HTTP/1.1\r\nHost: a\r\nX_Y: dropped\r\nCONTENT-type:  \t text/plain \t\r\n"
        b"X-Empty:\r\nCookie: a=1\r\n\r\n"
    )
    c, py = both(head, b"PURGE")
    assert c == py
    assert c[0] == "ok"
    headers, special, dropped = c[1]  # type: ignore[misc]
    assert headers == [
        (b"host", b"a"),
        (b"content-type", b"text/plain"),
        (b"x-empty", b""),
        (b"cookie", b"a=1"),
    ]
    assert special == [(b"host", b"a"), (b"content-type", b"text/plain")]
    assert dropped == [b"x_y"]
    c, py = both(b"FROB" + head[5:], b"FROB")  # a method llhttp does not know: retried as GET
    assert c == py and c[0] == "ok"


def test_a_refused_head_has_llhttp_s_reason() -> None:
    c, py = both(b"GET / HTTP/1.1\r\nHost : x\r\n\r\n", b"GET")
    assert c == py
    assert len(c) == 3 and c[:2] == ("error", 400)
    assert str(c[2]).startswith("malformed request head: ")


def test_split_checks_its_arguments() -> None:
    import corral.http._nativehead as _nativehead  # type: ignore[import-not-found, unused-ignore]

    with pytest.raises(ValueError, match="method_len"):
        _nativehead.split(b"GET / HTTP/1.1\r\n\r\n", 99)
    with pytest.raises(ValueError, match="method_len"):
        _nativehead.split(b"GET", -1)
    with pytest.raises(TypeError):
        _nativehead.split("GET / HTTP/1.1\r\n\r\n", 3)
    with pytest.raises(TypeError):
        _nativehead.set_special({b"host"})
    assert _nativehead.split(b"", 0) != ""  # empty input: llhttp waits for more, no fields
    _nativehead.set_special(SPECIAL)


def test_the_vendored_llhttp_is_the_one_httptools_was_built_with() -> None:
    # Both copies must give the same verdicts: the agreement above is the real check, this
    # names the version so a drift is obvious. httptools 0.9.0 ships llhttp 9.4.3.
    assert native.llhttp_version() == (9, 4, 3)


# ------------------------------------------------------------------ what a client sees


def seen(outcome: Outcome) -> Outcome:
    """``outcome`` with its Date headers blanked (two runs may straddle a second)."""
    return replace(outcome, output=re.sub(rb"\r\nDate: [^\r]*", b"\r\nDate: -", outcome.output))


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_corpus_same_bytes_back_whole_split_and_byte_by_byte(case: Case) -> None:
    raw, eof = case.raw, case.eof
    rng = random.Random(case.name)
    feeds = [[raw], [raw[i : i + 1] for i in range(len(raw))]]
    for _ in range(3):
        cuts = sorted(rng.sample(range(1, len(raw)), min(len(raw) - 1, 6))) if len(raw) > 1 else []
        feeds.append([raw[a:b] for a, b in zip([0, *cuts], [*cuts, len(raw)], strict=True)])
    for chunks in feeds:
        assert seen(replay(chunks, eof, None, True)) == seen(replay(chunks, eof, None, False))


def test_fuzz_mutants_same_verdict() -> None:
    differ = []
    for mutant in fuzz.cases(1000, 14_3):
        verdicts = [
            fuzz.feed([mutant.raw], mutant.eof, native_head) for native_head in (True, False)
        ]
        if verdicts[0] != verdicts[1]:
            differ.append((mutant.raw, *verdicts))
    assert not differ, differ[:3]


# ------------------------------------------------------------------ selection


def test_auto_takes_native_when_built() -> None:
    assert native.use_native(HttpParser.AUTO)
    assert native.use_native(HttpParser.NATIVE)
    assert not native.use_native(HttpParser.PYTHON)
    assert isinstance(Connection()._head, native.NativeHead)
    assert isinstance(Connection(native_head=False)._head, PythonHead)


def test_without_the_extension(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(native, "AVAILABLE", False)
    assert not native.use_native(HttpParser.AUTO)  # auto falls back silently
    native.check_choice(HttpParser.AUTO)
    native.check_choice(HttpParser.PYTHON)
    with pytest.raises(ValueError, match="not built"):
        native.check_choice(HttpParser.NATIVE)
    with pytest.raises(RuntimeError, match="not built"):
        native.head_parser(True)
