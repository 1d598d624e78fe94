"""ASGI apps the ASGI system tests serve: raw ASGI 3, ASGI 2, FastAPI, Starlette, Django.

Each is importable as ``asgiapps:NAME``; the FastAPI and Starlette apps are built only when
asked for (``fastapi_app()`` as a factory), so importing the module costs nothing else."""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any, TypedDict

Scope = dict[str, Any]


async def hello(scope: Scope, receive: Any, send: Any) -> None:
    """Raw ASGI 3: a JSON hello for http, no lifespan support (raises on other types)."""
    if scope["type"] != "http":
        raise RuntimeError("http only")
    body = json.dumps({"hello": "world", "path": scope["path"]}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def scope_echo(scope: Scope, receive: Any, send: Any) -> None:
    """Answers with the scope itself (bytes as latin-1), for the conformance tests."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                scope["state"]["started_in"] = os.getpid()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                path = os.environ.get("ASGI_SHUTDOWN_FILE")
                if path:
                    with open(path, "a") as f:
                        f.write(f"{os.getpid()}\n")
                await send({"type": "lifespan.shutdown.complete"})
                return
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            break
    out = {
        k: (
            v.decode("latin-1")
            if isinstance(v, bytes)
            else [[a.decode("latin-1"), b.decode("latin-1")] for a, b in v]
            if k == "headers"
            else v
        )
        for k, v in scope.items()
        if k != "extensions"
    }
    out["extensions"] = sorted(scope.get("extensions", {}))
    out["body_length"] = sum(len(c) for c in chunks)
    out["pid"] = os.getpid()
    body = json.dumps(out, default=str).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def behaviours(scope: Scope, receive: Any, send: Any) -> None:
    """Paths that misbehave on purpose: /raise, /raise-late, /none, /stream/N, /echo, /slow,
    /disconnect (waits for http.disconnect and writes a file), /block (blocks the loop)."""
    if scope["type"] != "http":
        return
    path = scope["path"]
    start = {"type": "http.response.start", "status": 200, "headers": []}
    if path == "/raise":
        raise RuntimeError("boom before the response")
    if path == "/none":
        return
    if path == "/raise-late":
        await send({**start, "headers": [(b"content-length", b"100")]})
        await send({"type": "http.response.body", "body": b"x" * 10, "more_body": True})
        raise RuntimeError("boom after the response started")
    if path.startswith("/stream/"):
        n = int(path.rsplit("/", 1)[1])
        await send(start)
        for i in range(n):
            await send({"type": "http.response.body", "body": b"%d\n" % i, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
        return
    if path == "/echo":
        await send(start)
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            await send(
                {"type": "http.response.body", "body": message.get("body", b""), "more_body": True}
            )
            if not message.get("more_body"):
                break
        await send({"type": "http.response.body", "body": b""})
        return
    if path == "/slow":
        await asyncio.sleep(float(scope["query_string"] or b"0.5"))
        await send(start)
        await send({"type": "http.response.body", "body": b"slow done"})
        return
    if path == "/disconnect":
        await send({**start, "headers": [(b"content-length", b"1000")]})
        await send({"type": "http.response.body", "body": b"x", "more_body": True})
        message = await receive()
        while message["type"] != "http.disconnect":
            message = await receive()
        with open(os.environ["ASGI_DISCONNECT_FILE"], "w") as f:
            f.write("disconnected")
        return
    if path == "/block":
        import time

        time.sleep(float(scope["query_string"] or b"60"))
    if path == "/pathsend":
        await send({**start, "headers": [(b"content-length", b"%d" % os.path.getsize(__file__))]})
        await send({"type": "http.response.pathsend", "path": __file__})
        return
    await send(start)
    await send({"type": "http.response.body", "body": b"ok"})


class Asgi2:
    """An ASGI 2 double callable."""

    def __init__(self, scope: Scope) -> None:
        self.scope = scope

    async def __call__(self, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"asgi2"})


async def ws_echo(scope: Scope, receive: Any, send: Any) -> None:
    """WebSocket echo (text and bytes); /deny refuses with 403, /http-deny with a body,
    /sub accepts the first offered subprotocol; HTTP requests get a plain answer."""
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"http here"})
        return
    if scope["type"] != "websocket":
        return
    message = await receive()
    assert message["type"] == "websocket.connect"
    if scope["path"] == "/deny":
        await send({"type": "websocket.close"})
        return
    if scope["path"] == "/http-deny":
        await send(
            {
                "type": "websocket.http.response.start",
                "status": 401,
                "headers": [(b"content-type", b"text/plain")],
            }
        )
        await send({"type": "websocket.http.response.body", "body": b"no entry"})
        return
    sub = scope["subprotocols"][0] if scope["subprotocols"] else None
    await send({"type": "websocket.accept", "subprotocol": sub})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            path = os.environ.get("ASGI_WS_CLOSE_FILE")
            if path:
                with open(path, "a") as f:
                    f.write(f"{message['code']}\n")
            return
        if message.get("text") == "close-me":
            await send({"type": "websocket.close", "code": 4000, "reason": "asked"})
            return
        if message.get("text") == "scope":  # what the worker made of the handshake
            host = dict(scope["headers"]).get(b"host", b"").decode("latin-1")
            seen = {"scheme": scope["scheme"], "client": scope["client"], "host": host}
            await send({"type": "websocket.send", "text": json.dumps(seen)})
            continue
        if message.get("text") == "pid":
            await send({"type": "websocket.send", "text": str(os.getpid())})
            continue
        if message.get("text") is not None:
            await send({"type": "websocket.send", "text": message["text"]})
        else:
            await send({"type": "websocket.send", "bytes": message["bytes"]})


async def corpus_app(scope: Scope, receive: Any, send: Any) -> None:
    """The ASGI twin of sysapps.corpus_app: read the whole body, answer 200 with 3 bytes."""
    if scope["type"] != "http":
        return
    while True:
        message = await receive()
        if message["type"] != "http.request" or not message.get("more_body"):
            break
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok\n"})


class HeapItem(TypedDict):
    n: int
    text: str


HEAP: list[HeapItem] = [{"n": i, "text": str(i) * 3} for i in range(300_000)]  # in the zygote
LEAKED: list[bytearray] = []


async def heap(scope: Scope, receive: Any, send: Any) -> None:
    """Reads the whole preloaded heap per request (/), or keeps 256 KiB per request (/leak)."""
    if scope["type"] != "http":
        return
    if scope["path"] == "/leak":
        LEAKED.append(bytearray(256 * 1024))
        body = b"%d" % len(LEAKED)
    else:
        body = b"%d" % sum(len(item["text"]) for item in HEAP)
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})
