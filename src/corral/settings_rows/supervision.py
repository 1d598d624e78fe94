"""The supervision section of the settings table (``corral.config`` joins the sections)."""

from __future__ import annotations

from corral.settings_core import Setting, _non_negative, _positive

S = Setting
ROWS: tuple[Setting, ...] = (
    S(
        "timeout_s",
        float,
        30.0,
        "A worker whose heartbeat or current request is older than this "
        "gets its stack dumped (SIGABRT) and is replaced (gunicorn --timeout 30).",
        validator=_positive,
        section="supervision",
        aliases=("-t", "--timeout", "timeout"),
    ),
    S(
        "graceful_timeout_s",
        float,
        30.0,
        "Seconds a stopping worker may take to finish "
        "in-flight requests before it is killed (gunicorn 30).",
        validator=_positive,
        section="supervision",
        aliases=("--graceful-timeout", "graceful_timeout"),
    ),
    S(
        "boot_timeout_s",
        float,
        60.0,
        "Seconds a new generation (import + workers ready) may take before it counts as failed.",
        validator=_positive,
        section="supervision",
    ),
    S(
        "max_requests",
        int,
        0,
        "Replace a worker after this many requests (0 = never).",
        validator=_non_negative,
        section="supervision",
    ),
    S(
        "max_requests_jitter",
        int,
        0,
        "Add up to this many requests at random to max_requests "
        "per worker so workers do not restart together.",
        validator=_non_negative,
        section="supervision",
    ),
    S(
        "min_worker_lifetime_s",
        float,
        5.0,
        "A worker is not recycled (memory, max-requests) before it has lived this long.",
        validator=_non_negative,
        section="supervision",
    ),
)
