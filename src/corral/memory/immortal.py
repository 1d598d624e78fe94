"""Make the preloaded heap immortal (CPython 3.12/3.13, 64-bit GIL builds) so workers stop
copying it.

Theory of operation. A forked worker copies a page of the parent's heap as soon as it writes to
it, and merely *using* an object writes its reference count. PEP 683 (3.12) made some objects
immortal: ``Py_INCREF``/``Py_DECREF`` leave their count alone. On 64-bit GIL builds of 3.12 and
3.13 an object is immortal when the low 32 bits of ``ob_refcnt`` (offset 0 of every object)
hold ``0xFFFFFFFF``: incref sees the 32-bit add overflow and skips, decref sees a negative
``int32`` and skips. Writing that value into every object reachable at the end of preloading, then
``gc.freeze()`` (so the collector never writes the GC headers either), keeps ~96% of the heap
shared after thousands of requests, against ~33% with ``gc.freeze()`` alone (measured:
docs/memory.md, /work/shared/research/copy-on-write.md).

The walk starts from ``gc.get_objects()`` (every container the collector tracks) and follows
``gc.get_referents`` in batches, adding what that misses: the keys of dicts (string-keyed dicts
do not report their keys) and the parts of code objects (not GC-tracked: constants, names,
filename, line and exception tables). An object already immortal is neither written nor
expanded, which is also how the walk remembers what it has seen: no id set, no extra memory.
It must run single-threaded, before ``gc.freeze()`` (frozen objects vanish from
``gc.get_objects()``).

The layout is checked before anything is written, and anything unverified is refused: another
interpreter or version (3.14 changed the representation), a free-threaded build (offset 0 is the
owning thread id there), a debug build, 32-bit, or a probe object whose count does not behave.
"""

from __future__ import annotations

import ctypes
import gc
import sys
import sysconfig
import time
from collections.abc import Iterable
from dataclasses import dataclass
from types import CodeType

__all__ = [
    "IMMORTAL_REFCNT",
    "ImmortalizeResult",
    "immortality_refusal",
    "immortalize_heap",
    "is_immortal",
]

IMMORTAL_REFCNT = 0xFFFFFFFF  # _Py_IMMORTAL_REFCNT on 64-bit 3.12/3.13 (UINT_MAX)
_INT32_SIGN = 0x80000000  # decref treats an object as immortal when (int32)ob_refcnt < 0
_SUPPORTED = ((3, 12), (3, 13))


@dataclass(frozen=True, slots=True)
class ImmortalizeResult:
    made_immortal: int  # objects whose count was written
    already_immortal: int  # objects met again or immortal from the start (not written)
    seconds: float


def immortality_refusal() -> str | None:
    """Why this interpreter's objects must not be made immortal, or None when it is verified."""
    for check in (_refuse_interpreter, _refuse_build, _refuse_threads, _refuse_probe):
        reason = check()
        if reason is not None:
            return reason
    return None


def _refuse_interpreter() -> str | None:
    if sys.implementation.name != "cpython":
        return f"{sys.implementation.name} is not CPython"
    if sys.version_info[:2] not in _SUPPORTED:
        version = ".".join(map(str, sys.version_info[:2]))
        return f"Python {version}: immortal heap is verified on 3.12 and 3.13 only"
    return None


def _refuse_build() -> str | None:
    if (
        sysconfig.get_config_var("Py_GIL_DISABLED")
        or not getattr(sys, "_is_gil_enabled", lambda: True)()
    ):
        return "free-threaded build: offset 0 of an object is not its reference count"
    if sys.maxsize <= 2**32:
        return "32-bit build: the immortal value differs"
    if hasattr(sys, "gettotalrefcount"):
        return "debug build (Py_REF_DEBUG): object layout and refcount accounting differ"
    if sys.getrefcount(None) != IMMORTAL_REFCNT:
        return f"sys.getrefcount(None) is {sys.getrefcount(None)}, not {IMMORTAL_REFCNT}"
    return None


def _refuse_threads() -> str | None:
    """The walk and the writes assume nothing else runs Python code meanwhile."""
    threading = sys.modules.get("threading")  # not imported: no Python threads were started
    if threading is not None and threading.active_count() > 1:
        names = ", ".join(t.name for t in threading.enumerate() if t is not threading.main_thread())
        return f"other threads are running ({names}); the heap must be walked single-threaded"
    return None


def _refuse_probe() -> str | None:
    """Verify on a throwaway object that offset 0 is the count and that the written value holds
    through increfs and decrefs. The probe stays alive forever (a few bytes)."""
    probe: list[int] = []
    field = ctypes.c_uint64.from_address(id(probe))
    before = field.value
    extra = [probe, probe]
    if field.value != before + 2:
        return "the reference count is not at offset 0 of an object"
    del extra
    field.value = IMMORTAL_REFCNT
    survive = [probe] * 8
    del survive
    if sys.getrefcount(probe) != IMMORTAL_REFCNT or field.value != IMMORTAL_REFCNT:
        return "a probe object did not stay immortal through increfs and decrefs"
    return None


def is_immortal(obj: object) -> bool:
    """True when decref would skip ``obj`` (3.12/3.13 64-bit layout; False on 3.11)."""
    return sys.version_info >= (3, 12) and sys.getrefcount(obj) & 0xFFFFFFFF >= _INT32_SIGN


def immortalize_heap() -> ImmortalizeResult:
    """Make every object reachable from the collector's lists immortal. Call only after
    ``immortality_refusal()`` returned None, single-threaded, before ``gc.freeze()``."""
    frontier: list[object] = gc.get_objects()  # first, so the walk's own objects are not in it
    started = time.perf_counter()
    made = skipped = 0
    while frontier:
        batch = _write_batch(frontier)
        made += len(batch)
        skipped += len(frontier) - len(batch)
        frontier = _expand(batch)
    return ImmortalizeResult(made, skipped, time.perf_counter() - started)


def _write_batch(objects: list[object]) -> list[object]:
    """Write the immortal count into each mortal object; return those written (to expand)."""
    getrefcount, at = sys.getrefcount, ctypes.c_uint64.from_address
    written: list[object] = []
    append = written.append
    for obj in objects:
        # getrefcount also catches counts pushed past 0xFFFFFFFF by old stable-ABI extensions.
        if getrefcount(obj) >= _INT32_SIGN:
            continue
        at(id(obj)).value = IMMORTAL_REFCNT
        append(obj)
    return written


def _expand(batch: list[object]) -> list[object]:
    """What ``batch`` refers to: referents, plus dict keys and code-object parts."""
    if not batch:
        return []
    found: list[object] = gc.get_referents(*batch)
    for obj in batch:
        # type(), never isinstance(): a lazy proxy (Django's SimpleLazyObject) reports the
        # wrapped class through __class__, and reading it would also evaluate the proxy.
        if issubclass(type(obj), dict):
            found.extend(dict.keys(obj))  # type: ignore[arg-type]  # bypass a subclass's __iter__
        elif type(obj) is CodeType:
            found.extend(_code_parts(obj))
    return found


def _code_parts(code: CodeType) -> Iterable[object]:
    """The objects a code object holds. ``co_varnames``/``co_code`` are left out: reading them
    allocates a cached copy per code object; the runtime rarely touches those."""
    return (
        code.co_consts,
        code.co_names,
        code.co_filename,
        code.co_name,
        code.co_qualname,
        code.co_linetable,
        code.co_exceptiontable,
    )
