"""``--reload`` (issue 12 point 5): saving a source file serves the new code through a new
generation, with requests going on and none failing; a file saved broken leaves the old code
serving until it is fixed; a ``--reload-extra-file`` counts too."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import httpx
import pytest

from harness import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(90)]

VIEW = (
    "def application(environ, start_response):\n"
    "    start_response('200 OK', [])\n"
    "    return [b'{}']\n"
)


class Load(threading.Thread):
    """Requests one after another until stopped, counting answers and failures."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url, self.stop_at = url, threading.Event()
        self.bodies: list[bytes] = []
        self.failed: list[str] = []

    def run(self) -> None:
        with httpx.Client(timeout=10) as client:
            while not self.stop_at.is_set() and len(self.bodies) < 200_000:
                try:
                    r = client.get(self.url)
                    if r.status_code == 200:
                        self.bodies.append(r.content)
                    else:
                        self.failed.append(str(r.status_code))
                except httpx.HTTPError as exc:
                    self.failed.append(repr(exc))


def _body(url: str) -> bytes:
    return httpx.get(url, timeout=10).content


def test_saving_a_file_serves_the_new_code_and_fails_nothing(
    tmp_path: Path, corral_factory: Any
) -> None:
    (tmp_path / "devapp.py").write_text(VIEW.format("one"))
    extra = tmp_path / "settings.toml"
    extra.write_text("a = 1\n")
    c = corral_factory(
        "devapp", "-b", "127.0.0.1:0", "-w", "2", "--reload", "--reload-extra-file", str(extra)
    )
    assert _body(c.url) == b"one"
    load = Load(c.url)
    load.start()
    try:
        (tmp_path / "devapp.py").write_text(VIEW.format("two"))
        wait_for(lambda: _body(c.url) == b"two", 30)
        c.wait_log("--reload: ")
        (tmp_path / "devapp.py").write_text("def application(:\n")  # saved half-written
        c.wait_log("SyntaxError", 30)
        assert _body(c.url) == b"two"  # the old generation serves on
        (tmp_path / "devapp.py").write_text(VIEW.format("three"))
        wait_for(lambda: _body(c.url) == b"three", 30)
        extra.write_text("a = 2\n")  # the generation after it serves the same code
        wait_for(lambda: c.log().count("reload complete") >= 3, 30)
    finally:
        load.stop_at.set()
        load.join(20)
    assert load.failed == []
    assert {b"one", b"two", b"three"} <= set(load.bodies)
