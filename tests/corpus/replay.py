"""Replay a corpus case through a sans-IO ``Connection`` as a tiny server would.

The emulated application reads the whole request body, then answers ``200`` with a short
body; ``Expect: 100-continue`` gets its interim response first. This is the same behaviour
the corpus expectations assume for a real server (see README.md).
"""

from __future__ import annotations

from dataclasses import dataclass

from corral.http import (
    CLOSED,
    NEED_DATA,
    PAUSED,
    Data,
    Limits,
    ProtocolError,
    Request,
)
from tests.corpus.parsers import connection


@dataclass(frozen=True, slots=True)
class Outcome:
    status: int | None  # the error status sent, None if every request was answered
    requests: int  # requests answered by the app
    body_bytes: int  # request body bytes the app read
    close: bool  # the server closed (or would close) the connection
    output: bytes  # everything the server wrote


class _Server:
    def __init__(self, limits: Limits, native_head: bool | None) -> None:
        self.conn = connection(limits, native_head)
        self.out = bytearray()
        self.requests = 0
        self.body_bytes = 0
        self.status: int | None = None

    def pump(self) -> bool:
        """Process events until more data is needed (True) or the connection ends (False)."""
        conn = self.conn
        while True:
            try:
                event = conn.next_event()
            except ProtocolError as exc:
                self.out += conn.error_response(exc)
                self.status = exc.status
                return False
            if isinstance(event, Request):
                self.out += conn.send_continue()
            elif isinstance(event, Data):
                self.body_bytes += len(event.data)
            elif event is PAUSED:
                if not self._respond():
                    return False
            elif event is NEED_DATA:
                return True
            elif event is CLOSED:
                return False

    def _respond(self) -> bool:
        conn = self.conn
        self.out += conn.send_response(
            200, [(b"Content-Type", b"text/plain"), (b"Content-Length", b"3")]
        )
        self.out += conn.send_data(b"ok\n")
        self.out += conn.send_eom()
        self.requests += 1
        return conn.start_next_cycle()


def replay(
    chunks: list[bytes], eof: bool, limits: Limits | None = None, native_head: bool | None = None
) -> Outcome:
    """Feed ``chunks`` one at a time (then EOF if ``eof``) and report what a client sees;
    ``native_head`` names the head parser (tests.corpus.parsers), None: the default one."""
    server = _Server(limits or Limits(), native_head)
    alive = True
    for chunk in chunks:
        server.conn.receive_data(chunk)
        alive = server.pump()
        if not alive:
            break
    if alive and eof:
        server.conn.receive_data(b"")
        alive = server.pump()
    return Outcome(server.status, server.requests, server.body_bytes, not alive, bytes(server.out))
