"""Pure parts of the worker: settings validation and access-log formatting."""

from __future__ import annotations

import pytest

from corral.http.events import Request
from corral.worker.accesslog import format_line
from tests.worker_defaults import production_worker_settings


def request(target: bytes = b"/a?b=c", headers: list[tuple[bytes, bytes]] | None = None) -> Request:
    return Request(
        method=b"GET",
        target=target,
        path=target.partition(b"?")[0],
        query=target.partition(b"?")[2],
        http_version="1.1",
        headers=headers or [],
        host=b"x",
        keep_alive=True,
        content_length=None,
        chunked=False,
        expect_continue=False,
    )


def test_defaults_are_valid() -> None:
    settings = production_worker_settings()
    assert settings.threads == 1 and settings.access_log == "off"
    assert settings.keepalive_timeout_s < settings.header_timeout_s < settings.graceful_timeout_s


@pytest.mark.parametrize(
    "kwargs",
    [
        {"threads": 0},
        {"threads": 1000},
        {"access_log": "json"},
        {"root_path": "app"},
        {"root_path": "/app/"},
        {"max_connections": 0},
    ],
)
def test_invalid_settings_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        production_worker_settings(**kwargs)


def test_common_format() -> None:
    line = format_line("common", "10.0.0.1", request(), 200, 13, now=0.0)
    assert line.startswith("10.0.0.1 - - [")
    assert line.endswith('] "GET /a?b=c HTTP/1.1" 200 13')


def test_combined_format_escapes_client_data() -> None:
    req = request(
        b"/\xff",
        [(b"referer", b'http://r/"x'), (b"user-agent", b"ua\x1b[31m")],
    )
    line = format_line("combined", "", req, 404, 0, now=0.0)
    assert '"GET /\\xff HTTP/1.1" 404 -' in line
    assert line.endswith('"http://r/\\x22x" "ua\\x1b[31m"')
    assert line.startswith("- - - [")


def test_unparsed_request_is_a_dash() -> None:
    line = format_line("combined", "1.2.3.4", None, 400, 0, now=0.0)
    assert '"-" 400 - "-" "-"' in line
