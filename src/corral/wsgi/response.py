"""``start_response``, ``write`` and ``wsgi.file_wrapper`` (PEP 3333), without I/O.

Theory of operation: :class:`StartResponse` is the callable handed to the app. It validates
and records the status and headers (native ``str``, latin-1 encodable, PEP 3333 "Unicode
issues") and converts them once to bytes for the HTTP core; it never sends anything itself.
The worker decides when the head goes out (PEP 3333: not before the first non-empty body
chunk, or ``write()``), and sets :attr:`StartResponse.headers_sent` when it does, which is what
the ``exc_info`` rules depend on. Invalid arguments raise ``TypeError``/``ValueError`` from
inside the app's call, so they reach the worker like any other app error (answered 500).

:class:`FileWrapper` is ``wsgi.file_wrapper``: iterating it yields blocks, and the worker
recognises it to serve a real file (one with a working ``fileno()``) with ``os.sendfile``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from operator import is_
from types import TracebackType
from typing import IO, Any

from corral.http.writer import FrozenHeaders

ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None] | tuple[None, None, None]
WriteCallable = Callable[[bytes], None]


def _no_write(data: bytes) -> None:
    raise RuntimeError("write() called before the worker attached an output")


class StartResponse:
    """The ``start_response`` callable for one request."""

    __slots__ = (
        "content_length",
        "headers",
        "headers_sent",
        "reason",
        "status",
        "status_code",
        "write",
    )

    def __init__(self, write: WriteCallable = _no_write) -> None:
        self.write = write  # what start_response returns (PEP 3333 write())
        self.status: str | None = None
        self.status_code = 0
        self.reason = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.content_length: int | None = None  # the app's own Content-Length, if any
        self.headers_sent = False  # set by the worker once the head left

    def __call__(
        self,
        status: str,
        headers: list[tuple[str, str]],
        exc_info: ExcInfo | None = None,
        /,
    ) -> WriteCallable:
        if exc_info is not None and exc_info[1] is not None:
            try:
                if self.headers_sent:
                    # PEP 3333: too late to change the status; re-raise to abort the response.
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None  # break the frame <-> traceback cycle
        elif self.status is not None:
            raise AssertionError("start_response() called twice without exc_info")
        code, reason = parse_status(status)
        encoded, content_length = encode_headers(headers)
        self.status, self.status_code, self.reason = status, code, reason
        self.headers, self.content_length = encoded, content_length
        return self.write

    @property
    def started(self) -> bool:
        """start_response() has been called."""
        return self.status is not None


_STATUS_CACHE: dict[str, tuple[int, bytes]] = {}
_NAME_CACHE: dict[str, tuple[bytes, bool]] = {}  # name -> (latin-1 bytes, is Content-Length)
_CACHE_MAX = 256  # apps use few distinct statuses and header names; bound it anyway


def parse_status(status: object) -> tuple[int, bytes]:
    """Validate a WSGI status string like ``"200 OK"``; return (code, reason bytes)."""
    if type(status) is str:
        cached = _STATUS_CACHE.get(status)
        if cached is not None:
            return cached
    parsed = _parse_status(status)
    if len(_STATUS_CACHE) < _CACHE_MAX:
        _STATUS_CACHE[status] = parsed  # type: ignore[index]
    return parsed


def _parse_status(status: object) -> tuple[int, bytes]:
    if type(status) is not str:
        raise TypeError(f"status must be str, not {type(status).__name__}")
    if len(status) < 4 or status[3] != " " or not status[:3].isdigit():
        raise ValueError(f"status must look like '200 OK', got {status!r}")
    code = int(status[:3])
    if code < 100:
        raise ValueError(f"status code out of range: {status!r}")
    reason = status[4:].encode("latin-1")
    if any((b < 0x20 and b != 0x09) or b == 0x7F for b in reason):
        raise ValueError(f"control character in status reason: {status!r}")
    return code, reason


# The last header list encoded: apps answer most requests with the same (name, value) tuples
# (constants in the app's code, or module-level), so a list holding the very same tuple
# objects is encoded the same way (tuples and str are immutable: same objects, same checks).
# One entry, replaced whole (safe with app threads).
_LAST: tuple[tuple[object, ...], FrozenHeaders, int | None] = ((), FrozenHeaders([]), None)


def encode_headers(headers: object) -> tuple[list[tuple[bytes, bytes]], int | None]:
    """Type-check and latin-1 encode the app's headers; return them and its Content-Length.

    The encoded list is a ``FrozenHeaders`` (read-only, shared by every response with the
    same header tuples)."""
    global _LAST
    if type(headers) is not list:
        raise TypeError(f"headers must be a list, not {type(headers).__name__}")
    last = _LAST
    if len(headers) == len(last[0]) and all(map(is_, headers, last[0])):
        return last[1], last[2]
    encoded, content_length = _encode_headers(headers)
    frozen = FrozenHeaders(encoded)
    _LAST = (tuple(headers), frozen, content_length)
    return frozen, content_length


def _encode_headers(headers: list[Any]) -> tuple[list[tuple[bytes, bytes]], int | None]:
    out: list[tuple[bytes, bytes]] = []
    content_length: int | None = None
    for item in headers:
        if type(item) is not tuple or len(item) != 2:
            raise TypeError(f"each header must be a (name, value) tuple, got {item!r}")
        name, value = item
        if type(name) is not str or type(value) is not str:
            raise TypeError(f"header name and value must be str, got {item!r}")
        # Hop-by-hop fields (PEP 3333 forbids them) are left to the HTTP core, which drops
        # them and frames the body itself; CR/LF/NUL and token checks happen there too.
        bname, is_length = _NAME_CACHE.get(name) or _encode_name(name)
        if is_length:
            content_length = _parse_length(value)
        out.append((bname, value.encode("latin-1")))
    return out, content_length


def _encode_name(name: str) -> tuple[bytes, bool]:
    bname = name.encode("latin-1")
    entry = (bname, bname.lower() == b"content-length")
    if len(_NAME_CACHE) < _CACHE_MAX:
        _NAME_CACHE[name] = entry
    return entry


def _parse_length(value: str) -> int:
    text = value.strip()
    if not text.isdigit() or not text.isascii():
        raise ValueError(f"invalid Content-Length from the app: {value!r}")
    return int(text)


class FileWrapper:
    """``wsgi.file_wrapper``: a file-like object served in blocks (or by ``os.sendfile``)."""

    __slots__ = ("blksize", "filelike")

    def __init__(self, filelike: IO[bytes] | Any, blksize: int = 65536) -> None:
        self.filelike = filelike
        self.blksize = blksize

    def __iter__(self) -> Iterator[bytes]:
        read = self.filelike.read
        while True:
            block = read(self.blksize)
            if not block:
                return
            yield block

    def fileno(self) -> int | None:
        """The wrapped file's descriptor when it has a working one, else None."""
        try:
            fd = self.filelike.fileno()
        except (AttributeError, OSError, ValueError):
            return None
        return fd if isinstance(fd, int) and fd >= 0 else None

    def close(self) -> None:
        close = getattr(self.filelike, "close", None)
        if close is not None:
            close()
