"""The ASGI lifespan protocol, run in each worker after fork (never in the zygote).

Theory of operation. ``Lifespan.startup()`` starts the app's lifespan call as a task and waits
for ``lifespan.startup.complete`` (or ``.failed``); the task then waits in ``receive()`` until
``shutdown()`` hands it ``lifespan.shutdown``. The ``state`` dict the app fills during startup
is copied into every request's scope. Why after fork: startup opens connections, pools and
threads, and none of them survive a fork; the zygote only imports the app, so its heap stays
shared and frozen.

Modes (``--lifespan``): ``auto`` treats an app that raises before answering startup as one
that does not speak lifespan (logged at info, served without it, as uvicorn does); ``on`` makes
that, and ``startup.failed``, a boot failure; ``off`` never calls it.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from corral.asgi.detect import ASGI3, Message
from corral.choices import Lifespan as Mode

log = logging.getLogger("corral.error")
SCOPE_VERSION = {"version": "3.0", "spec_version": "2.0"}


class LifespanFailed(Exception):
    """Startup failed (or, with ``--lifespan on``, was not supported): the worker does not boot."""


class Lifespan:
    def __init__(self, app: ASGI3, mode: Mode) -> None:
        self.app, self.mode = app, mode
        self.state: dict[str, Any] = {}
        self.supported = mode is not Mode.OFF
        self._inbox: asyncio.Queue[Message] = asyncio.Queue()
        self._answer: asyncio.Future[Message] | None = None
        self._task: asyncio.Task[None] | None = None
        self._error: BaseException | None = None

    async def startup(self, timeout_s: float) -> None:
        """Run startup; raises ``LifespanFailed`` when the worker must not serve."""
        if self.mode is Mode.OFF:
            return
        loop = asyncio.get_running_loop()
        self._answer = loop.create_future()
        scope = {"type": "lifespan", "asgi": SCOPE_VERSION, "state": self.state}
        self._task = loop.create_task(self._run(scope))
        self._inbox.put_nowait({"type": "lifespan.startup"})
        try:
            answer = await asyncio.wait_for(asyncio.shield(self._answer), timeout_s)
        except TimeoutError:
            raise LifespanFailed(f"lifespan startup took over {timeout_s:g}s") from None
        if answer["type"] == "lifespan.startup.complete":
            return
        if answer["type"] == "lifespan.startup.failed":
            raise LifespanFailed(f"lifespan startup failed: {answer.get('message', '')}")
        # the app returned or raised without answering: no lifespan support
        if self.mode is Mode.ON:
            raise LifespanFailed(f"the app does not support lifespan: {self._error!r}")
        self.supported = False
        log.info("ASGI lifespan not supported by the app (%r); serving without it", self._error)

    async def shutdown(self, timeout_s: float) -> None:
        """Send ``lifespan.shutdown`` and wait for the answer, at most ``timeout_s``."""
        if not self.supported or self._task is None or self._task.done():
            return
        loop = asyncio.get_running_loop()
        self._answer = loop.create_future()
        self._inbox.put_nowait({"type": "lifespan.shutdown"})
        try:
            answer = await asyncio.wait_for(asyncio.shield(self._answer), max(timeout_s, 0.1))
        except TimeoutError:
            log.warning("lifespan shutdown took over %.1fs; going on", timeout_s)
            self._task.cancel()
            return
        if answer["type"] == "lifespan.shutdown.failed":
            log.error("lifespan shutdown failed: %s", answer.get("message", ""))

    async def _run(self, scope: dict[str, Any]) -> None:
        try:
            await self.app(scope, self._receive, self._send)
        except BaseException as exc:
            self._error = exc
            if isinstance(exc, asyncio.CancelledError):
                raise
            if self.supported and self._answer is not None and self._answer.done():
                log.exception("ASGI lifespan raised after startup")
        finally:
            if self._answer is not None and not self._answer.done():
                self._answer.set_result({"type": "lifespan.unsupported"})

    async def _receive(self) -> Message:
        return await self._inbox.get()

    async def _send(self, message: Message) -> None:
        kind = message.get("type")
        if kind not in (
            "lifespan.startup.complete",
            "lifespan.startup.failed",
            "lifespan.shutdown.complete",
            "lifespan.shutdown.failed",
        ):
            raise RuntimeError(f"unexpected lifespan message {kind!r}")
        if self._answer is not None and not self._answer.done():
            self._answer.set_result(message)
