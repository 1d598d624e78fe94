"""What one worker process needs to know, frozen at fork time.

No field has a default: the values come from the settings table through
``corral.master.worker_settings.worker_settings`` (production) and tests build theirs from the
same function over ``config.defaults()``, so a test runs the values production runs. The
precedents of the defaults are in the table (corral.config) and in ``master/worker_settings``.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass

from corral.choices import AccessLogFormat, EventLoop, Lifespan
from corral.http import Limits
from corral.http.forwarded import TrustedProxies
from corral.http.proxyproto import ProxyMode


@dataclass(frozen=True)
class WorkerSettings:
    """Settings of one worker. Units are in the names."""

    limits: Limits
    # Whole time allowed to receive one request head, from its first byte (slowloris bound).
    header_timeout_s: float
    # Idle time allowed between requests on a kept-alive connection (and before the first).
    keepalive_timeout_s: float
    # Small bodies read in the loop: the whole body within this time. Large/streamed bodies
    # read by wsgi.input: each wait for more bytes at most this long.
    body_timeout_s: float
    # A slow reader may stall a response write at most this long between progress.
    send_timeout_s: float
    # SIGTERM: finish in-flight requests for at most this long, then close everything.
    graceful_timeout_s: float
    # Bodies up to this size are read in the loop before the app runs; larger ones stream.
    buffer_body_max: int
    # Lingering close after an error response: drain the peer this long / this many bytes.
    linger_timeout_s: float
    linger_max_bytes: int
    # 1: the app runs in the loop's thread (fastest for CPU-bound apps). >1: a pool of app
    # threads for I/O-bound apps (gunicorn's gthread idea); see corral.worker.threaded.
    threads: int
    access_log: AccessLogFormat  # logger "corral.access"
    access_log_format: str  # gunicorn atoms; when set, used instead of access_log's format
    root_path: str  # SCRIPT_NAME; stripped from PATH_INFO when it is a prefix
    url_scheme: str
    max_connections: int  # open client connections; accepting pauses at the limit
    # Bytes held for responses clients have not read yet (distinct buffers); past it the
    # worker pauses accepting and starting new requests until they drain. 0: no limit.
    max_pending_bytes: int
    accept_batch: int  # connections accepted per listener wake-up
    track_writes: bool  # count pre-fork pages written per request path (opt-in)
    malloc_stats_s: float  # pymalloc reports every this many seconds (0 = off; mallocstats.py)
    # (soft limit bytes, metric, hard limit bytes): the worker's own check, see memguard.py
    memory_limits: tuple[int, str, int]
    health_path: str  # answered by the loop itself (corral.worker.health); "" = off
    drain_idle_s: float  # while draining, how long an idle kept-alive connection is kept
    boot_timeout_s: float  # the ASGI worker's lifespan startup must answer within this
    loop: EventLoop  # the ASGI worker's event loop (corral.worker.aio)
    lifespan: Lifespan  # ASGI lifespan protocol (corral.asgi.lifespan)
    ws_max_message_bytes: int  # larger WebSocket messages close with 1009
    ws_ping_interval_s: float  # 0 = no pings
    ws_ping_timeout_s: float
    # Whose X-Forwarded-*/Forwarded headers count (corral.http.forwarded, worker/proxied.py).
    forwarded_allow: TrustedProxies
    proxy_protocol: ProxyMode  # the PROXY header expected from proxy_allow peers
    proxy_allow: TrustedProxies
    tls: ssl.SSLContext | None  # this generation's context (corral.tlsconfig); None = plain
    native_head: bool  # the request-head parser: the C one, else Python (corral.http.native)

    def __post_init__(self) -> None:
        if not 1 <= self.threads <= 256:
            raise ValueError(f"threads must be between 1 and 256, got {self.threads}")
        if self.access_log not in tuple(AccessLogFormat):
            raise ValueError(f"access_log must be one of {', '.join(AccessLogFormat)}")
        if self.root_path and (not self.root_path.startswith("/") or self.root_path[-1] == "/"):
            raise ValueError("root_path must start with '/' and not end with '/'")
        if self.max_connections < 1 or self.accept_batch < 1:
            raise ValueError("max_connections and accept_batch must be >= 1")
        if self.max_pending_bytes < 0:
            raise ValueError("max_pending_bytes must be >= 0")
