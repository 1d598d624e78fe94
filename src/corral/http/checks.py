"""Strict RFC 9110/9112 checks that llhttp does not make (or makes too leniently).

Theory of operation: llhttp (via httptools) validates the syntax of header field lines in C:
token names, no whitespace before the colon, no CTL/NUL in values, no obs-fold, CRLF only.
Experiments (see tests/unit/test_http_llhttp_assumptions.py) showed it *accepts* things a
strict server must refuse: any ``HTTP/d.d`` version (2.0, 0.9), double spaces in the request
line, trailing whitespace in Content-Length, ``Transfer-Encoding: gzip, chunked`` and
Transfer-Encoding in HTTP/1.0. So the request line, the target, Host, the framing headers,
Connection and Expect are decided here, with whole-value regexes (no per-byte Python loops).
Every failure raises ``ProtocolError`` carrying the status to answer.
"""

from __future__ import annotations

import re
from typing import Final

from corral.http.events import ProtocolError

# RFC 9110 §5.6.2 token.
TOKEN: Final = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
# RFC 9112 §3: method SP request-target SP HTTP-version, and §2.3: HTTP-version is
# "HTTP/" DIGIT "." DIGIT. Anything else is a malformed request (400); a well-formed version
# other than 1.0/1.1 (0.9, 2.0, 3.1) gets 505 (RFC 9110 §15.6.6).
_REQUEST_LINE: Final = re.compile(rb"(" + TOKEN + rb") ([^ ]+) HTTP/([0-9]\.[0-9])")
_SUPPORTED_VERSIONS: Final = {b"1.1": "1.1", b"1.0": "1.0"}
# Target characters: VCHAR except "#" (a fragment is never sent, RFC 9112 §3.2) and a
# well-formed percent-encoding (RFC 3986 §2.1). Non-ASCII bytes are refused: clients must
# percent-encode them. Characters RFC 3986 reserves for "unwise" (| { } ^ etc.) are accepted
# because browsers send them unencoded in queries.
_TARGET_BAD_CHAR: Final = re.compile(rb"[^\x21\x22\x24-\x7e]")
_BAD_PERCENT: Final = re.compile(rb"%(?![0-9A-Fa-f]{2})")
_ABSOLUTE: Final = re.compile(rb"([A-Za-z][A-Za-z0-9+\-.]*)://([^/?]*)(.*)", re.DOTALL)
# RFC 3986 host: IP-literal or reg-name (IPv4 is a subset of reg-name), then optional port.
# No userinfo: "@" is not in the class. IPv6 is checked loosely (hex, ":" and "." in brackets).
_HOST: Final = re.compile(rb"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~!$&'()*+,;=%]*)(?::[0-9]*)?")
_DIGITS: Final = re.compile(rb"[0-9]+")

# Host values that passed check_host (only valid ones, so a hit means "valid").
_VALID_HOSTS: Final[set[bytes]] = set()
_VALID_HOSTS_MAX: Final = 256

# Longest Content-Length we parse: 18 digits cannot overflow a signed 64-bit integer.
_MAX_CL_DIGITS: Final = 18


class RequestLine:
    """The parsed pieces of a request line that passed every check."""

    __slots__ = ("host", "method", "path", "query", "scheme", "target", "version")

    def __init__(self, method: bytes, target: bytes, version: str) -> None:
        self.method = method
        self.target = target
        self.version = version
        self.path = b""
        self.query = b""
        self.host: bytes | None = None  # authority from absolute-form
        self.scheme = b""


def parse_request_line(line: bytes) -> RequestLine:
    """Check ``line`` (without CRLF): 400 for garbage, 505 for other versions, 501 CONNECT."""
    m = _REQUEST_LINE.fullmatch(line)
    if m is None:
        raise ProtocolError(400, "malformed request line")
    version = _SUPPORTED_VERSIONS.get(m[3])
    if version is None:
        raise ProtocolError(505, "HTTP version not supported")
    rl = RequestLine(m[1], m[2], version)
    _parse_target(rl)
    return rl


