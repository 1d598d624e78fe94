"""FastAPI, Starlette and Django ASGI apps under corral, driven by httpx and websockets
(issue 11 point 5), each served with no interface flag on 2 workers."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from harness import Corral, wait_for, worker_pids

pytestmark = pytest.mark.slow
APPS = Path(__file__).parent / "apps"


def _serve(factory: Any, app: str, **kw: Any) -> Corral:
    return factory(app, "-b", "127.0.0.1:0", "-w", "2", **kw)  # type: ignore[no-any-return]


def test_fastapi_endpoints(corral_factory: Any, tmp_path: Path) -> None:
    c = _serve(corral_factory, "fastapiapp:app")
    with httpx.Client(base_url=c.url, timeout=10) as client:
        assert client.get("/").json() == {"hello": "world"}
        r = client.post("/items", json={"name": "pen", "price": 10, "tags": ["a"]})
        assert r.json() == {"name": "pen", "price_with_tax": 12.0, "tags": ["a"]}
        r = client.post("/items", json={"name": "pen"})  # pydantic refuses it
        assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "price"]
        assert client.get("/items", params={"offset": 3, "limit": 2}).json()["page"] == {
            "offset": 3,
            "limit": 2,
        }
        body = os.urandom(1024 * 1024)
        assert client.post("/echo", content=body).content == body
        r = client.post("/form", data={"name": "n"}, files={"upload": ("f.bin", b"z" * 70_000)})
        assert r.json() == {"name": "n", "filename": "f.bin", "size": 70_000}
        r = client.get("/stream", params={"n": 300})
        assert r.text == "".join(f"line {i}\n" for i in range(300))
        assert client.get("/sync-stream").text == "".join(f"s{i}\n" for i in range(10))
        r = client.get("/file")
        assert r.content == (APPS / "fastapiapp.py").read_bytes()
        assert r.headers["content-type"].startswith("text/x-python")
        flag = tmp_path / "bg.txt"
        assert client.get("/bg", params={"path": str(flag)}).text == "scheduled"
        wait_for(flag.exists, timeout=10)
        state = client.get("/state").json()
        assert state["lifespan"] == state["served_by"] and state["db"] == "connected"
        assert state["served_by"] in worker_pids(c.pid)

    async def talk() -> None:
        async with websockets.connect(f"ws://{c.host}:{c.port}/ws") as ws:
            for text in ("one", "two", "x" * 100_000):
                await ws.send(text)
                assert await ws.recv() == text

    asyncio.run(asyncio.wait_for(talk(), 30))


def test_fastapi_lifespan_shutdown_runs_in_every_worker(
    corral_factory: Any, tmp_path: Path
) -> None:
    done = tmp_path / "down.txt"
    c = _serve(corral_factory, "fastapiapp:app", env={"FASTAPI_SHUTDOWN_FILE": str(done)})
    workers = worker_pids(c.pid)
    c.signal(signal.SIGTERM)
    assert c.wait(30) == 0
    assert sorted(int(p) for p in done.read_text().split()) == sorted(workers)


def test_starlette_app(corral_factory: Any) -> None:
    c = _serve(corral_factory, "starletteapp:app")
    with httpx.Client(base_url=c.url, timeout=10) as client:
        assert client.get("/", params={"q": "é"}).json() == {
            "framework": "starlette",
            "query": {"q": "é"},
        }
        assert client.post("/form", data={"a": "1", "b": "two"}).json() == {"a": "1", "b": "two"}
        assert client.get("/stream").text == "".join(f"{i}," for i in range(50))
        r = client.get("/teapot")
        assert r.status_code == 418 and r.text == "short and stout"
        assert client.get("/missing").status_code == 404

    async def talk() -> None:
        async with websockets.connect(f"ws://{c.host}:{c.port}/ws") as ws:
            await ws.send(b"abc")
            assert await ws.recv() == b"cba"

    asyncio.run(asyncio.wait_for(talk(), 30))


def test_django_asgi_views(corral_factory: Any) -> None:
    """``corral serve djangoasgi`` finds ``application`` itself, as gunicorn does."""
    c = _serve(corral_factory, "djangoasgi")
    with httpx.Client(base_url=c.url, timeout=10) as client:
        r = client.get("/async/")
        assert r.json()["async"] is True and r.json()["pid"] in worker_pids(c.pid)
        assert client.get("/sync/").text == "sync GET secure=False"
        assert client.post("/upload/", content=b"q" * 300_000).json() == {"size": 300_000}
        assert client.get("/nope/").status_code == 404
