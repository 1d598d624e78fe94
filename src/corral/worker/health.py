"""The app-port health check (``--health-path``): a canned answer decided without the app.

Theory of operation. A balancer or a Kubernetes probe asks ``GET /healthz`` on the port it
sends traffic to. The worker loop answers it itself, so the probe says what the balancer needs
to know -- "will this process take my next request?" -- and not whether the app's own route
works: ``200`` while the worker serves, ``503`` from the moment the host is stopping (the
master's lame-duck period, ``--shutdown-delay-s``, or the worker's own drain), so a balancer
takes the host out before its listeners close. The decision is a pure function of the request
path and the draining flag: the WSGI loop (``corral.worker.loop``) wraps the answer in a tiny
WSGI callable; an ASGI loop sends the same status, headers and body itself.

Only the path is compared (the query string is ignored, as a probe may add one); any method
gets the answer, so ``HEAD`` works too (the HTTP core drops the body of a HEAD response).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

HEADERS = [
    ("Content-Type", "text/plain; charset=utf-8"),
    ("Cache-Control", "no-store"),  # a cached "ok" would hide a drain from a probe
]


@dataclass(frozen=True, slots=True)
class Canned:
    """A health answer: status code, reason phrase, headers and body."""

    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes

    @property
    def status_line(self) -> str:
        return f"{self.status} {self.reason}"


SERVING = Canned(200, "OK", HEADERS, b"ok\n")
DRAINING = Canned(503, "Service Unavailable", [*HEADERS, ("Retry-After", "1")], b"draining\n")


def answer(path: bytes, health_path: str, draining: bool) -> Canned | None:
    """The canned answer for a request to ``path``, or None when it is for the app.

    ``health_path`` empty turns the check off; ``draining`` is true from the moment the
    worker (or its master) is stopping."""
    if not health_path or path != health_path.encode("ascii"):
        return None
    return DRAINING if draining else SERVING


def wsgi_app(canned: Canned) -> Callable[[dict[str, Any], Any], Iterable[bytes]]:
    """A WSGI callable that sends ``canned``: the WSGI loop runs it instead of the app."""

    def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        headers = [*canned.headers, ("Content-Length", str(len(canned.body)))]
        start_response(canned.status_line, headers)
        return [canned.body]

    return app


def check_path(value: str) -> None:
    """A health path is empty (off) or an origin-form path: ``/`` then visible ASCII."""
    if value and (
        not value.startswith("/") or not value.isascii() or any(c in value for c in " ?#\t")
    ):
        raise ValueError("must be empty or a path starting with '/' (e.g. /healthz)")
