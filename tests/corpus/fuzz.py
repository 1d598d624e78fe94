"""A bounded, seeded mutational fuzzer over the corpus, HTTP Garden style, and its oracle.

Theory of operation. ``cases(n, seed)`` picks corpus files with a seeded ``random.Random``
and applies one to three mutations to each, so a (seed, n) pair names the same case set on
every machine. Mutations are of two kinds:

* structure-level, on the request's lines: duplicate, drop or swap a field line; rewrite
  Content-Length or Transfer-Encoding values (signs, hex, lists, padding, casing, obfuscated
  ``chunked``); change a field name's casing; add a second framing header; insert SP/HTAB
  before or after the colon, at a line start (obs-fold) or in the request line; replace one
  CRLF by LF, CR, CRCRLF or LFCR; insert NUL; edit a chunk-size line (case, leading zeros,
  signs, extensions, off by one, huge);
* byte-level: flip a bit, insert an interesting or random byte, delete or duplicate a span.

The oracle (``check``) feeds each mutant to a fresh ``corral.http.Connection`` whole, byte by
byte (short inputs) and at seeded random splits, with an app that reads every body and
answers 200. A *finding* is one of: an exception other than ``ProtocolError``; outcomes that
differ between splits; or a request corral accepted whose method, target, version, fields or
body differ from the independent reading of ``tests/corpus/reference.py`` (or that the
reference cannot read at all). A stricter corral (an error where the reference reads a
request) is not a finding: refusing is always safe; misreading is what smuggling is made of.

``REPORTS`` collects one line per fuzz run for the test session's terminal summary.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from corral.http import (
    CLOSED,
    NEED_DATA,
    PAUSED,
    Connection,
    Data,
    EndOfMessage,
    ProtocolError,
    Request,
)
from tests.corpus.loader import Case, load_cases
from tests.corpus.parsers import connection
from tests.corpus.reference import Message, read

REPORTS: list[str] = []  # "fuzz: N cases, K findings" lines, printed by tests/conftest.py
BYTE_BY_BYTE_MAX = 600  # longer inputs get random splits only (keeps the tier fast)
SPLITS = 3

# ------------------------------------------------------------------ mutations

Mutator = Callable[[bytes, random.Random], bytes]
INTERESTING = b'\r\n\x00 \t:;,"=\x7f\x80\xff\x0b\x0c0aF-+'
CL_VALUES = [b"0", b"1", b"-1", b"+1", b"01", b"0x10", b"1 1", b"1,1", b" 3", b"3 ", b"",
             b"99999999999999999999", b"4294967296", b"1.0", b"\t2", b"2\x00"]  # fmt: skip
TE_VALUES = [b"chunked", b"Chunked", b"CHUNKED", b" chunked", b"chunked ", b"\tchunked",
             b"xchunked", b"chunked, identity", b"identity, chunked", b"gzip, chunked",
             b"chunked,", b",chunked", b"chunk", b'"chunked"', b"chunked\x00", b"chunked;q=1",
             b"chunked, chunked", b"identity", b""]  # fmt: skip


def _split_head(raw: bytes) -> tuple[list[bytes], bytes]:
    """(lines of the first head without their CRLF, the rest from the empty line on)."""
    end = raw.find(b"\r\n\r\n")
    if end < 0:
        return raw.split(b"\r\n"), b""
    return raw[:end].split(b"\r\n"), raw[end:]


def _join(lines: list[bytes], rest: bytes) -> bytes:
    return b"\r\n".join(lines) + rest


def _on_field(raw: bytes, rng: random.Random, edit: Callable[[list[bytes], int], None]) -> bytes:
    lines, rest = _split_head(raw)
    if len(lines) < 2:
        return raw
    edit(lines, rng.randrange(1, len(lines)))
    return _join(lines, rest)


def dup_field(raw: bytes, rng: random.Random) -> bytes:
    return _on_field(raw, rng, lambda ls, i: ls.insert(rng.randrange(1, len(ls) + 1), ls[i]))


def drop_field(raw: bytes, rng: random.Random) -> bytes:
    def edit(lines: list[bytes], i: int) -> None:
        del lines[i]

    return _on_field(raw, rng, edit)


def swap_fields(raw: bytes, rng: random.Random) -> bytes:
    def edit(lines: list[bytes], i: int) -> None:
        j = rng.randrange(1, len(lines))
        lines[i], lines[j] = lines[j], lines[i]

    return _on_field(raw, rng, edit)


def recase_name(raw: bytes, rng: random.Random) -> bytes:
    def edit(lines: list[bytes], i: int) -> None:
        name, sep, value = lines[i].partition(b":")
        flip = [b < 128 and chr(b).isalpha() and rng.random() < 0.5 for b in name]
        flipped = bytes(b ^ 0x20 if f else b for b, f in zip(name, flip, strict=True))
        lines[i] = flipped + sep + value

    return _on_field(raw, rng, edit)


def _set_field(raw: bytes, rng: random.Random, name: bytes, values: list[bytes]) -> bytes:
    """Rewrite the value of ``name`` (any casing) if present, else add the field."""
    lines, rest = _split_head(raw)
    value = rng.choice(values)
    spelled = rng.choice([name, name.lower(), name.upper()])
    for i, line in enumerate(lines[1:], 1):
        if line.split(b":", 1)[0].strip().lower() == name.lower():
            lines[i] = spelled + b": " + value
            return _join(lines, rest)
    lines.insert(rng.randrange(1, len(lines) + 1), spelled + b": " + value)
    return _join(lines, rest)


def content_length(raw: bytes, rng: random.Random) -> bytes:
    body_len = len(raw) - raw.find(b"\r\n\r\n") - 4 if b"\r\n\r\n" in raw else 0
    near = [str(max(0, body_len + d)).encode() for d in (-1, 0, 1)]
    return _set_field(raw, rng, b"Content-Length", CL_VALUES + near)


def transfer_encoding(raw: bytes, rng: random.Random) -> bytes:
    return _set_field(raw, rng, b"Transfer-Encoding", TE_VALUES)


def whitespace(raw: bytes, rng: random.Random) -> bytes:
    lines, rest = _split_head(raw)
    i = rng.randrange(len(lines))
    ws = rng.choice([b" ", b"\t", b"  ", b" \t"])
    line = lines[i]
    where = rng.choice(["before-colon", "after-colon", "start", "end", "middle"])
    colon = line.find(b":") if i else -1
    if where == "before-colon" and colon > 0:
        line = line[:colon] + ws + line[colon:]
    elif where == "after-colon" and colon > 0:
        line = line[: colon + 1] + ws + line[colon + 1 :]
    elif where == "start":
        line = ws + line  # on a field line: obs-fold of the previous field
    elif where == "end":
        line = line + ws
    else:
        cut = rng.randrange(len(line) + 1)
        line = line[:cut] + ws + line[cut:]
    lines[i] = line
    return _join(lines, rest)


def obs_fold(raw: bytes, rng: random.Random) -> bytes:
    def edit(lines: list[bytes], i: int) -> None:
        name, sep, value = lines[i].partition(b":")
        cut = rng.randrange(len(value) + 1)
        lines[i] = name + sep + value[:cut] + b"\r\n" + rng.choice([b" ", b"\t"]) + value[cut:]

    return _on_field(raw, rng, edit)


def line_ending(raw: bytes, rng: random.Random) -> bytes:
    spots = [m.start() for m in re.finditer(rb"\r\n", raw)]
    if not spots:
        return raw
    at = rng.choice(spots)
    return raw[:at] + rng.choice([b"\n", b"\r", b"\r\r\n", b"\n\r", b"\r\n\r\n"]) + raw[at + 2 :]


def insert_nul(raw: bytes, rng: random.Random) -> bytes:
    at = rng.randrange(len(raw) + 1)
    return raw[:at] + rng.choice([b"\x00", b"\r", b"\n", b"\x7f"]) + raw[at:]


_SIZE_LINE = re.compile(rb"\r\n([0-9A-Fa-f]+)([^\r\n]*)\r\n")


def chunk_size(raw: bytes, rng: random.Random) -> bytes:
    head_end = raw.find(b"\r\n\r\n")
    matches = list(_SIZE_LINE.finditer(raw, max(0, head_end + 2))) if head_end >= 0 else []
    if not matches:
        return raw
    m = rng.choice(matches)
    size = int(m[1], 16)
    new = rng.choice([
        m[1].upper(), m[1].lower(), b"0" + m[1], b"00000000000000000" + m[1], b"+" + m[1],
        b"-" + m[1], b" " + m[1], m[1] + b" ", b"%x" % (size + 1), b"%x" % max(0, size - 1),
        b"0x" + m[1], b"ffffffffffffffffff", m[1] + b";a=b", m[1] + b";", m[1] + b'; a="\\"',
        m[1] + b"\x00", b"",
    ])  # fmt: skip
    return raw[: m.start(1)] + new + raw[m.end(1) :]


def bit_flip(raw: bytes, rng: random.Random) -> bytes:
    if not raw:
        return raw
    at = rng.randrange(len(raw))
    return raw[:at] + bytes([raw[at] ^ (1 << rng.randrange(8))]) + raw[at + 1 :]


def insert_byte(raw: bytes, rng: random.Random) -> bytes:
    at = rng.randrange(len(raw) + 1)
    byte = rng.choice(INTERESTING) if rng.random() < 0.7 else rng.randrange(256)
    return raw[:at] + bytes([byte]) + raw[at:]


def delete_span(raw: bytes, rng: random.Random) -> bytes:
    if not raw:
        return raw
    at = rng.randrange(len(raw))
    return raw[:at] + raw[at + rng.randint(1, 4) :]


def duplicate_span(raw: bytes, rng: random.Random) -> bytes:
    if not raw:
        return raw
    at = rng.randrange(len(raw))
    span = raw[at : at + rng.randint(1, 32)]
    return raw[:at] + span + raw[at:]


STRUCTURE: tuple[Mutator, ...] = (
    dup_field, drop_field, swap_fields, recase_name, content_length, transfer_encoding,
    whitespace, obs_fold, line_ending, insert_nul, chunk_size,
)  # fmt: skip
BYTES: tuple[Mutator, ...] = (bit_flip, insert_byte, delete_span, duplicate_span)


@dataclass(frozen=True, slots=True)
class Mutant:
    index: int
    source: str  # the corpus case it came from
    mutations: tuple[str, ...]
    raw: bytes
    eof: bool


def cases(n: int, seed: int, corpus: list[Case] | None = None) -> Iterator[Mutant]:
    """``n`` mutants, the same for the same (n, seed, corpus)."""
    rng = random.Random(seed)
    pool = corpus if corpus is not None else load_cases()
    pool = [c for c in pool if len(c.raw) <= 16384]  # the huge limit cases fuzz slowly
    for index in range(n):
        case = rng.choice(pool)
        raw, names = case.raw, []
        for _ in range(rng.choice((1, 1, 2, 3))):
            mutate = rng.choice(STRUCTURE) if rng.random() < 0.65 else rng.choice(BYTES)
            raw = mutate(raw, rng)
            names.append(mutate.__name__)
        yield Mutant(index, case.name, tuple(names), raw, case.eof)


# ------------------------------------------------------------------ the oracle


@dataclass(frozen=True, slots=True)
class Seen:
    """One request as corral's Connection delivered it."""

    method: bytes
    target: bytes
    version: bytes
    headers: tuple[tuple[bytes, bytes], ...]
    body: bytes
    complete: bool


