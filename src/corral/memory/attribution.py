"""Copy-on-write attribution: which Python objects sit on the pages a worker has copied.

Theory of operation. A page of the preloaded heap stops being shared when the worker writes to
it. ``pagemap`` bit 56 says which pages of the pre-fork ranges this process now maps alone; the
interpreter says where each object lives (``id(o)`` is its address in CPython) and how big it
is. Laying one over the other names the types and modules whose objects sit on copied pages.

Order matters, because looking at objects writes to them: collecting them into a list raises
every reference count (on a heap that is not immortal this copies nearly every page by itself).
So ``on_request`` first reads ``/proc/self/pagemap`` for the pre-fork ranges into a set of copied
page numbers (bytes slicing, ``translate`` and one regular-expression pass per 512 KiB: no per-page
Python loop, no per-object system call), and only then enumerates objects and tests each one's
extent against that set.

* Pre-fork ranges: the anonymous ranges of this worker's zygote (the master's child titled
  ``corral zygote [...] gen G`` of this worker's generation). The zygote is idle after the fork,
  so its ranges are the ones the worker inherited. When it is gone (an old generation) the
  worker's own current anonymous ranges are used and the report says so: memory mapped after the
  fork then counts as well.
* Objects: ``gc.get_objects()`` does not return frozen objects (3.11, 3.12 and 3.13 alike: after
  ``gc.freeze()`` it returns only what was tracked since), so the permanent generation is merged
  back (``gc.unfreeze()``, an O(1) list splice), listed, and frozen again, with the collector off
  in between. Objects the collector does not track (strings, numbers, code objects, tuples and
  dicts of atomic values) are reached from the tracked ones through ``gc.get_referents``, plus
  what that misses: dict keys (a str-keyed dict does not report its keys) and the constants,
  names and tables of code objects.
* Extents: ``[id(o), id(o) + size)`` where size is the object's inline size: ``__basicsize__``
  for fixed-size types, the C ``__sizeof__`` of ``str``/``int``/``object`` for variable-size
  ones (never a Python-level ``__sizeof__``: no user code runs). Buffers held by pointer (a
  list's item array, a dict's table, 3.11/3.12 instance-attribute value arrays) are separate
  allocations and are not attributed; the GC header before an object is ignored.
* Attribution: each object is credited with its bytes that lie on copied pages, keyed by type
  (``module.QualName``) and by module: a module's own name, the ``__module__`` of a function or
  class, the module whose file holds a code object, else the module of the object's type.

Costs, and why it is a one-shot diagnostic: the enumeration itself touches reference counts and
GC links, so on a heap that is not immortal it un-shares most of what it examines, and objects
the worker created before the request end up frozen (never collected) by the re-freeze. The
worker keeps serving; replace it afterwards if its memory matters.

Signals: the worker loop sets a flag in its SIGUSR2 handler and calls ``on_request`` from the
loop, never from the handler, passing its heartbeat as ``tick`` so a long walk does not look
like a stuck worker. The report goes to ``report_path(pid)``, written to a temporary file in the
same directory and renamed into place, so a reader never sees half of it. The loop imports this
module in the zygote (so its code is shared); ``json`` and ``tempfile`` are imported only when a
report is written, after the snapshot, to keep the zygote small.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import re
import sys
import time
import types
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from corral.memory.proc import PAGE_SIZE, AddressRange, ProcessGone, anonymous_ranges

__all__ = [
    "Aggregate",
    "CopiedPages",
    "attribute_objects",
    "copied_page_runs",
    "find_zygote",
    "iter_heap_objects",
    "object_extent",
    "on_request",
    "read_copied_pages",
    "report_path",
    "run_attribution",
]

log = logging.getLogger("corral.error")

REPORT_TOP = 200  # entries kept per table in the report file; the CLI shows fewer
_PAGEMAP_ENTRY = 8
_CHUNK_PAGES = 1 << 16  # 512 KiB of pagemap per read, as corral.memory.proc
_ZYGOTE_TITLE = re.compile(r"^corral zygote \[.*\] gen (\d+)\s*$")
_WORKER_TITLE = re.compile(r"^corral worker \S+ \[.*\] gen (\d+)\s*$")


def report_path(pid: int) -> Path:
    """Where worker ``pid`` writes its attribution report."""
    import tempfile  # here, not at the top: the worker imports this module in the zygote

    return Path(tempfile.gettempdir()) / f"corral-cow-{pid}.json"


# --- copied pages -------------------------------------------------------------------------------

# Last byte of a pagemap entry: bit 63 present (0x80), bit 56 exclusively mapped (0x01).
_EXCLUSIVE = bytes(ord("E") if (b & 0x81) == 0x81 else ord(".") for b in range(256))
_RUN = re.compile(b"E+")


def copied_page_runs(data: bytes, first_page: int) -> Iterator[tuple[int, int]]:
    """``(first, end)`` page-number runs of present, exclusively mapped entries in ``data`` (raw
    little-endian pagemap entries for pages ``first_page, first_page + 1, ...``)."""
    classes = data[7::_PAGEMAP_ENTRY].translate(_EXCLUSIVE)
    for match in _RUN.finditer(classes):
        yield first_page + match.start(), first_page + match.end()


@dataclass
class CopiedPages:
    """The set of copied page numbers, and the byte overlap of an extent with it."""

    pages: set[int] = field(default_factory=set)
    page_size: int = PAGE_SIZE

    def add_run(self, first: int, end: int) -> None:
        self.pages.update(range(first, end))

    @property
    def bytes(self) -> int:
        return len(self.pages) * self.page_size

    def overlap(self, addr: int, size: int) -> int:
        """Bytes of ``[addr, addr + size)`` that lie on copied pages."""
        ps = self.page_size
        first, last = addr // ps, (addr + size - 1) // ps
        if first == last:  # nearly every object: one set lookup
            return size if first in self.pages else 0
        total = 0
        for page in range(first, last + 1):
            if page in self.pages:
                total += min(addr + size, (page + 1) * ps) - max(addr, page * ps)
        return total


def read_copied_pages(pid: int, ranges: Sequence[AddressRange]) -> CopiedPages:
    """Copied (present, exclusive) pages of ``ranges`` in ``/proc/PID/pagemap``."""
    copied = CopiedPages()
    try:
        fd = os.open(f"/proc/{pid}/pagemap", os.O_RDONLY)
    except (FileNotFoundError, ProcessLookupError) as exc:
        raise ProcessGone(f"process {pid} is gone") from exc
    try:
        for rng in ranges:
            first, last = rng.start // PAGE_SIZE, rng.end // PAGE_SIZE
            for page in range(first, last, _CHUNK_PAGES):
                count = min(_CHUNK_PAGES, last - page)
                data = os.pread(fd, count * _PAGEMAP_ENTRY, page * _PAGEMAP_ENTRY)
                for run in copied_page_runs(data, page):
                    copied.add_run(*run)
    finally:
        os.close(fd)
    return copied


# --- object extents and keys ----------------------------------------------------------------------

_FIXED, _VAR = 0, 1
_MAX_INLINE = 1 << 26  # an "inline size" beyond 64 MiB means ob_size is not a length
_SIZE_KIND: dict[type, tuple[int, Any]] = {}


def _size_kind(tp: type) -> tuple[int, Any]:
    """How to size instances of ``tp``: a fixed ``__basicsize__``, or a C-level ``__sizeof__``.

    Variable-size types (``__itemsize__`` set, or ``str``/``int`` whose ``ob_size`` is not a
    plain length on 3.12+) are sized by the nearest C ``__sizeof__`` in the MRO, a method
    descriptor, so no Python-level override ever runs."""
    kind = _SIZE_KIND.get(tp)
    if kind is None:
        kind = (_FIXED, tp.__basicsize__)
        if tp.__itemsize__ or issubclass(tp, (str, int)):
            for klass in tp.__mro__:
                sizeof = klass.__dict__.get("__sizeof__")
                if isinstance(sizeof, types.MethodDescriptorType):
                    kind = (_VAR, sizeof)
                    break
        _SIZE_KIND[tp] = kind
    return kind


def _small_types(page_size: int) -> tuple[set[type], dict[type, int], int]:
    """Types whose instances fit in one page: fixed-size types so far met with a basicsize of at
    most a page, and length (or int bit-length) bounds under which str, bytes and tuple do."""
    fixed = {tp for tp, (kind, size) in _SIZE_KIND.items() if kind == _FIXED and size <= page_size}
    fixed.update(t for t in (float, type(None), bool, complex) if t.__basicsize__ <= page_size)
    # Bounds leave 128 bytes for headers: str holds up to 4 bytes per character (+1 for the
    # terminator), bytes 1, a tuple one pointer per item; an int digit is 30 bits in 4 bytes.
    lens: dict[type, int] = {
        str: (page_size - 128) // 4 - 1,
        bytes: page_size - 128,
        tuple: (page_size - 128) // 8,
    }
    return fixed, lens, (page_size - 128) * 7


def object_extent(obj: object) -> tuple[int, int]:
    """``(address, inline size)`` of ``obj``; see the module docstring for what is left out."""
    kind, how = _size_kind(type(obj))
    size: int = how
    if kind == _VAR:
        size = how(obj)
        if not 0 < size <= _MAX_INLINE:
            size = type(obj).__basicsize__
    return id(obj), max(size, 1)


def type_key(tp: type) -> str:
    """``module.QualName`` for a type, builtins without a prefix."""
    module = _TYPE_MODULE.__get__(tp)
    qualname = _TYPE_QUALNAME.__get__(tp)
    return qualname if module == "builtins" else f"{module}.{qualname}"


# Descriptors read straight from the C types, so that no user-defined attribute code can run.
_MODULE_DICT: Any = vars(types.ModuleType)["__dict__"]
_TYPE_MODULE: Any = vars(type)["__module__"]
_TYPE_QUALNAME: Any = vars(type)["__qualname__"]


def module_key(obj: object, file_modules: dict[str, str]) -> str:
    """The module an object belongs to (see the module docstring). Runs no user code."""
    tp = type(obj)
    # issubclass on type(obj), never isinstance: isinstance may read a user-defined __class__.
    if issubclass(tp, types.ModuleType):
        return str(_MODULE_DICT.__get__(obj).get("__name__", "?"))
    if tp is types.FunctionType:
        return str(obj.__module__)  # type: ignore[attr-defined]
    if issubclass(tp, type):
        return str(_TYPE_MODULE.__get__(obj))
    if tp is types.CodeType:
        filename = cast(types.CodeType, obj).co_filename
        return file_modules.get(filename, filename)
    return str(_TYPE_MODULE.__get__(tp))


def file_modules() -> dict[str, str]:
    """``{file name: module name}`` for every loaded module with a ``__file__``."""
    out: dict[str, str] = {}
    for name, mod in list(sys.modules.items()):
        if not issubclass(type(mod), types.ModuleType):
            continue
        path = _MODULE_DICT.__get__(mod).get("__file__")
        if isinstance(path, str):
            out[path] = name
    return out


# --- aggregation --------------------------------------------------------------------------------


@dataclass
class Aggregate:
    """Copied bytes and object counts by type and by module."""

    by_type: dict[str, list[int]] = field(default_factory=dict)  # key -> [bytes, objects]
    by_module: dict[str, list[int]] = field(default_factory=dict)
    objects_seen: int = 0
    objects_on_copied: int = 0
    bytes_attributed: int = 0

    def add(self, tkey: str, mkey: str, nbytes: int) -> None:
        for table, key in ((self.by_type, tkey), (self.by_module, mkey)):
            entry = table.get(key)
            if entry is None:
                table[key] = [nbytes, 1]
            else:
                entry[0] += nbytes
                entry[1] += 1
        self.objects_on_copied += 1
        self.bytes_attributed += nbytes

    @staticmethod
    def top(table: dict[str, list[int]], n: int) -> list[dict[str, Any]]:
        """The ``n`` largest entries by bytes, as JSON-ready dicts."""
        ranked = sorted(table.items(), key=lambda kv: (-kv[1][0], kv[0]))[:n]
        return [{"name": k, "bytes": v[0], "objects": v[1]} for k, v in ranked]


def attribute_objects(
    objects: Iterable[object], copied: CopiedPages, files: dict[str, str] | None = None
) -> Aggregate:
    """Credit each object with its bytes on copied pages. An object met twice (untracked ones
    can be) is counted once: the ids of objects already credited are remembered."""
    agg = Aggregate()
    files = {} if files is None else files
    credited: set[int] = set()
    type_keys: dict[type, str] = {}
    kinds, size_kind, pages, ps = _SIZE_KIND, _size_kind, copied.pages, copied.page_size
    shift = ps.bit_length() - 1  # page sizes are powers of two; >> is ~2x faster than //
    near = pages.union([p - 1 for p in pages])  # a small object starting here may touch one
    fixed_small, len_small, int_bits = _small_types(ps)
    seen = 0
    for obj in objects:  # object_extent inlined: this loop runs for millions of objects
        seen += 1
        addr = id(obj)
        tp = type(obj)
        if addr >> shift not in near:
            # Cheap exits for objects known to be at most a page long, without sizing them.
            if tp in fixed_small:
                continue
            limit = len_small.get(tp)
            if limit is not None and len(obj) < limit:  # type: ignore[arg-type]
                continue
            if tp is int and obj.bit_length() < int_bits:  # type: ignore[attr-defined]
                continue
        kind, size = kinds.get(tp) or size_kind(tp)
        if kind == _VAR:
            size = size(obj)
            if not 0 < size <= _MAX_INLINE:
                size = tp.__basicsize__
        elif size <= ps:
            fixed_small.add(tp)  # from now on its instances take the cheap exit
        first, last = addr >> shift, (addr + size - 1) >> shift
        if last - first < 2 and first not in pages and last not in pages:
            continue  # the common case: one or two set lookups
        nbytes = copied.overlap(addr, max(size, 1))
        if not nbytes or addr in credited:
            continue
        credited.add(addr)
        tkey = type_keys.get(tp)
        if tkey is None:
            tkey = type_keys[tp] = type_key(tp)
        agg.add(tkey, module_key(obj, files), nbytes)
    agg.objects_seen = seen
    return agg


# --- enumerating the heap -----------------------------------------------------------------------

_CODE_MEMBERS = ("co_consts", "co_names", "co_filename", "co_name", "co_linetable")


def _code_parts(code: types.CodeType) -> list[object]:
    parts: list[object] = [getattr(code, name) for name in _CODE_MEMBERS]
    for name in ("co_qualname", "co_exceptiontable"):  # 3.11+, stored (not computed) members
        value = getattr(code, name, None)
        if value is not None:
            parts.append(value)
    return parts


def _tracked_objects() -> list[object]:
    """Every object the collector tracks, the permanent (frozen) generation included.

    The collector must be off while the permanent generation is merged back, or a collection
    in between would scan (and write to) the whole frozen heap."""
    frozen = gc.get_freeze_count()
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        if frozen:
            gc.unfreeze()
        try:
            return gc.get_objects()
        finally:
            if frozen:
                gc.freeze()
    finally:
        if was_enabled:
            gc.enable()


_TICK_ROOTS = 1 << 16
_LEAVES = frozenset({str, int, float, bytes, bool, complex, type(None)})


def iter_heap_objects(tick: Callable[[], None] | None = None) -> Iterator[object]:
    """Every tracked object, each followed by the untracked objects reachable from it without
    passing through another tracked one (strings, numbers, code objects, atomic tuples and
    dicts: the collector does not list them). Untracked objects may repeat (a string shared
    by two tuples); ``attribute_objects`` counts each once. One flat loop: this runs for
    millions of objects. ``tick`` is called every ``_TICK_ROOTS`` tracked objects (the worker
    passes its heartbeat, so that a long walk does not look like a stuck worker)."""
    tracked = _tracked_objects()
    tracked.extend(sys.modules.values())  # modules are tracked; cheap insurance all the same
    is_tracked, referents, leaves, code_type = (
        gc.is_tracked,
        gc.get_referents,
        _LEAVES,
        types.CodeType,
    )
    stack: list[object] = []
    for i, root in enumerate(tracked):
        if tick is not None and not i % _TICK_ROOTS:
            tick()
        yield root
        stack.append(root)
        while stack:
            obj = stack.pop()
            tp = type(obj)
            if tp is code_type:
                more = _code_parts(obj)  # type: ignore[arg-type]
            else:
                try:
                    more = referents(obj)
                    if issubclass(tp, dict):  # a str-keyed dict does not report its keys
                        more.extend(dict.keys(cast("dict[object, object]", obj)))
                except RuntimeError:  # resized by an app thread (threads > 1) while read
                    continue
            for ref in more:
                if not is_tracked(ref):
                    yield ref
                    if type(ref) not in leaves:  # leaves refer to nothing: not worth a push
                        stack.append(ref)


# --- zygote lookup ------------------------------------------------------------------------------


def process_title(pid: int) -> str:
    """``/proc/PID/cmdline`` as one line (setproctitle writes the title there)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            raw = f.read()
    except (FileNotFoundError, ProcessLookupError) as exc:
        raise ProcessGone(f"process {pid} is gone") from exc
    return raw.replace(b"\0", b" ").decode("utf-8", "replace").strip()


