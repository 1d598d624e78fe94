"""The ASGI section of the settings table: interface detection, the event loop, lifespan and
WebSockets (docs/asgi.md)."""

from __future__ import annotations

from typing import Any

from corral.choices import EventLoop, Interface, Lifespan
from corral.settings_core import ConfigError, Setting, _non_negative


def _positive(v: Any) -> None:
    if v < 1:
        raise ConfigError("must be at least 1")


S = Setting
SECTION = "asgi"
ROWS: tuple[Setting, ...] = (
    S(
        "interface",
        Interface,
        Interface.AUTO,
        "How the app is called: auto detects ASGI (a coroutine function, or an object whose "
        "__call__ is one; an ASGI 2 class is wrapped) and calls anything else as WSGI.",
        section=SECTION,
    ),
    S(
        "loop",
        EventLoop,
        EventLoop.AUTO,
        "The ASGI worker's event loop: auto takes uvloop when it is installed (uvicorn's --loop).",
        section=SECTION,
        aliases=("--asgi-loop", "asgi_loop"),
    ),
    S(
        "lifespan",
        Lifespan,
        Lifespan.AUTO,
        "ASGI lifespan in each worker after fork (never in the zygote): auto runs it and goes "
        "on without it if the app does not support it; on makes a failed startup a boot "
        "failure; off never sends it (uvicorn's --lifespan).",
        section=SECTION,
        aliases=("--asgi-lifespan", "asgi_lifespan"),
    ),
    S(
        "ws_max_message_bytes",
        int,
        16 * 1024 * 1024,
        "Largest WebSocket message accepted; a bigger one closes the connection with 1009 "
        "(uvicorn's --ws-max-size, 16 MiB).",
        validator=_positive,
        section=SECTION,
        aliases=(
            "--ws-max-size",
            "ws_max_size",
            "--websocket-max-message-size",
            "websocket_max_message_size",
        ),
    ),
    S(
        "ws_ping_interval_s",
        float,
        20.0,
        "Send a WebSocket ping this often on an open connection (0 = never; uvicorn's 20 s).",
        validator=_non_negative,
        section=SECTION,
        aliases=("--ws-ping-interval", "ws_ping_interval"),
    ),
    S(
        "ws_ping_timeout_s",
        float,
        20.0,
        "Close a WebSocket whose peer has not answered a ping within this long (uvicorn's 20 s).",
        validator=_non_negative,
        section=SECTION,
        aliases=("--ws-ping-timeout", "ws_ping_timeout"),
    ),
)
