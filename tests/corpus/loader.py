"""Load the raw-request corpus (see README.md in this folder for the format)."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CASES_DIR = Path(__file__).resolve().parent / "cases"


@dataclass(frozen=True, slots=True)
class Case:
    """One raw byte stream a client sends, and what that client must observe."""

    name: str
    raw: bytes
    expect_status: int | None  # None: every request is accepted (answered by the app)
    requests: int  # requests the app answers before the error (or in all)
    close: bool  # the server closes the connection after its responses
    note: str = ""
    eof: bool = False  # the client half-closes (SHUT_WR) after sending raw
    body_bytes: int | None = None  # request body bytes the app reads in all, if stated


def _text_to_bytes(text: str) -> bytes:
    # Each character stands for one byte (U+0000-U+00FF); anything above is a corpus bug.
    return text.encode("latin-1")


def _raw(value: Any) -> bytes:
    if isinstance(value, str):
        return _text_to_bytes(value)
    parts = []
    for part in value:
        if isinstance(part, str):
            parts.append(_text_to_bytes(part))
        else:
            parts.append(_text_to_bytes(part["repeat"]) * int(part["times"]))
    return b"".join(parts)


def load_case(path: Path) -> Case:
    doc = tomllib.loads(path.read_text(encoding="utf-8"))
    expect = doc["expect"]
    status = expect["status"]
    return Case(
        name=path.stem,
        raw=_raw(doc["raw"]),
        expect_status=None if status == "ok" else int(status),
        requests=int(expect["requests"]),
        close=bool(expect["close"]),
        note=str(doc.get("note", "")),
        eof=bool(doc.get("eof", False)),
        body_bytes=expect.get("body_bytes", 0 if status == "ok" else None),
    )


def load_cases(directory: Path = CASES_DIR) -> list[Case]:
    """Every case in ``directory``, sorted by name."""
    return [load_case(path) for path in sorted(directory.glob("*.toml"))]