def parent_pid(pid: int) -> int:
    """Field 4 of ``/proc/PID/stat`` (read after the last ``)``: the name may hold spaces)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except (FileNotFoundError, ProcessLookupError) as exc:
        raise ProcessGone(f"process {pid} is gone") from exc
    return int(stat.rpartition(b")")[2].split()[1])


def title_generation(title: str, role: str) -> int | None:
    """The ``gen N`` of a ``corral zygote``/``corral worker`` title, else None."""
    pattern = _ZYGOTE_TITLE if role == "zygote" else _WORKER_TITLE
    match = pattern.match(title)
    return int(match.group(1)) if match else None


def find_zygote(master_pid: int, generation: int) -> int | None:
    """The pid of the master's zygote for ``generation``, or None when there is none."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        pid = int(entry)
        with contextlib.suppress(ProcessGone, ValueError, IndexError, PermissionError):
            if parent_pid(pid) != master_pid:
                continue
            if title_generation(process_title(pid), "zygote") == generation:
                return pid
    return None


def prefork_ranges(pid: int) -> tuple[list[AddressRange], str]:
    """The worker's pre-fork ranges: its zygote's, else its own (see the module docstring)."""
    with contextlib.suppress(ProcessGone, ValueError, IndexError):
        generation = title_generation(process_title(pid), "worker")
        if generation is not None:
            zygote = find_zygote(parent_pid(pid), generation)
            if zygote is not None:
                return anonymous_ranges(zygote), f"zygote {zygote}"
    return anonymous_ranges(pid), "self (zygote not found: post-fork mappings count too)"


