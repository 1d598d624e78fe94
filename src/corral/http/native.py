"""The optional native (C) request-head parser, and the choice between it and the Python one.

Theory of operation: ``_nativehead`` (``_nativehead.c``, built with the package when a C
compiler is there, like the scoreboard's ``_fastslot``) does in one C call what
``headfields.PythonHead`` does with httptools and ``bytes.split``: llhttp's verdict on the head
(a fresh parser each time; an unknown method retried as ``GET``), then the field lines split the
same way. It links a vendored llhttp (``vendor/llhttp``, the same version httptools ships)
rather than httptools' own: httptools' parser module exports no C API and is loaded privately
(``RTLD_LOCAL``), so using its llhttp would mean opening another package's private ``.so`` by
path and trusting its ABI. The price is two llhttp copies that must stay the same version; the
agreement tests (tests/unit/test_native_head.py: the corpus, the property and fuzz tests through
both parsers) catch a drift, and ``llhttp_version`` names the vendored one.

Selection (the ``http_parser`` setting): ``auto`` takes the native parser when it was built and
otherwise, silently, the Python one; ``native`` without the extension is a start-up error
(``check_choice``); ``python`` always takes the reference.
"""

from __future__ import annotations

from typing import Final

from corral.choices import HttpParser
from corral.http.headfields import SPECIAL, Fields, HeadParser, PythonHead, malformed

try:
    import corral.http._nativehead as _nativehead  # type: ignore[import-not-found, unused-ignore]
except ImportError:  # no C compiler when corral was installed: the Python parser serves
    _nativehead = None
else:
    _nativehead.set_special(SPECIAL)

AVAILABLE: Final = _nativehead is not None
NOT_BUILT: Final = (
    "http_parser = native, but corral.http._nativehead was not built "
    "(reinstall corral with a C compiler, or use --http-parser auto|python)"
)


class NativeHead:
    """``_nativehead.split``: stateless (a fresh llhttp per head), so one serves everyone."""

    __slots__ = ()

    def fields(self, head: bytes, method: bytes) -> Fields:
        assert _nativehead is not None
        result: Fields | str = _nativehead.split(head, len(method))
        if type(result) is str:
            raise malformed(result)
        return result  # type: ignore[return-value]

    def body_follows(self) -> None:
        pass  # nothing kept between heads


_NATIVE: Final = NativeHead()


def check_choice(choice: HttpParser) -> None:
    """The settings row's validator: ``native`` needs the extension."""
    if HttpParser(choice) is HttpParser.NATIVE and not AVAILABLE:
        raise ValueError(NOT_BUILT)


def use_native(choice: HttpParser) -> bool:
    """Whether ``choice`` means the native parser here (``check_choice`` ran already)."""
    choice = HttpParser(choice)
    return choice is HttpParser.NATIVE or (choice is HttpParser.AUTO and AVAILABLE)


def head_parser(native: bool) -> HeadParser:
    """A head parser for one connection."""
    if native:
        if not AVAILABLE:
            raise RuntimeError(NOT_BUILT)
        return _NATIVE
    return PythonHead()


def llhttp_version() -> tuple[int, int, int] | None:
    """The vendored llhttp's version, None when the extension is absent."""
    if _nativehead is None:
        return None
    major, minor, patch = _nativehead.llhttp_version()
    return int(major), int(minor), int(patch)
