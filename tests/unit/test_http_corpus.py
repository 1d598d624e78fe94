"""Every corpus case, fed whole, byte by byte and at seeded random splits, must give the
outcome its file states, and the same outcome each way: with each head parser (the C one and
the Python one, tests.corpus.parsers; test_native_head.py compares them byte for byte)."""

from __future__ import annotations

import random

import pytest

from tests.corpus import Case, load_cases
from tests.corpus.parsers import PARSER_IDS, PARSERS, require
from tests.corpus.replay import Outcome, replay

CASES = load_cases()
both_parsers = pytest.mark.parametrize("native_head", PARSERS, ids=PARSER_IDS)


def _check(case: Case, outcome: Outcome) -> None:
    assert outcome.status == case.expect_status, case.note
    assert outcome.requests == case.requests
    assert outcome.close == case.close
    if case.body_bytes is not None:
        assert outcome.body_bytes == case.body_bytes
    assert outcome.output.count(b"HTTP/1.1 200 OK\r\n") == case.requests
    if case.expect_status is not None:
        assert outcome.output.count(b"HTTP/1.1 %d " % case.expect_status) == 1
        assert outcome.output.endswith(b"\n")


def _random_splits(raw: bytes, rng: random.Random) -> list[bytes]:
    cuts = sorted(rng.sample(range(1, len(raw)), min(len(raw) - 1, rng.randint(1, 12))))
    return [raw[a:b] for a, b in zip([0, *cuts], [*cuts, len(raw)], strict=True)]


def test_corpus_is_big_enough() -> None:
    assert len(CASES) >= 80
    assert sum(case.expect_status is None for case in CASES) >= 30


@both_parsers
@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_whole(case: Case, native_head: bool) -> None:
    require(native_head)
    _check(case, replay([case.raw], case.eof, native_head=native_head))


@both_parsers
@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_byte_by_byte(case: Case, native_head: bool) -> None:
    require(native_head)
    raw = case.raw
    _check(case, replay([raw[i : i + 1] for i in range(len(raw))], case.eof, None, native_head))


@both_parsers
@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_random_splits(case: Case, native_head: bool) -> None:
    require(native_head)
    rng = random.Random(case.name)
    for _ in range(5):
        _check(case, replay(_random_splits(case.raw, rng), case.eof, None, native_head))
