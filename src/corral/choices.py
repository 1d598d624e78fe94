"""Enums for the settings whose value is one of a few words.

Theory of operation: a setting row in ``corral.config`` whose ``type`` is a ``StrEnum`` accepts
exactly the enum's values (CLI, environment, TOML, Python config file), is typed as the enum in
the generated ``corral._settings_gen.Settings``, and is documented with its choices. The enums are
``StrEnum`` so a value compares equal to its word and prints as it. Enums that belong to one
subsystem live there (``memory.gcpolicy.GcPreset``, ``memory.recycle.Metric``); the ones here
have no better home. This module imports nothing from corral, so anything may import it.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["AccessLogFormat", "EventLoop", "Interface", "Lifespan", "LogLevel", "WorkerClass"]


class AccessLogFormat(StrEnum):
    """Access log line format (logger ``corral.access``)."""

    OFF = "off"
    COMMON = "common"  # NCSA common log format
    COMBINED = "combined"  # common + referer and user agent (nginx's and Apache's default)


class LogLevel(StrEnum):
    """Level of corral's own log."""

    DEBUG = "debug"
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"
    CRITICAL = "critical"  # gunicorn's highest level


class WorkerClass(StrEnum):
    """gunicorn's ``-k``/``worker_class`` words that corral's one worker covers.

    ``sync`` and ``gthread`` both mean corral's worker: its epoll loop holds idle and slow
    connections, and ``threads`` > 1 runs the app on a thread pool (what gthread is for).
    ``asgi`` (gunicorn's ``-k asgi``, ``uvicorn.workers.UvicornWorker``) means the app is ASGI:
    corral's ASGI worker, with ``interface`` forced to asgi.
    """

    SYNC = "sync"
    GTHREAD = "gthread"
    ASGI = "asgi"  # gunicorn's asgi worker, uvicorn's UvicornWorker: corral's ASGI worker


class Interface(StrEnum):
    """How the app is called: detected from the app itself (``auto``), or forced."""

    AUTO = "auto"  # ASGI when the callable (or its __call__) is a coroutine function
    WSGI = "wsgi"  # PEP 3333
    ASGI = "asgi"  # ASGI 3 (an ASGI 2 double callable is wrapped)


class EventLoop(StrEnum):
    """The ASGI worker's event loop (uvicorn's ``--loop``)."""

    AUTO = "auto"  # uvloop when it is installed, else asyncio's
    ASYNCIO = "asyncio"
    UVLOOP = "uvloop"


class Lifespan(StrEnum):
    """The ASGI lifespan protocol (uvicorn's ``--lifespan``)."""

    AUTO = "auto"  # run it; an app that does not support it is served without it
    ON = "on"  # run it; an app that fails or refuses it does not boot
    OFF = "off"  # never send lifespan events


class HttpParser(StrEnum):
    """Which request-head parser the workers use (corral.http.native)."""

    AUTO = "auto"  # the native (C) one when it was built, else the pure-Python one
    NATIVE = "native"  # the C one; an error at start-up when it was not built
    PYTHON = "python"  # httptools' llhttp and the field split in Python (the reference)
