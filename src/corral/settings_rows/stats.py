"""The stats section of the settings table (``corral.config`` joins the sections)."""

from __future__ import annotations

from corral.choices import LogLevel
from corral.settings_core import Setting, _log_format

S = Setting
ROWS: tuple[Setting, ...] = (
    S(
        "stats",
        str,
        "",
        "Serve metrics, JSON and the dashboard on HOST:PORT (off when empty; "
        "loopback unless stats_allow_remote).",
        section="stats",
        metavar="ADDR",
    ),
    S("stats_allow_remote", bool, False, "Allow a non-loopback stats address.", section="stats"),
    S(
        "stats_allowed_hosts",
        list,
        [],
        "Extra Host names the stats server answers (repeatable). It always answers its own "
        "address, and localhost names on loopback; any other Host gets 421, so a "
        "DNS-rebinding page cannot read it.",
        section="stats",
        metavar="NAME",
    ),
    S(
        "log_level",
        LogLevel,
        LogLevel.INFO,
        "Log level: debug, info, warning, error, critical.",
        section="logging",
        aliases=("loglevel",),
    ),
    S(
        "error_log_file",
        str,
        "-",
        "Where corral's own log goes: a file (appended to) or - for stderr.",
        section="logging",
        metavar="FILE",
        aliases=("--error-logfile", "--log-file", "errorlog"),
    ),
    S(
        "access_log_file",
        str,
        "",
        "Write the access log to this file, or - for stdout; empty = with corral's log. Setting "
        "it turns the access log on (combined format unless access_log says otherwise).",
        section="logging",
        metavar="FILE",
        aliases=("--access-logfile", "accesslog"),
    ),
    S(
        "access_log_format",
        str,
        "",
        "Access log line in gunicorn's atoms, e.g. '%(h)s \"%(r)s\" %(s)s %(b)s %(D)s'; empty = "
        "the access_log format. Turns the access log on.",
        section="logging",
        metavar="FORMAT",
        aliases=("--access-logformat",),
        validator=_log_format,
    ),
)
