"""What a load run is asked to do, checked once, and turned into bytes ready to send.

``LoadConfig`` is the user's request in plain values (URLs as text, durations in seconds).
``prepare()`` validates it and produces a ``Plan``: resolved socket addresses and every
request pre-encoded as one ``bytes`` object, so the hot loop never formats anything. All
problems surface here as ``BenchConfigError`` with a one-line message the CLI can print.

Defaults follow the tools users already know: ``-c 10`` and keep-alive on (wrk), a 30 s
per-request timeout (ab's ``-s``), ``-d 10s`` when neither ``-n`` nor ``-d`` is given (wrk).
"""

from __future__ import annotations

import re
import socket
from dataclasses import dataclass, field
from urllib.parse import SplitResult, urlsplit

DEFAULT_CONNECTIONS = 10  # wrk's -c default
DEFAULT_DURATION_S = 10.0  # wrk's -d default
DEFAULT_TIMEOUT_S = 30.0  # ab's -s default
DEFAULT_MAX_TIME_S = 600.0  # hard stop for -n runs; ab's -t would be unbounded
DEADLINE_GRACE_S = 5.0  # a -d run may overrun by this much while results are gathered
USER_AGENT = "corral-bench/0.1"

_TOKEN = re.compile(rb"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")  # RFC 9110 §5.6.2 token
_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m|h)?\s*$")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


class BenchConfigError(ValueError):
    """The run cannot start: bad URL, option or file. The message is one line for the user."""


@dataclass(frozen=True, slots=True)
class LoadConfig:
    """One load run. ``requests`` and ``duration_s`` both bound it; whichever comes first."""

    urls: tuple[str, ...]
    connections: int = DEFAULT_CONNECTIONS
    requests: int | None = None  # total over all processes (ab -n)
    duration_s: float | None = None  # wall time (wrk -d); DEFAULT_DURATION_S if both are None
    rate: float | None = None  # open model: arrivals per second over all processes (wrk2 -R)
    procs: int = 1
    method: str = "GET"
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes | None = None
    content_type: str = "text/plain"  # ab's -T default
    keepalive: bool = True
    timeout_s: float = DEFAULT_TIMEOUT_S
    max_time_s: float | None = None  # hard deadline; derived from duration_s when None

    def effective_duration_s(self) -> float | None:
        """The wall-clock bound: as given, or wrk's 10 s when no bound was given at all."""
        if self.duration_s is None and self.requests is None:
            return DEFAULT_DURATION_S
        return self.duration_s

    def hard_deadline_s(self) -> float:
        """Seconds after start by which every part of the run has stopped, whatever happens."""
        duration = self.effective_duration_s()
        derived = DEFAULT_MAX_TIME_S if duration is None else duration + DEADLINE_GRACE_S
        return derived if self.max_time_s is None else min(derived, self.max_time_s)


@dataclass(frozen=True, slots=True)
class Target:
    """One URL, ready to use: where to connect and the exact request bytes to send."""

    url: str
    family: int
    sockaddr: tuple[str, int] | tuple[str, int, int, int]
    host_header: str
    request: bytes


@dataclass(frozen=True, slots=True)
class Plan:
    """A validated config plus its targets. Every target shares one origin (host and port)."""

    config: LoadConfig
    targets: tuple[Target, ...]
    is_head: bool = field(default=False)


def parse_duration(text: str) -> float:
    """Seconds from "5", "5s", "250ms", "1m", "1.5h". Raises BenchConfigError otherwise."""
    match = _DURATION.match(text)
    if match is None:
        raise BenchConfigError(f"bad duration {text!r}: use e.g. 5, 5s, 250ms, 1m or 1h")
    seconds = float(match.group(1)) * _UNIT_S[match.group(2)]
    if seconds <= 0:
        raise BenchConfigError(f"duration {text!r} must be greater than zero")
    return seconds


def parse_header(text: str) -> tuple[str, str]:
    """``"Name: value"`` -> ``("Name", "value")``, refusing anything that would break framing."""
    name, sep, value = text.partition(":")
    name, value = name.strip(), value.strip()
    if not sep or not _TOKEN.match(name.encode("latin-1", "replace")):
        raise BenchConfigError(f"bad header {text!r}: use 'Name: value'")
    if any(ch in value for ch in "\r\n\0"):
        raise BenchConfigError(f"header {name!r} value contains CR, LF or NUL")
    return name, value


