"""What llhttp (via httptools) accepts on its own. corral's extra checks exist because of the
lenient rows below; if an httptools upgrade changes a row, this test says which check to
revisit. The strict rows are the checks corral relies on llhttp to make."""

from __future__ import annotations

import httptools
import pytest

from corral.http import Connection, ProtocolError, Request

H = b"GET / HTTP/1.1\r\nHost: a\r\n"


class _Sink:
    def on_header(self, name: bytes, value: bytes) -> None:
        pass


def llhttp_accepts(raw: bytes) -> bool:
    try:
        httptools.HttpRequestParser(_Sink()).feed_data(raw)
    except httptools.HttpParserUpgrade:
        return True
    except httptools.HttpParserError:
        return False
    return True


# llhttp alone lets these through; corral refuses each with the given status.
LENIENT = [
    (b"GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505),
    (b"GET / HTTP/0.9\r\n\r\n", 505),
    (b"GET  / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    (H + b"Transfer-Encoding: gzip, chunked\r\n\r\n", 501),
    (b"GET / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\n\r\n", 400),
    (H + b"Host: b\r\n\r\n", 400),
    (b"GET /#f HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    (b"GET http://u@a/ HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    (b"GET * HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    (H + b"Expect: nothing\r\n\r\n", 417),
    (b"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n", 501),
]

# llhttp refuses these itself (strict mode); corral relies on it.
STRICT = [
    H + b"X: a\r\n b\r\n\r\n",  # obs-fold
    H + b"X : a\r\n\r\n",  # whitespace before colon
    H + b"X: a\x00b\r\n\r\n",  # NUL
    H + b"X: a\x01b\r\n\r\n",  # CTL
    H + b"X: a\rb\r\n\r\n",  # bare CR
    H + b"X: a\nY: b\r\n\r\n",  # bare LF
    H + b"Content-Length: 1\r\nContent-Length: 1\r\n\r\n",  # duplicate CL
    H + b"Content-Length: +1\r\n\r\n",
    H + b"Transfer-Encoding: chunked\r\nContent-Length: 1\r\n\r\n",
    H + b"Transfer-Encoding: chunked, gzip\r\n\r\n",
    H + b"X(Y): z\r\n\r\n",
]


@pytest.mark.parametrize(("raw", "status"), LENIENT)
def test_lenient_in_llhttp_strict_in_corral(raw: bytes, status: int) -> None:
    assert llhttp_accepts(raw)
    conn = Connection()
    conn.receive_data(raw)
    with pytest.raises(ProtocolError) as info:
        conn.next_event()
    assert info.value.status == status


@pytest.mark.parametrize("raw", STRICT)
def test_llhttp_refuses(raw: bytes) -> None:
    assert not llhttp_accepts(raw)
    conn = Connection()
    conn.receive_data(raw)
    with pytest.raises(ProtocolError) as info:
        conn.next_event()
    assert info.value.status == 400


def test_llhttp_keeps_trailing_whitespace_which_corral_strips() -> None:
    seen: list[bytes] = []

    class Sink:
        def on_header(self, name: bytes, value: bytes) -> None:
            seen.append(value)

    httptools.HttpRequestParser(Sink()).feed_data(H + b"X:\t v \t\r\n\r\n")
    assert seen[-1] == b"v \t"
    conn = Connection()
    conn.receive_data(H + b"X:\t v \t\r\n\r\n")
    req = conn.next_event()
    assert isinstance(req, Request)
    assert req.headers[-1] == (b"x", b"v")