@dataclass(frozen=True, slots=True)
class Verdict:
    requests: tuple[Seen, ...]
    status: int | None  # the error status, None when no error
    closed: bool


@dataclass(slots=True)
class _Driver:
    conn: Connection = field(default_factory=Connection)
    seen: list[Seen] = field(default_factory=list)
    head: Request | None = None
    body: bytearray = field(default_factory=bytearray)
    status: int | None = None

    def pump(self) -> bool:
        """Events until more data is needed (True) or the connection ends (False)."""
        conn = self.conn
        while True:
            try:
                event = conn.next_event()
            except ProtocolError as exc:
                conn.error_response(exc)
                self.status = exc.status
                return False
            if isinstance(event, Request):
                self.head, self.body = event, bytearray()
                conn.send_continue()
            elif isinstance(event, Data):
                self.body += event.data
            elif isinstance(event, EndOfMessage):
                self._record(complete=True)
            elif event is PAUSED:
                conn.send_response(200, [(b"Content-Length", b"3")])
                conn.send_data(b"ok\n")
                conn.send_eom()
                if not conn.start_next_cycle():
                    return False
            elif event is NEED_DATA:
                return True
            elif event is CLOSED:
                return False

    def _record(self, complete: bool) -> None:
        head = self.head
        assert head is not None
        version = head.http_version.encode()
        headers = tuple(head.headers)
        self.seen.append(Seen(head.method, head.target, version, headers, bytes(self.body),
                              complete))  # fmt: skip
        self.head = None

    def verdict(self, closed: bool) -> Verdict:
        if self.head is not None:
            self._record(complete=False)
        return Verdict(tuple(self.seen), self.status, closed)


