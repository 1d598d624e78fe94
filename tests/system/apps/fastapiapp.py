"""A FastAPI service as users write them: lifespan state, pydantic validation, dependency
injection, form and file upload, streaming and file responses, background tasks, WebSockets.
A ``BALLAST_MB`` environment variable preloads a heap of that size (the memory benchmark)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import (
    BackgroundTasks,
    Depends,
    FastAPI,
    File,
    Form,
    Request,
    UploadFile,
    WebSocket,
    WebSocketDisconnect,
)
from fastapi.responses import FileResponse, PlainTextResponse, Response, StreamingResponse
from pydantic import BaseModel

# A preloaded heap: built at import, in the zygote, shared by every worker.
BALLAST = [
    {"id": i, "name": f"item-{i}", "tags": [i, str(i)]}
    for i in range(int(os.environ.get("BALLAST_MB", "0")) * 2800)
]


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
    yield {"pid": os.getpid(), "db": "connected"}
    path = os.environ.get("FASTAPI_SHUTDOWN_FILE")
    if path:
        with open(path, "a") as f:
            f.write(f"{os.getpid()}\n")


app = FastAPI(lifespan=lifespan)


class Item(BaseModel):
    name: str
    price: float
    tags: list[str] = []


def pagination(offset: int = 0, limit: int = 10) -> dict[str, int]:
    return {"offset": offset, "limit": limit}


@app.get("/")
async def root() -> dict[str, str]:
    return {"hello": "world"}


@app.post("/items")
async def create(item: Item) -> dict[str, Any]:
    return {"name": item.name, "price_with_tax": round(item.price * 1.2, 2), "tags": item.tags}


@app.get("/items")
async def items(page: Annotated[dict[str, int], Depends(pagination)]) -> dict[str, Any]:
    start = page["offset"]
    return {"page": page, "ids": [b["id"] for b in BALLAST[start : start + page["limit"]]]}


@app.post("/echo")
async def echo(request: Request) -> Response:
    return Response(await request.body(), media_type="application/octet-stream")


@app.post("/form")
async def form(
    name: Annotated[str, Form()], upload: Annotated[UploadFile, File()]
) -> dict[str, Any]:
    data = await upload.read()
    return {"name": name, "filename": upload.filename, "size": len(data)}


@app.get("/stream")
async def stream(n: int = 100) -> StreamingResponse:
    async def lines() -> AsyncIterator[bytes]:
        for i in range(n):
            yield b"line %d\n" % i

    return StreamingResponse(lines(), media_type="text/plain")


@app.get("/sync-stream")
def sync_stream() -> StreamingResponse:
    def lines() -> Iterator[bytes]:
        yield from (b"s%d\n" % i for i in range(10))

    return StreamingResponse(lines(), media_type="text/plain")


@app.get("/file")
async def file() -> FileResponse:
    return FileResponse(__file__, media_type="text/x-python")


@app.get("/bg")
async def background(tasks: BackgroundTasks, path: str) -> PlainTextResponse:
    def write() -> None:
        with open(path, "w") as f:
            f.write("done by a background task")

    tasks.add_task(write)
    return PlainTextResponse("scheduled")


@app.get("/state")
async def state(request: Request) -> dict[str, Any]:
    return {"lifespan": request.state.pid, "served_by": os.getpid(), "db": request.state.db}


@app.websocket("/ws")
async def ws(websocket: WebSocket) -> None:
    await websocket.accept()
    try:
        while True:
            text = await websocket.receive_text()
            await websocket.send_text(text if text != "pid" else str(os.getpid()))
    except WebSocketDisconnect:
        pass
