"""The ASGI worker's pure parts: interface detection, scopes, the handshake test, lifespan modes."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from corral.asgi.detect import AsgiApp, choose_interface, is_asgi
from corral.asgi.lifespan import Lifespan, LifespanFailed
from corral.asgi.scope import (
    decode_path,
    http_scope,
    subprotocols,
    wants_websocket,
    websocket_scope,
)
from corral.choices import Interface
from corral.choices import Lifespan as Mode
from corral.http import Request


def request(
    method: bytes = b"GET",
    path: bytes = b"/",
    query: bytes = b"",
    version: str = "1.1",
    headers: list[tuple[bytes, bytes]] | None = None,
) -> Request:
    return Request(
        method=method,
        target=path + (b"?" + query if query else b""),
        path=path,
        query=query,
        http_version=version,
        headers=headers or [],
        host=b"example.test",
        keep_alive=True,
        content_length=None,
        chunked=False,
        expect_continue=False,
    )


async def asgi3(scope: Any, receive: Any, send: Any) -> None:
    return None


class Asgi3Object:
    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        return None


class Asgi2:
    def __init__(self, scope: Any) -> None:
        self.scope = scope

    async def __call__(self, receive: Any, send: Any) -> None:
        await send({"type": "seen", "scope": self.scope})


def wsgi(environ: Any, start_response: Any) -> list[bytes]:
    return [b""]


def test_auto_sees_asgi3_functions_and_objects_and_leaves_wsgi_alone() -> None:
    assert is_asgi(asgi3) and is_asgi(Asgi3Object()) and is_asgi(Asgi2)
    assert not is_asgi(wsgi)
    for app in (asgi3, Asgi3Object()):
        chosen = choose_interface(app, Interface.AUTO)
        assert isinstance(chosen, AsgiApp) and chosen.app is app and not chosen.wrapped
    assert choose_interface(wsgi, Interface.AUTO) is wsgi


def test_an_asgi2_class_is_wrapped_into_asgi3() -> None:
    chosen = choose_interface(Asgi2, Interface.AUTO)
    assert isinstance(chosen, AsgiApp) and chosen.wrapped
    sent: list[Any] = []

    async def receive() -> Any:
        return {}

    async def send(message: Any) -> None:
        sent.append(message)

    asyncio.run(chosen({"type": "http"}, receive, send))  # type: ignore[arg-type]
    assert sent == [{"type": "seen", "scope": {"type": "http"}}]


def test_the_interface_setting_overrides_detection() -> None:
    assert choose_interface(asgi3, Interface.WSGI) is asgi3
    forced = choose_interface(wsgi, Interface.ASGI)  # a plain callable is taken as ASGI 2
    assert isinstance(forced, AsgiApp) and forced.wrapped


@pytest.mark.parametrize(
    ("raw", "text"),
    [
        (b"/plain", "/plain"),
        (b"/a%20b", "/a b"),
        (b"/caf%C3%A9", "/caf\u00e9"),
        (b"/bad%FF", "/bad\udcff"),  # not UTF-8: a surrogate, never an error
        (b"/%2F", "//"),
    ],
)
def test_decode_path(raw: bytes, text: str) -> None:
    assert decode_path(raw) == text


def test_http_scope_has_the_spec_fields_and_copies_state() -> None:
    state = {"db": object()}
    req = request(b"POST", b"/caf%C3%A9", b"q=1", "1.0", [(b"x-a", b"1"), (b"x-a", b"2")])
    scope = http_scope(req, ("10.0.0.1", 5555), ("10.0.0.2", 80), "http", "/api", state)
    assert scope["type"] == "http"
    assert scope["asgi"] == {"version": "3.0", "spec_version": "2.4"}
    assert scope["http_version"] == "1.0" and scope["method"] == "POST"
    assert scope["path"] == "/caf\u00e9" and scope["raw_path"] == b"/caf%C3%A9"
    assert scope["query_string"] == b"q=1" and scope["root_path"] == "/api"
    assert scope["headers"] == [(b"x-a", b"1"), (b"x-a", b"2")]
    assert scope["client"] == ("10.0.0.1", 5555) and scope["server"] == ("10.0.0.2", 80)
    assert scope["state"] == state and scope["state"] is not state
    assert "state" not in http_scope(req, None, None, "http", "", None)


def test_websocket_scope() -> None:
    req = request(
        headers=[
            (b"sec-websocket-protocol", b"chat, superchat"),
            (b"sec-websocket-protocol", b" x"),
        ]
    )
    protos = subprotocols(req)
    assert protos == ["chat", "superchat", "x"]
    scope = websocket_scope(req, None, ("h", None), "https", "", {}, protos)
    assert scope["type"] == "websocket" and scope["scheme"] == "wss" and "method" not in scope
    assert scope["subprotocols"] == protos and "websocket.http.response" in scope["extensions"]
    assert websocket_scope(req, None, None, "http", "", None, [])["scheme"] == "ws"


HANDSHAKE = [
    (b"upgrade", b"WebSocket"),
    (b"connection", b"keep-alive, Upgrade"),
    (b"sec-websocket-key", b"k"),
]


def test_wants_websocket_needs_get_11_upgrade_connection_and_key() -> None:
    assert wants_websocket(request(headers=HANDSHAKE))
    assert not wants_websocket(request(b"POST", headers=HANDSHAKE))
    assert not wants_websocket(request(version="1.0", headers=HANDSHAKE))
    for i in range(3):  # any one missing: plain HTTP
        assert not wants_websocket(request(headers=HANDSHAKE[:i] + HANDSHAKE[i + 1 :]))


def lifespan_app(answer: str | None, fail_shutdown: bool = False) -> Any:
    events: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        assert scope["type"] == "lifespan"
        message = await receive()
        events.append(message["type"])
        if answer is None:
            raise RuntimeError("no lifespan here")
        scope["state"]["ready"] = True
        await send({"type": answer, "message": "boom"})
        message = await receive()
        events.append(message["type"])
        kind = "lifespan.shutdown.failed" if fail_shutdown else "lifespan.shutdown.complete"
        await send({"type": kind})

    app.events = events  # type: ignore[attr-defined]
    return app


def run_lifespan(app: Any, mode: Mode) -> Lifespan:
    async def go() -> Lifespan:
        lifespan = Lifespan(app, mode)
        await lifespan.startup(2.0)
        await lifespan.shutdown(2.0)
        return lifespan

    return asyncio.run(go())


@pytest.mark.parametrize("mode", [Mode.AUTO, Mode.ON])
def test_lifespan_startup_and_shutdown_fill_state(mode: Mode) -> None:
    app = lifespan_app("lifespan.startup.complete")
    lifespan = run_lifespan(app, mode)
    assert lifespan.supported and lifespan.state == {"ready": True}
    assert app.events == ["lifespan.startup", "lifespan.shutdown"]


def test_lifespan_auto_serves_an_app_without_lifespan_and_on_refuses_it() -> None:
    lifespan = run_lifespan(lifespan_app(None), Mode.AUTO)
    assert not lifespan.supported
    with pytest.raises(LifespanFailed, match="does not support lifespan"):
        run_lifespan(lifespan_app(None), Mode.ON)


def test_lifespan_startup_failed_is_a_boot_failure_in_auto_too() -> None:
    with pytest.raises(LifespanFailed, match="startup failed: boom"):
        run_lifespan(lifespan_app("lifespan.startup.failed"), Mode.AUTO)


def test_lifespan_off_never_calls_the_app() -> None:
    app = lifespan_app("lifespan.startup.complete")
    lifespan = run_lifespan(app, Mode.OFF)
    assert not lifespan.supported and app.events == []


def test_lifespan_startup_that_hangs_is_bounded() -> None:
    async def hang(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await asyncio.sleep(30)

    async def go() -> None:
        await Lifespan(hang, Mode.AUTO).startup(0.05)

    with pytest.raises(LifespanFailed, match="took over"):
        asyncio.run(go())
