"""The fuzzer's fast tier: seeded mutants of the corpus through the sans-IO Connection, whole,
byte by byte and at random splits, against the strict reference reading (tests/corpus/fuzz.py).

The case count is fixed so the tier costs the same everywhere (a few seconds); a longer run is
``benchmarks/fuzz.py --cases N --seed S``."""

from __future__ import annotations

import pytest

from tests.corpus import fuzz
from tests.corpus.parsers import PARSER_IDS, PARSERS, require
from tests.corpus.reference import Message, read

SEED = 20261203
CASES = 4000

pytestmark = pytest.mark.timeout(60)


@pytest.mark.parametrize("native_head", PARSERS, ids=PARSER_IDS)
def test_fuzz_sans_io_finds_nothing(native_head: bool) -> None:
    require(native_head)
    count, findings = fuzz.run(CASES, SEED, native_head)
    parser = PARSER_IDS[PARSERS.index(native_head)]
    fuzz.REPORTS.append(
        f"fuzz (sans-IO, {parser} head parser, seed {SEED}): {count} cases, "
        f"{len(findings)} findings"
    )
    assert count == CASES
    assert not findings, "\n".join(f.describe() for f in findings[:10])


def test_case_set_is_deterministic_and_varied() -> None:
    first = list(fuzz.cases(200, 5))
    assert first == list(fuzz.cases(200, 5))
    assert first != list(fuzz.cases(200, 6))
    used = {name for m in fuzz.cases(2000, 5) for name in m.mutations}
    assert used == {m.__name__ for m in (*fuzz.STRUCTURE, *fuzz.BYTES)}
    verdicts = [fuzz.feed([m.raw], m.eof) for m in first]
    assert any(v.status is None for v in verdicts) and any(v.status == 400 for v in verdicts)


# ------------------------------------------------------------------ the oracle can fail

VALID = b"POST /a?b HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nX-A: 1\r\n\r\nhello"


def _mutant(raw: bytes) -> fuzz.Mutant:
    return fuzz.Mutant(0, "test", ("none",), raw, False)


def test_reference_reads_what_corral_reads() -> None:
    reading = read(VALID + b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert [m.method for m in reading.messages] == [b"POST", b"GET"]
    assert reading.messages[0] == Message(
        b"POST", b"/a?b", b"1.1",
        ((b"host", b"x"), (b"content-length", b"5"), (b"x-a", b"1")), b"hello", True,
    )  # fmt: skip
    assert fuzz.check(_mutant(VALID)) == []


@pytest.mark.parametrize(
    "raw",
    [
        b"GET / HTTP/1.1\r\nHost: x\r\n y\r\n\r\n",  # obs-fold
        b"GET / HTTP/1.1\r\nHost : x\r\n\r\n",  # space before colon
        b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
        b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: xchunked\r\n\r\n",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n+5\r\nhello\r\n0\r\n\r\n",
        b"GET / HTTP/1.1\nHost: x\r\n\r\n",  # bare LF
    ],
)
def test_reference_refuses_smuggling_shapes(raw: bytes) -> None:
    reading = read(raw)
    assert reading.rejected and all(not m.complete for m in reading.messages)


def test_a_misread_is_a_finding(monkeypatch: pytest.MonkeyPatch) -> None:
    """A Connection that loses a body byte (as a smuggling bug would) must be caught."""
    real = fuzz._Driver._record

    def lossy(self: fuzz._Driver, complete: bool) -> None:
        del self.body[-1:]
        real(self, complete)

    monkeypatch.setattr(fuzz._Driver, "_record", lossy)
    kinds = [f.kind for f in fuzz.check(_mutant(VALID))]
    assert kinds == ["misread"]


def test_split_dependence_and_crashes_are_findings(monkeypatch: pytest.MonkeyPatch) -> None:
    real = fuzz.feed

    def flaky(chunks: list[bytes], eof: bool, native_head: bool | None = None) -> fuzz.Verdict:
        """Fails only when the bytes come in pieces: a split-dependent verdict."""
        v = real(chunks, eof, native_head)
        return fuzz.Verdict(v.requests, 400 if len(chunks) > 1 else None, v.closed)

    monkeypatch.setattr(fuzz, "feed", flaky)
    assert [f.kind for f in fuzz.check(_mutant(VALID))] == ["split"]

    def crash(chunks: list[bytes], eof: bool, native_head: bool | None = None) -> fuzz.Verdict:
        raise IndexError("bytearray index out of range")

    monkeypatch.setattr(fuzz, "feed", crash)
    assert [f.kind for f in fuzz.check(_mutant(VALID))] == ["exception"]


def test_minimize_shrinks_a_finding(monkeypatch: pytest.MonkeyPatch) -> None:
    real = fuzz._Driver._record

    def lossy(self: fuzz._Driver, complete: bool) -> None:
        del self.body[-1:]
        real(self, complete)

    monkeypatch.setattr(fuzz._Driver, "_record", lossy)
    (finding,) = fuzz.check(_mutant(VALID))
    small = fuzz.minimize(finding)
    assert len(small.raw) < len(VALID)
    assert [f.kind for f in fuzz.check(small)] == ["misread"]
