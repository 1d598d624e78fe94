"""ASGI apps for benchmarks/asgi.py: a raw ASGI JSON hello, and a FastAPI service (pydantic
validation, a WebSocket echo) whose preloaded heap is ``BALLAST_MB`` MB (default 0)."""

from __future__ import annotations

import os
from typing import Any

from fastapi import FastAPI, WebSocket, WebSocketDisconnect
from pydantic import BaseModel

_HELLO = b'{"message":"Hello, world!"}'
_HEADERS = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(_HELLO))]
_START = {"type": "http.response.start", "status": 200, "headers": _HEADERS}
_BODY = {"type": "http.response.body", "body": _HELLO}


async def hello(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            await send({"type": message["type"] + ".complete"})
            if message["type"] == "lifespan.shutdown":
                return
    await send(_START)
    await send(_BODY)


# ~1 MB per 2,800 of these rows on CPython 3.11-3.13 (dicts, strings, lists, ints)
BALLAST = [
    {"id": i, "name": f"item-{i}", "tags": [i, str(i)]}
    for i in range(int(os.environ.get("BALLAST_MB", "0")) * 2800)
]
app = FastAPI()


class Item(BaseModel):
    name: str
    price: float
    quantity: int = 1
    tags: list[str] = []


@app.get("/")
async def root() -> dict[str, Any]:
    return {"message": "Hello, world!", "rows": len(BALLAST)}


@app.post("/items")
async def create(item: Item) -> dict[str, Any]:
    return {"name": item.name, "total": item.price * item.quantity, "tags": item.tags}


@app.websocket("/ws")
async def ws(websocket: WebSocket) -> None:
    await websocket.accept()
    try:
        while True:
            await websocket.send_bytes(await websocket.receive_bytes())
    except WebSocketDisconnect:
        pass
