"""The high-availability section of the settings table: health checks and the stop a
balancer can follow (docs/fleet.md)."""

from __future__ import annotations

from typing import Any

from corral.settings_core import ConfigError, Setting, _non_negative


def _health_path(v: Any) -> None:
    from corral.worker.health import check_path  # the worker's own check decides

    try:
        check_path(v)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc


S = Setting
ROWS: tuple[Setting, ...] = (
    S(
        "health_path",
        str,
        "",
        "Answer this path on the app's own port in the worker loop, without calling the app: "
        "200 while serving, 503 once stopping (e.g. /healthz; empty = off).",
        validator=_health_path,
        section="high availability",
        metavar="PATH",
    ),
    S(
        "shutdown_delay_s",
        float,
        0.0,
        "On SIGTERM, health checks turn 503 at once but corral keeps serving and accepting "
        "this long (lame duck) before it stops listening, so balancers take the host out "
        "first. HAProxy: inter x fall + inter; Kubernetes: a few seconds (docs/fleet.md).",
        validator=_non_negative,
        section="high availability",
    ),
    S(
        "drain_idle_s",
        float,
        1.0,
        "While draining, an idle keep-alive connection is kept this long for one last request "
        "(answered with Connection: close), then closed after checking nothing arrived. Keep "
        "it above the balancer's idle pool timeout (nginx upstream keepalive_timeout).",
        validator=_non_negative,
        section="high availability",
    ),
)
