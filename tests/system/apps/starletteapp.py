"""A plain Starlette app: routes, a streamed response, a form, and a WebSocket."""

from __future__ import annotations

from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket


async def home(request: Request) -> JSONResponse:
    return JSONResponse({"framework": "starlette", "query": dict(request.query_params)})


async def form(request: Request) -> JSONResponse:
    data = await request.form()
    return JSONResponse({k: str(v) for k, v in data.items()})


async def stream(request: Request) -> StreamingResponse:
    async def chunks() -> AsyncIterator[str]:
        for i in range(50):
            yield f"{i},"

    return StreamingResponse(chunks(), media_type="text/plain")


async def echo(websocket: WebSocket) -> None:
    await websocket.accept(subprotocol=None)
    async for message in websocket.iter_bytes():
        await websocket.send_bytes(message[::-1])


async def teapot(request: Request) -> PlainTextResponse:
    return PlainTextResponse("short and stout", status_code=418)


app = Starlette(
    routes=[
        Route("/", home),
        Route("/form", form, methods=["POST"]),
        Route("/stream", stream),
        Route("/teapot", teapot),
        WebSocketRoute("/ws", echo),
    ]
)