def feed(chunks: list[bytes], eof: bool, native_head: bool | None = None) -> Verdict:
    """corral's verdict on ``chunks`` received in that order (then EOF if ``eof``), with the
    head parser ``native_head`` names (tests.corpus.parsers; None: the default one)."""
    driver = _Driver(connection(None, native_head))
    alive = True
    for chunk in chunks:
        driver.conn.receive_data(chunk)
        alive = driver.pump()
        if not alive:
            break
    if alive and eof:
        driver.conn.receive_data(b"")
        alive = driver.pump()
    return driver.verdict(closed=not alive)


def splits(raw: bytes, rng: random.Random) -> list[bytes]:
    if len(raw) < 2:
        return [raw]
    cuts = sorted(rng.sample(range(1, len(raw)), min(len(raw) - 1, rng.randint(1, 12))))
    return [raw[a:b] for a, b in zip([0, *cuts], [*cuts, len(raw)], strict=True)]


@dataclass(frozen=True, slots=True)
class Finding:
    mutant: Mutant
    kind: str  # "exception", "split", "misread"
    detail: str

    def describe(self) -> str:
        m = self.mutant
        return (f"#{m.index} {self.kind} ({m.source} + {'+'.join(m.mutations)}): "
                f"{self.detail}\n    raw={m.raw!r}")  # fmt: skip


