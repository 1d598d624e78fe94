"""Translate the effective Config into what one worker needs (``WorkerSettings``).

The few worker values that are not settings are fixed here, with their precedent, so that
production and the tests (which call ``worker_settings(config.defaults())``) agree.
"""

from __future__ import annotations

import ssl

from corral.choices import AccessLogFormat
from corral.config import Config
from corral.http import Limits, native
from corral.http.forwarded import TrustedProxies
from corral.worker.settings import WorkerSettings

# Bodies up to 64 KiB are read in the loop before the app runs (nginx's client_body_buffer_size
# is 8-16 KiB; a worker has fewer connections to buffer for); larger ones stream.
BUFFER_BODY_MAX = 65536
# nginx's lingering_timeout (5 s) shortened to 2 s, with a 64 KiB cap on what is drained.
LINGER_TIMEOUT_S = 2.0
LINGER_MAX_BYTES = 65536
# One connection per wake-up spreads new connections across workers (a worker that accepts a
# batch would starve its siblings of the thundering-herd wake-up).
ACCEPT_BATCH = 1


def _access_log(cfg: Config) -> AccessLogFormat:
    """A log file or a format turns the access log on, as gunicorn's --access-logfile does (its
    default format is the combined one)."""
    if cfg.access_log is AccessLogFormat.OFF and (cfg.access_log_file or cfg.access_log_format):
        return AccessLogFormat.COMBINED
    return cfg.access_log


def worker_settings(cfg: Config, tls: ssl.SSLContext | None = None) -> WorkerSettings:
    """``tls``: the generation's context, built by its zygote (corral.tlsconfig)."""
    limits = Limits(
        request_line=cfg.limit_request_line,
        header_field=cfg.limit_request_field_size,
        header_fields=cfg.limit_request_fields,
        header_section=cfg.limit_header_section,
        max_body_size=cfg.max_body_size,
        chunk_extension=cfg.limit_chunk_extension,
        drain_unread_body=cfg.max_drain_body_bytes,
    )
    return WorkerSettings(
        limits=limits,
        header_timeout_s=cfg.header_timeout_s,
        keepalive_timeout_s=cfg.keepalive_timeout_s,
        body_timeout_s=cfg.body_timeout_s,
        send_timeout_s=cfg.send_timeout_s,
        graceful_timeout_s=cfg.graceful_timeout_s,
        buffer_body_max=BUFFER_BODY_MAX,
        linger_timeout_s=LINGER_TIMEOUT_S,
        linger_max_bytes=LINGER_MAX_BYTES,
        threads=cfg.threads,
        access_log=_access_log(cfg),
        access_log_format=cfg.access_log_format,
        root_path=cfg.root_path.rstrip("/"),
        url_scheme="http",
        max_connections=cfg.worker_connections,
        accept_batch=ACCEPT_BATCH,
        track_writes=cfg.track_writes,
        malloc_stats_s=cfg.malloc_stats_s,
        memory_limits=memory_limits(cfg),
        max_pending_bytes=cfg.max_pending_response_mib * 1024 * 1024,
        health_path=cfg.health_path,
        drain_idle_s=cfg.drain_idle_s,
        boot_timeout_s=cfg.boot_timeout_s,
        loop=cfg.loop,
        lifespan=cfg.lifespan,
        ws_max_message_bytes=cfg.ws_max_message_bytes,
        ws_ping_interval_s=cfg.ws_ping_interval_s,
        ws_ping_timeout_s=cfg.ws_ping_timeout_s,
        forwarded_allow=TrustedProxies(cfg.forwarded_allow_ips),
        proxy_protocol=cfg.proxy_protocol,
        proxy_allow=TrustedProxies(cfg.proxy_allow_ips),
        tls=tls,
        native_head=native.use_native(cfg.http_parser),
    )


def memory_limits(cfg: Config) -> tuple[int, str, int]:
    """(soft limit bytes, metric, hard limit bytes) for ``corral.worker.memguard``."""
    mib = 1024 * 1024
    soft, hard = cfg.max_worker_memory_mib, cfg.worker_memory_hard_limit_mib
    return int(soft * mib), cfg.worker_memory_metric, int(hard * mib)
