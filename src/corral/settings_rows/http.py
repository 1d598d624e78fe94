"""The http section of the settings table (``corral.config`` joins the sections)."""

from __future__ import annotations

from corral.choices import AccessLogFormat, HttpParser
from corral.http.native import check_choice
from corral.settings_core import Setting, _non_negative, _positive

S = Setting
ROWS: tuple[Setting, ...] = (
    S(
        "limit_request_line",
        int,
        8190,
        "Longest request line in bytes (gunicorn/nginx 8190); longer gets 414.",
        validator=_positive,
        section="http",
    ),
    S(
        "limit_request_field_size",
        int,
        8190,
        "Longest header field line in bytes; longer gets 431.",
        validator=_positive,
        section="http",
        aliases=("--limit-request-field_size",),
    ),
    S(
        "limit_request_fields",
        int,
        100,
        "Most header fields in a request (gunicorn 100); more gets 431.",
        validator=_positive,
        section="http",
    ),
    S(
        "limit_header_section",
        int,
        65536,
        "Largest request head in bytes; larger gets 431.",
        validator=_positive,
        section="http",
    ),
    S(
        "max_body_size",
        int,
        100 * 1024 * 1024,
        "Largest request body in bytes; a larger Content-Length gets 413 before the body is read.",
        validator=_non_negative,
        section="http",
    ),
    S(
        "limit_chunk_extension",
        int,
        4096,
        "Most bytes of chunk extensions per chunk.",
        validator=_positive,
        section="http",
    ),
    S(
        "header_timeout_s",
        float,
        10.0,
        "Seconds a client may take to send a request head "
        "(nginx client_header_timeout, shortened).",
        validator=_positive,
        section="http",
    ),
    S(
        "keepalive_timeout_s",
        float,
        5.0,
        "Seconds an idle keep-alive connection stays open (gunicorn 2 s, nginx 75 s).",
        validator=_positive,
        section="http",
        aliases=("--keep-alive", "keepalive"),
    ),
    S(
        "body_timeout_s",
        float,
        30.0,
        "Seconds a client may stall while sending a body.",
        validator=_positive,
        section="http",
    ),
    S(
        "send_timeout_s",
        float,
        30.0,
        "Seconds a slow reader may stall a response write between progress (nginx send_timeout "
        "60 s, shortened: a worker's connection slots are scarcer).",
        validator=_positive,
        section="http",
    ),
    S(
        "max_drain_body_bytes",
        int,
        1024 * 1024,
        "Unread request body bytes a worker reads and discards after the response to keep "
        "the connection alive (nginx discards unread bodies too); a larger rest gets "
        "Connection: close and a lingering close.",
        validator=_non_negative,
        section="http",
    ),
    S(
        "max_pending_response_mib",
        int,
        128,
        "MiB of response bytes a worker may hold for clients that do not read them; past it "
        "the worker stops accepting and starting new requests until they drain (0 = no limit).",
        validator=_non_negative,
        section="http",
    ),
    S(
        "http_parser",
        HttpParser,
        HttpParser.AUTO,
        "Request-head parser: native is llhttp and the field split in C (built with corral "
        "when a C compiler is there), python the same llhttp through httptools; both give the "
        "same verdicts. auto takes native when it was built.",
        validator=check_choice,
        section="http",
    ),
    S(
        "access_log",
        AccessLogFormat,
        AccessLogFormat.OFF,
        "Access log format: off, common or combined.",
        section="http",
    ),
)
