"""start_response: status and header validation, exc_info rules, write(), file_wrapper."""

from __future__ import annotations

import io
import sys
from typing import Any

import pytest

from corral.wsgi import FileWrapper, StartResponse, encode_headers, parse_status


def exc_info_of(exc: BaseException) -> Any:
    try:
        raise exc
    except BaseException:
        return sys.exc_info()


def test_records_status_and_encodes_headers() -> None:
    written: list[bytes] = []
    resp = StartResponse(written.append)
    write = resp("201 Created", [("Content-Type", "text/plain"), ("Content-Length", "5")])
    assert resp.status_code == 201
    assert resp.reason == b"Created"
    assert resp.headers == [(b"Content-Type", b"text/plain"), (b"Content-Length", b"5")]
    assert resp.content_length == 5
    write(b"x")
    assert written == [b"x"]


@pytest.mark.parametrize("status", ["200", "200OK", "20 OK", "abc OK", "099 Low", "200 O\nK"])
def test_bad_status_strings(status: str) -> None:
    with pytest.raises(ValueError):
        parse_status(status)


def test_status_must_be_str() -> None:
    with pytest.raises(TypeError):
        StartResponse()(b"200 OK", [])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "headers",
    [
        ("Content-Type", "text/plain"),  # not a list
        [("Content-Type",)],
        [(b"Content-Type", "text/plain")],
        [("Content-Type", b"text/plain")],
        [["Content-Type", "text/plain"]],
    ],
)
def test_header_types(headers: Any) -> None:
    with pytest.raises(TypeError):
        StartResponse()("200 OK", headers)


def test_non_latin1_header_value_rejected() -> None:
    with pytest.raises(UnicodeEncodeError):
        StartResponse()("200 OK", [("X-Name", "\u20ac")])


def test_bad_content_length_rejected() -> None:
    with pytest.raises(ValueError):
        encode_headers([("Content-Length", "-1")])


def test_second_call_without_exc_info_is_an_error() -> None:
    resp = StartResponse()
    resp("200 OK", [])
    with pytest.raises(AssertionError):
        resp("500 Oops", [])


def test_exc_info_before_headers_sent_replaces_status() -> None:
    resp = StartResponse()
    resp("200 OK", [("X-A", "1")])
    resp("500 Internal Server Error", [("X-B", "2")], exc_info_of(ValueError("boom")))
    assert resp.status_code == 500
    assert resp.headers == [(b"X-B", b"2")]


def test_exc_info_after_headers_sent_reraises() -> None:
    resp = StartResponse()
    resp("200 OK", [])
    resp.headers_sent = True
    with pytest.raises(ValueError, match="boom"):
        resp("500 Internal Server Error", [], exc_info_of(ValueError("boom")))


def test_file_wrapper_iterates_blocks_and_closes() -> None:
    f = io.BytesIO(b"abcdefg")
    wrapper = FileWrapper(f, 3)
    assert list(wrapper) == [b"abc", b"def", b"g"]
    assert wrapper.fileno() is None  # BytesIO has no descriptor: served by iteration
    wrapper.close()
    assert f.closed


def test_file_wrapper_fileno_of_real_file(tmp_path: Any) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(b"data")
    with open(path, "rb") as f:
        assert FileWrapper(f).fileno() == f.fileno()