def check(mutant: Mutant, native_head: bool | None = None) -> list[Finding]:
    """Every finding for one mutant (empty: it behaved)."""
    rng = random.Random(mutant.index)
    raw = mutant.raw
    feeds = [[raw]] + [splits(raw, rng) for _ in range(SPLITS)]
    if len(raw) <= BYTE_BY_BYTE_MAX:
        feeds.append([raw[i : i + 1] for i in range(len(raw))])
    verdicts = []
    for chunks in feeds:
        try:
            verdicts.append(feed(chunks, mutant.eof, native_head))
        except Exception as exc:  # the oracle's point: anything but ProtocolError
            return [Finding(mutant, "exception", f"{type(exc).__name__}: {exc}")]
    whole = verdicts[0]
    for other in verdicts[1:]:
        if other != whole:
            return [Finding(mutant, "split", f"whole {whole} != split {other}")]
    return misreads(mutant, whole)


def misreads(mutant: Mutant, verdict: Verdict) -> list[Finding]:
    """Requests corral delivered that the reference reads otherwise (or not at all)."""
    reading = read(mutant.raw)
    out = []
    for i, seen in enumerate(verdict.requests):
        ref = reading.messages[i] if i < len(reading.messages) else None
        if ref is None:
            out.append(Finding(mutant, "misread", f"request {i} unreadable: {reading.reason}"))
        elif not _same(seen, ref):
            out.append(Finding(mutant, "misread", f"request {i}: corral {seen} != ref {ref}"))
    return out


def _same(seen: Seen, ref: Message) -> bool:
    head = (seen.method, seen.target, seen.version, seen.headers)
    if head != (ref.method, ref.target, ref.version, ref.headers):
        return False
    if seen.complete:  # corral ended the body: the reference must have read the same one
        return ref.complete and seen.body == ref.body
    return ref.body.startswith(seen.body)


def run(n: int, seed: int, native_head: bool | None = None) -> tuple[int, list[Finding]]:
    """Check ``n`` mutants of ``seed``; (cases run, findings)."""
    findings: list[Finding] = []
    count = 0
    for mutant in cases(n, seed):
        findings += check(mutant, native_head)
        count += 1
    return count, findings


def minimize(finding: Finding, max_tries: int = 5000) -> Mutant:
    """A shorter mutant with a finding of the same kind: drop ever smaller spans (ddmin-like),
    bounded by ``max_tries`` checks. The reproducer to record as an xfail corpus case."""
    best = finding.mutant
    span, tries = max(1, len(best.raw) // 2), 0
    while span >= 1 and tries < max_tries:
        at, shrunk = 0, False
        while at < len(best.raw) and tries < max_tries:
            candidate = Mutant(best.index, best.source, best.mutations,
                               best.raw[:at] + best.raw[at + span :], best.eof)  # fmt: skip
            tries += 1
            if any(f.kind == finding.kind for f in check(candidate)):
                best, shrunk = candidate, True
            else:
                at += span
        if not shrunk:
            span //= 2
    return best
