"""What one worker process needs to know, frozen at fork time.

Defaults follow precedent: gunicorn's 30 s graceful timeout and 1000 worker connections,
gunicorn's 5 s keep-alive (nginx uses 75 s, but a prefork worker's connection slots are
scarcer), nginx's ``client_header_timeout``/``client_body_timeout`` of 60 s shortened to 10 s
and 30 s because a worker process is more expensive than an nginx connection, and nginx's
``lingering_timeout`` (5 s) shortened to 2 s with a 64 KiB cap.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from corral.http import Limits

ACCESS_LOG_FORMATS = ("off", "common", "combined")


@dataclass(frozen=True)
class WorkerSettings:
    """Settings of one worker. Units are in the names."""

    limits: Limits = field(default_factory=Limits)
    # Whole time allowed to receive one request head, from its first byte (slowloris bound).
    header_timeout_s: float = 10.0
    # Idle time allowed between requests on a kept-alive connection (and before the first).
    keepalive_timeout_s: float = 5.0
    # Small bodies read in the loop: the whole body within this time. Large/streamed bodies
    # read by wsgi.input: each wait for more bytes at most this long.
    body_timeout_s: float = 30.0
    # A slow reader may stall a response write at most this long between progress.
    send_timeout_s: float = 30.0
    # SIGTERM: finish in-flight requests for at most this long, then close everything.
    graceful_timeout_s: float = 30.0
    # Bodies up to this size are read in the loop before the app runs; larger ones stream.
    buffer_body_max: int = 65536
    # Lingering close after an error response: drain the peer this long / this many bytes.
    linger_timeout_s: float = 2.0
    linger_max_bytes: int = 65536
    # 1: the app runs in the loop's thread (fastest for CPU-bound apps). >1: a pool of app
    # threads for I/O-bound apps (gunicorn's gthread idea); see corral.worker.threaded.
    threads: int = 1
    access_log: str = "off"  # "off" | "common" | "combined" (logger "corral.access")
    root_path: str = ""  # SCRIPT_NAME; stripped from PATH_INFO when it is a prefix
    url_scheme: str = "http"
    max_connections: int = 1000  # open client connections; accepting pauses at the limit
    # Bytes held for responses clients have not read yet (distinct buffers); past it the
    # worker pauses accepting and starting new requests until they drain. 0: no limit.
    max_pending_bytes: int = 128 * 1024 * 1024
    accept_batch: int = 64  # connections accepted per listener wake-up
    track_writes: bool = False  # count pre-fork pages written per request path (opt-in)

    def __post_init__(self) -> None:
        if not 1 <= self.threads <= 256:
            raise ValueError(f"threads must be between 1 and 256, got {self.threads}")
        if self.access_log not in ACCESS_LOG_FORMATS:
            raise ValueError(f"access_log must be one of {ACCESS_LOG_FORMATS}")
        if self.root_path and (not self.root_path.startswith("/") or self.root_path[-1] == "/"):
            raise ValueError("root_path must start with '/' and not end with '/'")
        if self.max_connections < 1 or self.accept_batch < 1:
            raise ValueError("max_connections and accept_batch must be >= 1")
        if self.max_pending_bytes < 0:
            raise ValueError("max_pending_bytes must be >= 0")
