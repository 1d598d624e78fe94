"""escape_for_log keeps printable ASCII and makes everything else visible and inert."""

from __future__ import annotations

from corral.http import escape_for_log


def test_printable_ascii_kept() -> None:
    assert escape_for_log(b"GET /index.html?a=1 HTTP/1.1") == "GET /index.html?a=1 HTTP/1.1"


def test_controls_and_high_bytes_escaped() -> None:
    assert escape_for_log(b"a\r\nb\x00\x1b[31m\xff") == "a\\x0d\\x0ab\\x00\\x1b[31m\\xff"


def test_backslash_escaped_so_output_is_unambiguous() -> None:
    assert escape_for_log(b"\\x41") == "\\x5cx41"


def test_truncation() -> None:
    assert escape_for_log(b"a" * 10, limit=4) == "aaaa..."
    assert escape_for_log(b"a" * 4, limit=4) == "aaaa"
    assert escape_for_log(b"") == ""


def test_every_byte_maps_to_printable_ascii() -> None:
    out = escape_for_log(bytes(range(256)), limit=256)
    assert out.isascii() and out.isprintable()
