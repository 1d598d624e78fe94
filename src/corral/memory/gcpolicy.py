"""Garbage-collector and copy-on-write policy for the preloading process and its workers.

Theory of operation. Workers are forked from a process that imported the application, so they
start out sharing its heap; every write to a shared page copies it. Two kinds of write dominate
(measured on a 220 MB heap, /work/shared/research/copy-on-write.md):

* the cyclic collector rewriting the GC header of every tracked object it scans, and a full
  collection in a worker costing 100-250 ms over the inherited heap; ``gc.freeze()`` before the
  fork moves those objects out of the collector's reach (a worker's full collection: ~0.5 ms);
* reference counts going up and back down whenever an object is used: only an immortal heap
  (3.12/3.13) stops those, and it is what keeps ~96% shared instead of ~33%.

The lifecycle, for the lead's preloading process ("zygote") and its workers::

    begin_preload(preset)          # before importing the app: collector off
    import app
    report = finish_preload(preset, warmup=..., collect_before_freeze=False)
    fork ...
    in_worker(preset)              # first thing in the child: collector back on
    ... serve ...
    fast_exit(code)                # never a normal interpreter exit

The preloading process keeps its collector disabled after ``finish_preload``: it should stay
idle (a page it writes after the fork also turns private in every worker), and the little it
allocates from then on is not worth a collection that would touch shared pages.

A worker must leave with ``fast_exit``: normal interpreter teardown decrefs and frees every
module, copying nearly the whole heap (183-211 MB, 0.35-1 s measured) and running the parent's
atexit handlers.
"""

from __future__ import annotations

import gc
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import NoReturn, TextIO

from corral.memory.immortal import immortality_refusal, immortalize_heap

__all__ = [
    "GcPreset",
    "PreloadReport",
    "begin_preload",
    "fast_exit",
    "finish_preload",
    "in_worker",
]

log = logging.getLogger("corral.memory")


class GcPreset(StrEnum):
    """Values of the ``--gc`` setting; ``PRESET_HELP`` has one paragraph each for the docs."""

    AUTO = "auto"
    FREEZE = "freeze"
    CPYTHON = "cpython"
    INSTAGRAM = "instagram"


PRESET_HELP: dict[GcPreset, str] = {
    GcPreset.AUTO: (
        "The default: the best verified policy for the running interpreter. On CPython 3.12 and "
        "3.13 (64-bit, GIL builds) the collector is off while the application is imported and "
        "warmed up, every object then alive is made immortal (its reference count is never "
        "written again, so using it no longer copies its page), the heap is frozen, and workers "
        "run the collector with the default thresholds. Measured: ~96% of the preloaded heap "
        "stays shared after 3000 requests, against ~33% with `freeze`. Immortal objects are "
        "never freed. On 3.11, other versions or unverified builds it does what `freeze` does "
        "and logs why."
    ),
    GcPreset.FREEZE: (
        "Collector off while preloading, gc.freeze() before forking, collector on in workers. "
        "No immortality. Saves the collector's header writes and makes a full collection in a "
        "worker ~500x cheaper; reference counts still copy most pages."
    ),
    GcPreset.CPYTHON: (
        "Touch nothing: the interpreter's own collector behaviour everywhere. For comparison "
        "and for applications that rely on every object being collectable."
    ),
    GcPreset.INSTAGRAM: (
        "As `freeze`, and gc.set_threshold(0) in workers (Instagram, 2017): automatic "
        "collection never runs in workers. Measured to save nothing over `freeze`, and every "
        "reference cycle a worker creates leaks until the worker is replaced."
    ),
}


@dataclass(frozen=True, slots=True)
class PreloadReport:
    """What ``finish_preload`` did. ``refused`` says why ``auto`` fell back to ``freeze``."""

    preset: GcPreset
    immortal: bool
    objects_immortalized: int
    objects_already_immortal: int
    frozen_objects: int
    collected: int | None  # objects gc.collect() found, when collect_before_freeze
    warmup_s: float
    immortalize_s: float
    total_s: float
    refused: str | None


def begin_preload(preset: GcPreset) -> None:
    """Call in the preloading process before importing the application: with the collector off,
    no collection rewrites the GC headers of objects that will be shared."""
    if preset is not GcPreset.CPYTHON:
        gc.disable()


