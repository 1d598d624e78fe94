"""The request head's llhttp check and field split: the pure-Python parser (the reference).

Theory of operation: ``Connection._parse_head`` has checked the request line itself
(``checks.parse_request_line``); a head parser then gives llhttp's verdict on the whole head and
splits its field lines. Two implement it: ``PythonHead`` here (httptools' llhttp, then
``bytes.split``/``partition``) and ``corral.http.native.NativeHead`` (the same llhttp in C, the
same split in C), chosen by the ``http_parser`` setting. Both return the same fields and raise
the same ``ProtocolError`` for every head (tests/unit/test_native_head.py runs the corpus and the
property tests through both).

llhttp (httptools) checks the field-line syntax in C (token names, no space before the colon,
no obs-fold, no CTL/NUL, CRLF only) with no Python callbacks; the validated field lines are then
split with ``bytes.split``/``partition`` (cheaper than a callback per field). llhttp only ever
sees heads: bodies are framed by the connection, so llhttp never parses bytes that belong to a
later cycle. ``PythonHead`` keeps its parser across bodiless keep-alive heads (building one
costs more than parsing a short head); any error from a reused parser is re-checked by a fresh
one, so verdicts never depend on earlier requests.
"""

from __future__ import annotations

from typing import Final, Protocol

import httptools

from corral.http.events import ProtocolError

# Fields whose value is one item, not a #list (RFC 9110 §5.3: a sender MUST NOT repeat them),
# and for which a recipient that picks the first, the last or the joined value decides what
# the request means: credentials, the identity of the target or origin, how to read the body,
# conditions and ranges. Two of them in one request are refused (400) instead of joined, so
# that no component behind corral (the app, a library, a cache) can read a different request
# than another. Host and Content-Length are refused by their own rules (RFC 9112 §3.2, §6.3).
# Every other repeated field is joined with ", " (Cookie with "; ") as RFC 9110 §5.3 allows:
# list fields (Accept*, Cache-Control, Forwarded, X-Forwarded-For, If-Match, Via, ...) mean
# the same joined, and the informational singletons (User-Agent, From, Date) decide nothing.
# docs/http.md carries the same table with the reasons.
SINGLETON_FIELDS: Final = frozenset(
    {
        b"authorization",  # RFC 9110 §11.6.2 credentials
        b"proxy-authorization",  # RFC 9110 §11.7.2
        b"content-type",  # RFC 9110 §8.3 media-type: how the body is parsed
        b"content-range",  # RFC 9110 §14.4: which part of a resource a PUT replaces
        b"origin",  # RFC 6454 §7.3 "MUST NOT include more than one": CSRF/CORS checks
        b"referer",  # RFC 9110 §10.1.3 one URI: CSRF checks read it
        b"range",  # RFC 9110 §14.2 ranges-specifier (one unit, its list inside one value)
        b"if-range",  # RFC 9110 §13.1.5 one entity-tag or date
        b"if-modified-since",  # RFC 9110 §13.1.3 HTTP-date
        b"if-unmodified-since",  # RFC 9110 §13.1.4 HTTP-date
        b"max-forwards",  # RFC 9110 §7.6.2 one integer (TRACE/OPTIONS hop count)
    }
)
# Fields the connection decides on: they go to ``special`` (and to ``headers`` as well).
SPECIAL: Final = (
    frozenset({b"host", b"content-length", b"transfer-encoding", b"connection", b"expect"})
    | SINGLETON_FIELDS
)

Pairs = list[tuple[bytes, bytes]]
# (headers, special, dropped): every field but the dropped ones in arrival order, name
# lower-cased and value OWS-stripped; the SPECIAL ones again; names dropped for their "_".
Fields = tuple[Pairs, Pairs, list[bytes]]


class HeadParser(Protocol):
    """What ``Connection`` asks of a head parser (one per connection)."""

    def fields(self, head: bytes, method: bytes) -> Fields:
        """llhttp's verdict on ``head`` (raises ``ProtocolError(400)``), then its fields."""
        ...

    def body_follows(self) -> None:
        """The head announced a body (or a close): llhttp would read the next head as body."""
        ...


def malformed(reason: str) -> ProtocolError:
    """The error for a head llhttp refused, worded the same by both parsers."""
    return ProtocolError(400, f"malformed request head: {reason}")


class _NoCallbacks:
    """llhttp only validates the head; fields are split in Python afterwards (faster than a
    Python callback per field). Stateless, so one instance serves every parser."""

    __slots__ = ()


_QUIET: Final = _NoCallbacks()


def split_fields(block: bytes) -> Fields:
    """Field lines that llhttp validated (token ":" OWS value OWS, CRLF-separated)."""
    headers: Pairs = []
    special: Pairs = []
    dropped: list[bytes] = []
    if block:
        for line in block.split(b"\r\n"):
            name, _, value = line.partition(b":")
            name = name.lower()
            value = value.strip(b" \t")
            if name in SPECIAL:
                special.append((name, value))
            elif b"_" in name:  # would collide with "-" in the WSGI environ (HTTP_X_Y)
                dropped.append(name)
                continue
            headers.append((name, value))
    return headers, special, dropped


class PythonHead:
    """httptools' llhttp and ``split_fields``; keeps one parser while it can be reused."""

    __slots__ = ("_parser",)

    def __init__(self) -> None:
        self._parser: httptools.HttpRequestParser | None = None

    def fields(self, head: bytes, method: bytes) -> Fields:
        self.validate(head, method)
        return split_fields(head[head.find(b"\r\n") + 2 : -4])

    def body_follows(self) -> None:
        self._parser = None  # llhttp now waits for a body (or is closed): not reusable

    def validate(self, head: bytes, method: bytes) -> None:
        """llhttp's verdict on ``head``, always the one a fresh parser would give.

        A parser that last saw a complete bodiless keep-alive head is back at the start of a
        message, so it is kept and fed the next head (saves building one per request). If it
        objects to anything, a fresh parser decides instead, so the error raised (and whether
        there is one) never depends on what the connection saw before.

        llhttp knows a fixed list of methods and refuses the rest, but RFC 9110 §9.1 makes
        methods extensible: any token (``parse_request_line`` checked that) is the app's to
        answer, 501 included. So when llhttp refuses a head whose method it may not know, the
        same head with the method replaced by ``GET`` decides: llhttp's checks of everything
        but the method (target, version, every field line) still make the verdict.
        """
        parser = self._parser
        if parser is not None:
            try:
                parser.feed_data(head)
                return
            except (httptools.HttpParserError, httptools.HttpParserUpgrade):
                pass  # let a fresh parser give the verdict
        try:
            self._fresh_parse(head)
        except httptools.HttpParserError as exc:
            if method == b"GET":
                raise malformed(str(exc)) from exc
            try:
                self._fresh_parse(b"GET" + head[len(method) :])
            except httptools.HttpParserError as exc2:
                raise malformed(str(exc2)) from exc2

    def _fresh_parse(self, head: bytes) -> None:
        parser = self._parser = httptools.HttpRequestParser(_QUIET)
        try:
            parser.feed_data(head)
        except httptools.HttpParserUpgrade:
            self._parser = None  # paused by llhttp: not reusable
            # Upgrade is ignored (RFC 9110 §7.8); the head itself parsed fine