def _parse_target(rl: RequestLine) -> None:
    """RFC 9112 §3.2: origin-form, absolute-form, asterisk-form (OPTIONS only).

    authority-form exists only for CONNECT, which a WSGI server cannot tunnel: 501.
    """
    target = rl.target
    if rl.method == b"CONNECT":
        raise ProtocolError(501, "CONNECT is not supported")
    if _TARGET_BAD_CHAR.search(target) is not None or (
        b"%" in target and _BAD_PERCENT.search(target) is not None
    ):
        raise ProtocolError(400, "invalid character in request target")
    if target[:1] == b"/":
        _split_path(rl, target)
    elif target == b"*":
        if rl.method != b"OPTIONS":
            raise ProtocolError(400, "asterisk-form is only allowed with OPTIONS")
        rl.path = b"*"
    else:
        _parse_absolute(rl, target)


def _split_path(rl: RequestLine, path_query: bytes) -> None:
    path, _sep, query = path_query.partition(b"?")
    rl.path = path or b"/"
    rl.query = query


def _parse_absolute(rl: RequestLine, target: bytes) -> None:
    m = _ABSOLUTE.fullmatch(target)
    if m is None:
        raise ProtocolError(400, "invalid request target form")
    scheme = m[1].lower()
    if scheme not in (b"http", b"https"):
        raise ProtocolError(400, "unsupported URI scheme in request target")
    authority = m[2]
    if b"@" in authority:
        raise ProtocolError(400, "userinfo is not allowed in request target")
    if not authority or not _valid_host(authority):
        raise ProtocolError(400, "invalid authority in request target")
    rest = m[3]
    if rest and rest[:1] not in (b"/", b"?"):
        raise ProtocolError(400, "invalid request target")
    _split_path(rl, rest if rest[:1] == b"/" else b"/" + rest)
    rl.host = authority
    rl.scheme = scheme


def _valid_host(value: bytes) -> bool:
    if _HOST.fullmatch(value) is None or value[:1] == b":":
        return False
    return b"%" not in value or _BAD_PERCENT.search(value) is None


def check_host(value: bytes) -> bytes:
    """RFC 9110 §7.2 Host = uri-host [":" port]; the caller refuses an empty one."""
    if value in _VALID_HOSTS:  # a server sees few distinct Host values: skip the regex
        return value
    if not _valid_host(value):
        raise ProtocolError(400, "invalid Host header")
    if len(_VALID_HOSTS) >= _VALID_HOSTS_MAX:  # clients choose Host: stay bounded
        _VALID_HOSTS.clear()
    _VALID_HOSTS.add(value)
    return value


def parse_content_length(value: bytes, max_body_size: int) -> int:
    """RFC 9112 §6.3: digits only (no sign, space or list); 413 above ``max_body_size``."""
    if _DIGITS.fullmatch(value) is None:
        raise ProtocolError(400, "invalid Content-Length")
    digits = value.lstrip(b"0")
    if len(digits) > _MAX_CL_DIGITS:
        raise ProtocolError(413, "request body too large")
    length = int(value)
    if length > max_body_size:
        raise ProtocolError(413, "request body too large")
    return length


def split_list(value: bytes) -> list[bytes]:
    """A #list (RFC 9110 §5.6.1) split on commas, OWS-stripped and lower-cased."""
    return [item.strip(b" \t").lower() for item in value.split(b",")]


def check_transfer_encoding(value: bytes) -> None:
    """RFC 9112 §6.1/§6.3: chunked must be final and appear once (else 400); any other
    coding is one we do not implement (501, RFC 9112 §6.1)."""
    codings = split_list(value)
    if codings[-1] != b"chunked" or codings.count(b"chunked") != 1 or b"" in codings:
        raise ProtocolError(400, "invalid Transfer-Encoding")
    if len(codings) > 1:
        raise ProtocolError(501, "transfer coding not implemented")
