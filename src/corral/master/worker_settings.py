"""Translate the effective Config into what one worker needs (``WorkerSettings``)."""

from __future__ import annotations

from corral.config import Config
from corral.http import Limits
from corral.worker.settings import WorkerSettings


def worker_settings(cfg: Config) -> WorkerSettings:
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
        graceful_timeout_s=cfg.graceful_timeout_s,
        access_log=cfg.access_log,
        root_path=cfg.root_path.rstrip("/"),
        threads=cfg.threads,
        track_writes=cfg.track_writes,
        max_connections=cfg.worker_connections,
        max_pending_bytes=cfg.max_pending_response_mib * 1024 * 1024,
        accept_batch=1,  # one per wake-up spreads new connections across workers
    )
