"""corral.bench.config: durations, headers, validation, request encoding."""

from __future__ import annotations

import pytest

from corral.bench.config import (
    DEADLINE_GRACE_S,
    DEFAULT_DURATION_S,
    DEFAULT_MAX_TIME_S,
    BenchConfigError,
    LoadConfig,
    encode_request,
    parse_duration,
    parse_header,
    prepare,
    validate,
)

URL = "http://127.0.0.1:8080/"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("5", 5.0),
        ("5s", 5.0),
        ("1m", 60.0),
        ("250ms", 0.25),
        ("1.5h", 5400.0),
        (" 2s ", 2.0),
        (".5", 0.5),
        ("10.", 10.0),
    ],
)
def test_parse_duration_accepts(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "s", "abc", "5x", "-1", "0", "0s", "1m5s", "5 s s"])
def test_parse_duration_rejects_with_one_line(text: str) -> None:
    with pytest.raises(BenchConfigError) as info:
        parse_duration(text)
    assert "\n" not in str(info.value)


def test_parse_header() -> None:
    assert parse_header("X-Thing:  a b ") == ("X-Thing", "a b")
    assert parse_header("Empty:") == ("Empty", "")


@pytest.mark.parametrize("text", ["no colon", ": value", "Bad Name: v", "X: a\rb", "X: a\nb"])
def test_parse_header_rejects(text: str) -> None:
    with pytest.raises(BenchConfigError):
        parse_header(text)


def test_default_bounds() -> None:
    neither = LoadConfig(urls=(URL,))
    assert neither.effective_duration_s() == DEFAULT_DURATION_S
    assert neither.hard_deadline_s() == DEFAULT_DURATION_S + DEADLINE_GRACE_S
    count_only = LoadConfig(urls=(URL,), requests=100)
    assert count_only.effective_duration_s() is None
    assert count_only.hard_deadline_s() == DEFAULT_MAX_TIME_S
    capped = LoadConfig(urls=(URL,), requests=100, max_time_s=3.0)
    assert capped.hard_deadline_s() == 3.0
    timed = LoadConfig(urls=(URL,), duration_s=2.0, max_time_s=60.0)
    assert timed.hard_deadline_s() == 2.0 + DEADLINE_GRACE_S


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"urls": ()}, "no URL"),
        ({"connections": 0}, "connections"),
        ({"procs": 0}, "procs"),
        ({"requests": 0}, "requests"),
        ({"duration_s": 0.0}, "duration"),
        ({"rate": -1.0}, "rate"),
        ({"timeout_s": 0.0}, "timeout"),
        ({"procs": 4, "connections": 2}, "--procs 4"),
        ({"procs": 2, "connections": 2, "requests": 1}, "-n 1"),
        ({"method": "GE T"}, "method"),
    ],
)
def test_validate_rejects(changes: dict[str, object], fragment: str) -> None:
    config = LoadConfig(**{"urls": (URL,), **changes})  # type: ignore[arg-type]
    with pytest.raises(BenchConfigError, match=fragment):
        validate(config)


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("https://127.0.0.1/", "only http://"),
        ("ftp://127.0.0.1/", "only http://"),
        ("http:///path", "no host"),
        ("http://127.0.0.1:99999/", "bad URL"),
        ("127.0.0.1:8080/", "only http://"),
    ],
)
def test_prepare_rejects_urls(url: str, fragment: str) -> None:
    with pytest.raises(BenchConfigError, match=fragment):
        prepare(LoadConfig(urls=(url,)))


def test_prepare_requires_one_origin() -> None:
    config = LoadConfig(urls=(URL, "http://127.0.0.1:8081/"))
    with pytest.raises(BenchConfigError, match="one host and port"):
        prepare(config)


def test_prepare_encodes_each_url() -> None:
    plan = prepare(LoadConfig(urls=(URL + "a?x=1", URL + "b"), method="GET"))
    assert [t.request.split(b"\r\n", 1)[0] for t in plan.targets] == [
        b"GET /a?x=1 HTTP/1.1",
        b"GET /b HTTP/1.1",
    ]
    assert plan.targets[0].sockaddr == ("127.0.0.1", 8080)
    assert not plan.is_head
    assert prepare(LoadConfig(urls=(URL,), method="HEAD")).is_head


def _head_lines(request: bytes) -> list[bytes]:
    head, _, _ = request.partition(b"\r\n\r\n")
    return head.split(b"\r\n")


def test_encode_request_defaults() -> None:
    lines = _head_lines(encode_request(LoadConfig(urls=(URL,)), "127.0.0.1:8080", "/"))
    assert lines[0] == b"GET / HTTP/1.1"
    assert b"Host: 127.0.0.1:8080" in lines
    assert not any(line.lower().startswith(b"connection:") for line in lines)
    assert not any(line.lower().startswith(b"content-length:") for line in lines)


def test_encode_request_no_keepalive_and_body() -> None:
    config = LoadConfig(
        urls=(URL,), keepalive=False, method="POST", body=b"hello", content_type="a/b"
    )
    request = encode_request(config, "h", "/p")
    lines = _head_lines(request)
    assert b"Connection: close" in lines
    assert b"Content-Length: 5" in lines
    assert b"Content-Type: a/b" in lines
    assert request.endswith(b"\r\n\r\nhello")


def test_user_headers_replace_ours_but_not_framing() -> None:
    config = LoadConfig(
        urls=(URL,),
        body=b"xy",
        headers=(("host", "example.test"), ("Content-Length", "99"), ("X-A", "1")),
    )
    lines = _head_lines(encode_request(config, "127.0.0.1:8080", "/"))
    assert b"host: example.test" in lines
    assert not any(line.startswith(b"Host: 127") for line in lines)
    assert b"Content-Length: 2" in lines
    assert b"X-A: 1" in lines


def test_ipv6_host_header_keeps_brackets() -> None:
    plan = prepare(LoadConfig(urls=("http://[::1]:8080/",)))
    assert plan.targets[0].host_header == "[::1]:8080"
    assert plan.targets[0].sockaddr[0] == "::1"


def test_non_latin1_header_is_a_config_error() -> None:
    with pytest.raises(BenchConfigError, match="latin-1"):
        prepare(LoadConfig(urls=(URL,), headers=(("X", "\u2603"),)))