# --- the whole run ------------------------------------------------------------------------------


def run_attribution(
    ranges: Sequence[AddressRange] | None = None,
    top: int = REPORT_TOP,
    tick: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """Snapshot this process's copied pages of ``ranges`` (default: ``prefork_ranges``), then
    attribute them to this interpreter's objects. Returns the report as a JSON-ready dict."""
    pid = os.getpid()
    t0 = time.monotonic()
    if ranges is None:
        ranges, source = prefork_ranges(pid)
    else:
        source = "given"
    copied = read_copied_pages(pid, ranges)  # before anything touches the heap
    t1 = time.monotonic()
    agg = attribute_objects(iter_heap_objects(tick), copied, file_modules())
    t2 = time.monotonic()
    return {
        "pid": pid,
        "python": sys.version.split()[0],
        "ranges_from": source,
        "prefork_bytes": sum(r.end - r.start for r in ranges),
        "copied_pages": len(copied.pages),
        "copied_bytes": copied.bytes,
        "attributed_bytes": agg.bytes_attributed,
        "objects_seen": agg.objects_seen,
        "objects_on_copied_pages": agg.objects_on_copied,
        "snapshot_s": round(t1 - t0, 4),
        "walk_s": round(t2 - t1, 4),
        "types": Aggregate.top(agg.by_type, top),
        "modules": Aggregate.top(agg.by_module, top),
    }


def write_report(report: dict[str, Any], path: Path) -> None:
    """Write ``report`` to ``path`` atomically (temporary file in the same directory, rename)."""
    import json
    import tempfile

    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(report, f)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def on_request(tick: Callable[[], None] | None = None) -> None:
    """SIGUSR2 in a worker (called from the loop, not the handler): attribute and report.
    ``tick`` (the worker's heartbeat) is called now and then during the walk.

    Never raises: a failure is logged, and reported in the file so that the CLI need not time
    out."""
    pid = os.getpid()
    try:
        report = run_attribution(tick=tick)
    except Exception as exc:
        log.exception("copy-on-write attribution failed")
        report = {"pid": pid, "error": f"{type(exc).__name__}: {exc}"}
    try:
        write_report(report, report_path(pid))
    except OSError:
        log.exception("could not write the copy-on-write report")
