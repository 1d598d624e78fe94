"""The --gc presets' effect on the collector, immortality checks, fast_exit and warm-up.

The test interpreter may be 3.11, where ``auto`` must refuse immortality; the immortal heap itself
is exercised on 3.12/3.13 in tests/integration/test_memory_immortal.py.
"""

from __future__ import annotations

import gc
import io
import logging
import os
import select
import sys
from collections.abc import Iterable, Iterator
from typing import Any
from wsgiref.validate import validator

import pytest

from corral.memory import immortal
from corral.memory.gcpolicy import (
    PRESET_HELP,
    GcPreset,
    begin_preload,
    fast_exit,
    finish_preload,
    in_worker,
)
from corral.memory.warmup import make_environ, make_warmup, run_request


@pytest.fixture(autouse=True)
def restore_gc() -> Iterator[None]:
    enabled, thresholds = gc.isenabled(), gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)
    if enabled:
        gc.enable()
    else:
        gc.disable()


def test_every_preset_has_help() -> None:
    assert set(PRESET_HELP) == set(GcPreset)
    assert [p.value for p in GcPreset] == ["auto", "freeze", "cpython", "instagram"]


@pytest.mark.parametrize("preset", [GcPreset.AUTO, GcPreset.FREEZE, GcPreset.INSTAGRAM])
def test_collector_off_while_preloading_and_frozen_after(preset: GcPreset) -> None:
    gc.enable()
    begin_preload(preset)
    assert not gc.isenabled()
    report = finish_preload(preset)
    assert report.preset is preset
    assert report.frozen_objects > 1000
    # Frozen objects can still be freed by reference counting (3.13 frees one here), never added.
    assert report.frozen_objects - 64 <= gc.get_freeze_count() <= report.frozen_objects
    assert not gc.isenabled()  # the preloading process stays idle, collector off
    assert report.warmup_s == 0.0 and report.collected is None


def test_cpython_preset_touches_nothing() -> None:
    gc.enable()
    begin_preload(GcPreset.CPYTHON)
    assert gc.isenabled()
    report = finish_preload(GcPreset.CPYTHON)
    assert gc.get_freeze_count() == 0 and report.frozen_objects == 0
    assert not report.immortal and report.refused is None
    gc.disable()
    in_worker(GcPreset.CPYTHON)
    assert not gc.isenabled()


def test_in_worker_restores_default_thresholds() -> None:
    thresholds = gc.get_threshold()
    begin_preload(GcPreset.FREEZE)
    finish_preload(GcPreset.FREEZE)
    in_worker(GcPreset.FREEZE)
    assert gc.isenabled()
    assert gc.get_threshold() == thresholds


def test_instagram_worker_has_threshold_zero() -> None:
    begin_preload(GcPreset.INSTAGRAM)
    finish_preload(GcPreset.INSTAGRAM)
    in_worker(GcPreset.INSTAGRAM)
    assert gc.get_threshold()[0] == 0


def test_collect_before_freeze_reports_garbage() -> None:
    begin_preload(GcPreset.FREEZE)
    for _ in range(100):
        cycle: list[object] = []
        cycle.append(cycle)
    del cycle
    report = finish_preload(GcPreset.FREEZE, collect_before_freeze=True)
    assert report.collected is not None and report.collected >= 100


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="the 3.11 fallback")
def test_auto_on_311_falls_back_to_freeze(caplog: pytest.LogCaptureFixture) -> None:
    begin_preload(GcPreset.AUTO)
    with caplog.at_level(logging.WARNING, logger="corral.memory"):
        report = finish_preload(GcPreset.AUTO)
    assert not report.immortal
    assert report.refused is not None and "3.11" in report.refused
    assert report.objects_immortalized == 0
    assert report.frozen_objects > 1000
    assert "falling back to freeze" in caplog.text


