"""Render untrusted bytes for logs without letting them forge log lines or terminal codes.

Printable ASCII (0x20-0x7e) is kept except the backslash; every other byte, and ``\\``,
becomes ``\\xNN`` so the output is unambiguous. Only used on error paths, so a table lookup
per byte is fine.
"""

from __future__ import annotations

from typing import Final

_TABLE: Final = tuple(
    chr(b) if 0x20 <= b <= 0x7E and b != 0x5C else f"\\x{b:02x}" for b in range(256)
)


def escape_for_log(data: bytes, limit: int = 200) -> str:
    """Escape ``data`` for a log line, keeping at most ``limit`` input bytes ("..." if cut)."""
    table = _TABLE
    text = "".join([table[b] for b in data[:limit]])
    return text + "..." if len(data) > limit else text
