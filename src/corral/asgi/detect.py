"""Which interface an app speaks, decided once in the zygote after the import.

``auto`` (the default) calls an app ASGI when it is a coroutine function, or an object whose
``__call__`` is one (FastAPI, Starlette, Django's ``ASGIHandler``, Litestar, Quart); a class
whose instances have an async ``__call__`` is an ASGI 2 "double callable" and is wrapped into
ASGI 3. Anything else is WSGI. ``--interface asgi`` forces ASGI: a plain callable is then taken
as ASGI 2 (``app(scope)`` returns the coroutine callable), as uvicorn does.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from corral.choices import Interface, WorkerClass

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGI3 = Callable[[Scope, Receive, Send], Awaitable[None]]


class AsgiApp:
    """The zygote's marker for an app to be served by the ASGI worker (``app`` is ASGI 3)."""

    __slots__ = ("app", "wrapped")

    def __init__(self, app: ASGI3, wrapped: bool = False) -> None:
        self.app = app
        self.wrapped = wrapped  # an ASGI 2 app behind a wrapper

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        return self.app(scope, receive, send)


def _async_call(obj: Any) -> bool:
    if inspect.iscoroutinefunction(obj):
        return True
    call = getattr(obj, "__call__", None)  # noqa: B004 - the bound method is what is called
    return call is not None and inspect.iscoroutinefunction(call)


def is_asgi(app: Any) -> bool:
    """Whether ``auto`` would serve ``app`` as ASGI (3, or 2 as a class)."""
    if inspect.isclass(app):
        return inspect.iscoroutinefunction(getattr(app, "__call__", None))  # noqa: B004
    return _async_call(app)


def asgi2_to_3(app: Callable[[Scope], Any]) -> ASGI3:
    """An ASGI 2 double callable (``app(scope)`` then ``await instance(receive, send)``)."""

    async def asgi3(scope: Scope, receive: Receive, send: Send) -> None:
        instance = app(scope)
        await instance(receive, send)

    return asgi3


def choose_interface(app: Any, interface: Interface) -> Any:
    """``app`` as loaded, or an ``AsgiApp`` when it is to be served as ASGI."""
    if interface is Interface.WSGI:
        return app
    if interface is Interface.AUTO and not is_asgi(app):
        return app
    if inspect.isclass(app) or not _async_call(app):
        return AsgiApp(asgi2_to_3(app), wrapped=True)
    return AsgiApp(app)


def interface_for(interface: Interface, worker_class: WorkerClass) -> Interface:
    """gunicorn's ``-k asgi`` or ``-k uvicorn.workers.UvicornWorker`` says the app is ASGI."""
    if interface is Interface.AUTO and worker_class is WorkerClass.ASGI:
        return Interface.ASGI
    return interface