def finish_preload(
    preset: GcPreset,
    *,
    warmup: Callable[[], None] | None = None,
    collect_before_freeze: bool = False,
) -> PreloadReport:
    """Warm up, optionally collect, make the heap immortal (``auto``), and freeze. Call right
    before forking workers, with no other thread running.

    ``collect_before_freeze`` (off by default) frees garbage created while importing, but leaves
    holes in partly used pools that every worker then fills, copying those pages (+0.4 to +3.5
    MB per worker measured); without it that garbage is kept forever (made immortal and frozen).
    """
    started = time.perf_counter()
    warmup_s = _timed(warmup)
    if preset is GcPreset.CPYTHON:
        return _report(preset, started, warmup_s, collected=None, refused=None)
    collected = gc.collect() if collect_before_freeze else None
    refused = _immortality_refusal(preset)
    wanted = preset is GcPreset.AUTO and refused is None
    result = immortalize_heap() if wanted else None
    gc.freeze()
    return PreloadReport(
        preset=preset,
        immortal=result is not None,
        objects_immortalized=result.made_immortal if result else 0,
        objects_already_immortal=result.already_immortal if result else 0,
        frozen_objects=gc.get_freeze_count(),
        collected=collected,
        warmup_s=warmup_s,
        immortalize_s=result.seconds if result else 0.0,
        total_s=time.perf_counter() - started,
        refused=refused,
    )


def _immortality_refusal(preset: GcPreset) -> str | None:
    """Why ``auto`` cannot make this heap immortal (logged), or None; None for other presets."""
    if preset is not GcPreset.AUTO:
        return None
    refused = immortality_refusal()
    if refused is not None:
        log.warning("gc=auto: immortal heap refused (%s); falling back to freeze", refused)
    return refused


def _timed(fn: Callable[[], None] | None) -> float:
    if fn is None:
        return 0.0
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def _report(
    preset: GcPreset, started: float, warmup_s: float, *, collected: int | None, refused: str | None
) -> PreloadReport:
    return PreloadReport(
        preset=preset,
        immortal=False,
        objects_immortalized=0,
        objects_already_immortal=0,
        frozen_objects=gc.get_freeze_count(),
        collected=collected,
        warmup_s=warmup_s,
        immortalize_s=0.0,
        total_s=time.perf_counter() - started,
        refused=refused,
    )


def in_worker(preset: GcPreset) -> None:
    """Call first thing in a freshly forked worker. The thresholds were never changed, so
    ``gc.enable()`` restores the interpreter's defaults ((700, 10, 10) on 3.11/3.12, (2000, 10,
    10) on 3.13); ``instagram`` sets threshold 0, which turns automatic collection off."""
    if preset is GcPreset.CPYTHON:
        return
    if preset is GcPreset.INSTAGRAM:
        gc.set_threshold(0)
    gc.enable()


def fast_exit(code: int) -> NoReturn:
    """Leave a worker without interpreter teardown: flush stdio and every logging handler, then
    ``os._exit(code)``. Teardown would copy nearly the whole shared heap and run the parent's
    atexit handlers. Run the worker's main in ``try/finally`` and call this with the real code;
    ``atexit.register(os._exit, 0)`` is a trap (forces 0, skips handlers registered before it)."""
    for handler in _logging_handlers():
        try:
            handler.flush()
        except Exception:  # a handler failing to flush must not keep the worker alive
            pass
    for stream in _std_streams():
        try:
            stream.flush()
        except (OSError, ValueError):  # closed or broken pipe: nothing more can be done
            pass
    os._exit(code)


def _std_streams() -> Iterator[TextIO]:
    seen: set[int] = set()
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        if stream is not None and id(stream) not in seen:
            seen.add(id(stream))
            yield stream


def _logging_handlers() -> list[logging.Handler]:
    loggers: list[logging.Logger] = [logging.getLogger()]
    loggers += [
        lg for lg in logging.Logger.manager.loggerDict.values() if isinstance(lg, logging.Logger)
    ]
    handlers: dict[int, logging.Handler] = {}
    for lg in loggers:
        for handler in lg.handlers:
            handlers[id(handler)] = handler
    return list(handlers.values())