def validate(config: LoadConfig) -> None:
    """Raise BenchConfigError for the first thing wrong with ``config``."""
    if not config.urls:
        raise BenchConfigError("no URL given")
    _check_positive_int("connections (-c)", config.connections)
    _check_positive_int("procs (--procs)", config.procs)
    if config.requests is not None:
        _check_positive_int("requests (-n)", config.requests)
    for label, value in (
        ("duration (-d)", config.duration_s),
        ("rate (--rate)", config.rate),
        ("timeout (--timeout)", config.timeout_s),
        ("max time (--max-time)", config.max_time_s),
    ):
        if value is not None and not value > 0:
            raise BenchConfigError(f"{label} must be greater than zero, got {value}")
    _check_procs(config)
    if not _TOKEN.match(config.method.encode("latin-1", "replace")):
        raise BenchConfigError(f"bad method {config.method!r}")


def _check_positive_int(label: str, value: int) -> None:
    if value < 1:
        raise BenchConfigError(f"{label} must be at least 1, got {value}")


def _check_procs(config: LoadConfig) -> None:
    if config.procs > config.connections:
        raise BenchConfigError(
            f"--procs {config.procs} needs at least as many connections (-c {config.connections})"
        )
    if config.requests is not None and config.requests < config.procs:
        raise BenchConfigError(f"-n {config.requests} is fewer than --procs {config.procs}")


def prepare(config: LoadConfig) -> Plan:
    """Validate, resolve and pre-encode. The only place that touches DNS."""
    validate(config)
    parts = [_split_url(url) for url in config.urls]
    origins = {(p.hostname, p.port) for p in parts}
    if len(origins) > 1:
        raise BenchConfigError("all URLs must share one host and port (one origin per run)")
    family, sockaddr = _resolve(parts[0])
    targets = tuple(
        _target(url, p, family, sockaddr, config) for url, p in zip(config.urls, parts, strict=True)
    )
    return Plan(config=config, targets=targets, is_head=config.method.upper() == "HEAD")


def _split_url(url: str) -> SplitResult:
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise BenchConfigError(f"bad URL {url!r}: {exc}") from exc
    if parts.scheme != "http":
        raise BenchConfigError(f"bad URL {url!r}: only http:// is supported")
    if not parts.hostname:
        raise BenchConfigError(f"bad URL {url!r}: no host")
    if port == 0:
        raise BenchConfigError(f"bad URL {url!r}: port 0")
    return parts


def _resolve(parts: SplitResult) -> tuple[int, tuple[str, int] | tuple[str, int, int, int]]:
    host, port = parts.hostname or "", parts.port or 80
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise BenchConfigError(f"cannot resolve {host!r}: {exc}") from exc
    family, _, _, _, sockaddr = infos[0]
    return int(family), sockaddr  # type: ignore[return-value]


def _target(
    url: str,
    parts: SplitResult,
    family: int,
    sockaddr: tuple[str, int] | tuple[str, int, int, int],
    config: LoadConfig,
) -> Target:
    host = parts.hostname or ""
    if ":" in host:  # IPv6 literal keeps its brackets in Host (RFC 9110 §7.2)
        host = f"[{host}]"
    host_header = host if parts.port in (None, 80) else f"{host}:{parts.port}"
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    request = encode_request(config, host_header, path)
    return Target(url, family, sockaddr, host_header, request)


def encode_request(config: LoadConfig, host_header: str, path: str) -> bytes:
    """The whole request as sent: head, then body when there is one."""
    headers: dict[str, tuple[str, str]] = {}
    defaults = [("Host", host_header), ("User-Agent", USER_AGENT), ("Accept", "*/*")]
    if not config.keepalive:
        defaults.append(("Connection", "close"))
    if config.body is not None:
        defaults.append(("Content-Type", config.content_type))
    for name, value in [*defaults, *config.headers]:
        headers[name.lower()] = (name, value)  # a user's header replaces ours of that name
    body = config.body or b""
    if config.body is not None:  # framing is ours alone: never trust a user Content-Length
        headers["content-length"] = ("Content-Length", str(len(body)))
    lines = [f"{config.method} {path} HTTP/1.1", *(f"{n}: {v}" for n, v in headers.values())]
    try:
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    except UnicodeEncodeError as exc:
        raise BenchConfigError(f"request head is not latin-1: {exc}") from exc
    return head + body