def test_refusals(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "version_info", (3, 14, 0, "final", 0))
    assert "3.14" in (immortal.immortality_refusal() or "")
    monkeypatch.setattr(sys, "version_info", (3, 13, 0, "final", 0))
    monkeypatch.setattr(sys, "_is_gil_enabled", lambda: False, raising=False)
    assert "free-threaded" in (immortal.immortality_refusal() or "")


def test_warmup_runs_paths_through_a_valid_wsgi_call(caplog: pytest.LogCaptureFixture) -> None:
    seen: list[tuple[str, str]] = []
    closed: list[bool] = []

    class Body:
        def __init__(self, chunks: list[bytes]) -> None:
            self.chunks = chunks

        def __iter__(self) -> Iterator[bytes]:
            return iter(self.chunks)

        def close(self) -> None:
            closed.append(True)

    def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        seen.append((environ["PATH_INFO"], environ["QUERY_STRING"]))
        if environ["PATH_INFO"] == "/boom":
            raise RuntimeError("boom")
        start_response("200 OK", [("Content-Type", "text/plain")])
        return Body([b"hello"])

    warmup = make_warmup(validator(app), ["/a%20b?x=1", "/boom", "/caf%C3%A9"])
    with caplog.at_level(logging.WARNING, logger="corral.memory"):
        warmup()
    assert seen == [("/a b", "x=1"), ("/boom", ""), ("/caf\xc3\xa9", "")]
    assert len(closed) == 2
    assert "GET /boom failed" in caplog.text


def test_run_request_reports_status_and_length() -> None:
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("404 Not Found", [])
        return [b"no", b"pe"]

    assert run_request(app, "/x") == ("404 Not Found", 4)
    environ = make_environ("/p?q")
    assert environ["wsgi.input"].read() == b""
    assert environ["SERVER_PROTOCOL"] == "HTTP/1.1"


def _in_child(body: Any) -> tuple[int, bytes]:
    """Run ``body(write_fd)`` in a forked child; return its exit code and what it wrote."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        try:
            body(w)
        finally:
            os._exit(99)  # reached only if body returned instead of exiting
    os.close(w)
    out = b""
    while True:
        ready, _, _ = select.select([r], [], [], 30.0)
        assert ready, "child did not finish within the deadline"
        chunk = os.read(r, 65536)
        if not chunk:
            break
        out += chunk
    os.close(r)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), out


def test_fast_exit_flushes_logging_and_skips_atexit() -> None:
    def body(fd: int) -> None:
        import atexit

        stream = io.TextIOWrapper(io.FileIO(fd, "w", closefd=False), write_through=False)
        handler = logging.StreamHandler(stream)
        logger = logging.getLogger("corral.test.fastexit")
        logger.addHandler(handler)
        logger.propagate = False
        logger.warning("last words")
        atexit.register(lambda: os.write(fd, b"atexit ran"))
        fast_exit(7)

    code, out = _in_child(body)
    assert code == 7
    assert out == b"last words\n"


def test_refused_while_other_threads_run() -> None:
    import threading

    assert immortal._refuse_threads() is None
    stop = threading.Event()
    worker = threading.Thread(target=stop.wait, args=(30.0,), name="agent")
    worker.start()
    try:
        refusal = immortal._refuse_threads()
    finally:
        stop.set()
        worker.join(30.0)
    assert refusal is not None and "agent" in refusal


def test_immortal_walk_does_not_trust_a_proxys_class() -> None:
    """A lazy proxy that claims to be a dict through ``__class__`` (Django's SimpleLazyObject
    does) must not break the walk: isinstance() says dict, dict.keys() would raise TypeError."""
    from corral.memory.immortal import _expand

    class LazyDict:
        # the lie under test: a read-only __class__ over object's writable one
        @property  # type: ignore[misc]
        def __class__(self) -> type:
            return dict

    proxy = LazyDict()
    assert isinstance(proxy, dict)  # what fooled the walk
    found = _expand([proxy, {"planted-key": 1}])
    assert "planted-key" in found
