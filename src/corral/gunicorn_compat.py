"""gunicorn's settings, and what corral makes of the ones its table has no row for.

Theory of operation: ``GUNICORN_SETTINGS`` is a snapshot of gunicorn's ``KNOWN_SETTINGS``
(name, command-line flags, argparse action; gunicorn 27.0.1, hooks listed in ``HOOKS``). A
gunicorn name corral supports is a row of the settings table (same name, or an alias there);
every other one has an entry in ``NOT_SUPPORTED`` saying why, and whether using it is an error
(``REFUSE``: ignoring it would change what the server does) or a warning (``IGNORE``: corral
does the job another way). Tests check that every gunicorn name is covered, and
docs/migrating.md is generated from this module and the table, so neither can drift.

This module is data plus ``run_config_file`` (executing a gunicorn-style ``.py`` config) and
imports nothing from corral, so ``corral.config`` can use it.
"""

from __future__ import annotations

import runpy
import types
from enum import StrEnum
from typing import Any

GUNICORN_VERSION = "27.0.1"

# (name, flags, action, default) for every gunicorn setting except the server hooks; action is
# "value", "append" or "store_true"; default is None where it is computed or not a literal.
GUNICORN_SETTINGS: tuple[tuple[str, tuple[str, ...], str, Any], ...] = (
    ("config", ("-c", "--config"), "value", "./gunicorn.conf.py"),
    ("wsgi_app", (), "value", None),
    ("bind", ("-b", "--bind"), "append", ["127.0.0.1:8000"]),
    ("backlog", ("--backlog",), "value", 2048),
    ("workers", ("-w", "--workers"), "value", 1),
    ("worker_class", ("-k", "--worker-class"), "value", "sync"),
    ("threads", ("--threads",), "value", 1),
    ("worker_connections", ("--worker-connections",), "value", 1000),
    ("max_requests", ("--max-requests",), "value", 0),
    ("max_requests_jitter", ("--max-requests-jitter",), "value", 0),
    ("timeout", ("-t", "--timeout"), "value", 30),
    ("graceful_timeout", ("--graceful-timeout",), "value", 30),
    ("keepalive", ("--keep-alive",), "value", 2),
    ("limit_request_line", ("--limit-request-line",), "value", 4094),
    ("limit_request_fields", ("--limit-request-fields",), "value", 100),
    ("limit_request_field_size", ("--limit-request-field_size",), "value", 8190),
    ("reload", ("--reload",), "store_true", False),
    ("reload_engine", ("--reload-engine",), "value", "auto"),
    ("reload_extra_files", ("--reload-extra-file",), "append", []),
    ("spew", ("--spew",), "store_true", False),
    ("check_config", ("--check-config",), "store_true", False),
    ("print_config", ("--print-config",), "store_true", False),
    ("preload_app", ("--preload",), "store_true", False),
    ("sendfile", ("--no-sendfile",), "store_true", None),
    ("reuse_port", ("--reuse-port",), "store_true", False),
    ("chdir", ("--chdir",), "value", None),
    ("daemon", ("-D", "--daemon"), "store_true", False),
    ("raw_env", ("-e", "--env"), "append", []),
    ("pidfile", ("-p", "--pid"), "value", None),
    ("worker_tmp_dir", ("--worker-tmp-dir",), "value", None),
    ("user", ("-u", "--user"), "value", None),
    ("group", ("-g", "--group"), "value", None),
    ("umask", ("-m", "--umask"), "value", 0),
    ("initgroups", ("--initgroups",), "store_true", False),
    ("tmp_upload_dir", (), "value", None),
    ("secure_scheme_headers", (), "value", None),
    ("forwarded_allow_ips", ("--forwarded-allow-ips",), "value", "127.0.0.1,::1"),
    ("accesslog", ("--access-logfile",), "value", None),
    (
        "disable_redirect_access_to_syslog",
        ("--disable-redirect-access-to-syslog",),
        "store_true",
        False,
    ),
    (
        "access_log_format",
        ("--access-logformat",),
        "value",
        '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s"',
    ),
    ("errorlog", ("--error-logfile", "--log-file"), "value", "-"),
    ("loglevel", ("--log-level",), "value", "info"),
    ("capture_output", ("--capture-output",), "store_true", False),
    ("logger_class", ("--logger-class",), "value", "gunicorn.glogging.Logger"),
    ("logconfig", ("--log-config",), "value", None),
    ("logconfig_dict", (), "value", {}),
    ("logconfig_json", ("--log-config-json",), "value", None),
    ("syslog_addr", ("--log-syslog-to",), "value", "udp://localhost:514"),
    ("syslog", ("--log-syslog",), "store_true", False),
    ("syslog_prefix", ("--log-syslog-prefix",), "value", None),
    ("syslog_facility", ("--log-syslog-facility",), "value", "user"),
    ("enable_stdio_inheritance", ("-R", "--enable-stdio-inheritance"), "store_true", False),
    ("statsd_host", ("--statsd-host",), "value", None),
    ("dogstatsd_tags", ("--dogstatsd-tags",), "value", ""),
    ("statsd_prefix", ("--statsd-prefix",), "value", ""),
    ("enable_backlog_metric", ("--enable-backlog-metric",), "store_true", False),
    ("proc_name", ("-n", "--name"), "value", None),
    ("default_proc_name", (), "value", "gunicorn"),
    ("pythonpath", ("--pythonpath",), "value", None),
    ("paste", ("--paste", "--paster"), "value", None),
    ("proxy_protocol", ("--proxy-protocol",), "value", "off"),
    ("proxy_allow_ips", ("--proxy-allow-from",), "value", "127.0.0.1,::1"),
    ("protocol", ("--protocol",), "value", "http"),
    ("uwsgi_allow_ips", ("--uwsgi-allow-from",), "value", "127.0.0.1,::1"),
    ("keyfile", ("--keyfile",), "value", None),
    ("certfile", ("--certfile",), "value", None),
    ("ssl_version", ("--ssl-version",), "value", None),
    ("cert_reqs", ("--cert-reqs",), "value", None),
    ("ca_certs", ("--ca-certs",), "value", None),
    ("suppress_ragged_eofs", ("--suppress-ragged-eofs",), "store_true", True),
    ("do_handshake_on_connect", ("--do-handshake-on-connect",), "store_true", False),
    ("ciphers", ("--ciphers",), "value", None),
    ("http_protocols", ("--http-protocols",), "value", "h1"),
    ("http2_cleartext", ("--http2-cleartext",), "value", "off"),
    ("http2_max_concurrent_streams", ("--http2-max-concurrent-streams",), "value", 100),
    ("http2_initial_window_size", ("--http2-initial-window-size",), "value", 65535),
    ("http2_max_frame_size", ("--http2-max-frame-size",), "value", 16384),
    ("http2_max_header_list_size", ("--http2-max-header-list-size",), "value", 65536),
    ("raw_paste_global_conf", ("--paste-global",), "append", []),
    ("permit_obsolete_folding", ("--permit-obsolete-folding",), "store_true", False),
    ("strip_header_spaces", ("--strip-header-spaces",), "store_true", False),
    (
        "permit_unconventional_http_method",
        ("--permit-unconventional-http-method",),
        "store_true",
        False,
    ),
    (
        "permit_unconventional_http_version",
        ("--permit-unconventional-http-version",),
        "store_true",
        False,
    ),
    ("casefold_http_method", ("--casefold-http-method",), "store_true", False),
    ("forwarder_headers", ("--forwarder-headers",), "value", "SCRIPT_NAME,PATH_INFO"),
    ("header_map", ("--header-map",), "value", "drop"),
    ("asgi_loop", ("--asgi-loop",), "value", "auto"),
    ("asgi_lifespan", ("--asgi-lifespan",), "value", "auto"),
    ("asgi_disconnect_grace_period", ("--asgi-disconnect-grace-period",), "value", 3),
    ("websocket_max_message_size", ("--websocket-max-message-size",), "value", 16777216),
    ("http_parser", ("--http-parser",), "value", "auto"),
    ("root_path", ("--root-path",), "value", ""),
    ("dirty_apps", ("--dirty-app",), "append", []),
    ("dirty_workers", ("--dirty-workers",), "value", 0),
    ("dirty_timeout", ("--dirty-timeout",), "value", 300),
    ("dirty_threads", ("--dirty-threads",), "value", 1),
    ("dirty_graceful_timeout", ("--dirty-graceful-timeout",), "value", 30),
    ("control_socket", ("--control-socket",), "value", None),
    ("control_socket_mode", ("--control-socket-mode",), "value", 384),
    ("control_socket_disable", ("--no-control-socket",), "store_true", False),
)

# Settings whose gunicorn default is read from an environment variable (Heroku's buildpack sets
# FORWARDED_ALLOW_IPS="*"): the variable is corral's default too, below a config file.
DEFAULT_ENV = {"forwarded_allow_ips": "FORWARDED_ALLOW_IPS"}

# Every server hook of gunicorn's (gunicorn 27.0.1).
GUNICORN_HOOKS = (
    "on_starting",
    "on_reload",
    "when_ready",
    "pre_fork",
    "post_fork",
    "post_worker_init",
    "worker_int",
    "worker_abort",
    "pre_exec",
    "pre_request",
    "post_request",
    "child_exit",
    "worker_exit",
    "nworkers_changed",
    "on_exit",
    "ssl_context",
    "on_dirty_starting",
    "dirty_post_fork",
    "dirty_worker_init",
    "dirty_worker_exit",
)

# The hooks corral calls, with gunicorn's arguments (corral.hooks).
HOOKS: dict[str, tuple[str, ...]] = {
    "on_starting": ("server",),
    "when_ready": ("server",),
    "pre_fork": ("server", "worker"),
    "post_fork": ("server", "worker"),
    "post_worker_init": ("worker",),
    "worker_int": ("worker",),
    "pre_request": ("worker", "req"),
    "post_request": ("worker", "req", "environ", "resp"),
    "child_exit": ("server", "worker"),
    "worker_exit": ("server", "worker"),
    "nworkers_changed": ("server", "new_value", "old_value"),
    "on_exit": ("server",),
}


class Kind(StrEnum):
    REFUSE = "refuse"  # a value other than gunicorn's default is an error
    IGNORE = "ignore"  # a value other than gunicorn's default logs a warning


_SCHEME = (
    "corral reads X-Forwarded-Proto (https), X-Forwarded-Ssl (on), X-Forwarded-Protocol (ssl) "
    "and Forwarded from forwarded_allow_ips; the names are not configurable"
)
_FORWARDER = "corral drops header names with '_' from every peer; use root_path for SCRIPT_NAME"
_STRICT = "corral parses HTTP/1.1 strictly (RFC 9112); this leniency is a request-smuggling vector"
_LOGGING = "corral logs through the logging module to stderr (--error-logfile) and corral.access"
_HTTP2 = "corral speaks HTTP/1.1; terminate HTTP/2 at the proxy"
_DIRTY = "gunicorn's dirty arbiters have no corral equivalent"
_UNUSED_HOOK = "corral has no such moment (no re-exec, no dirty arbiters)"

# Every gunicorn name without a row in the settings table (or a hook corral calls).
NOT_SUPPORTED: dict[str, tuple[Kind, str]] = {
    "reload_engine": (Kind.IGNORE, "corral's --reload polls modification times once a second"),
    "spew": (Kind.REFUSE, "no line tracing; use py-spy or sys.settrace in the app"),
    "check_config": (
        Kind.IGNORE,
        "corral serve --check-config checks the settings, imports the app in a throwaway "
        "process and exits",
    ),
    "print_config": (Kind.IGNORE, "corral serve --print-config prints the settings as TOML"),
    "sendfile": (Kind.IGNORE, "corral always uses sendfile(2) for wsgi.file_wrapper responses"),
    "reuse_port": (Kind.IGNORE, "the master owns one listener that every worker shares"),
    "daemon": (Kind.REFUSE, "corral stays in the foreground: run it under systemd or a container"),
    "worker_tmp_dir": (Kind.IGNORE, "heartbeats go to a shared-memory scoreboard, not temp files"),
    "initgroups": (Kind.REFUSE, "not yet: privilege drop (user, group) is the master's part"),
    "tmp_upload_dir": (Kind.IGNORE, "unused by gunicorn itself; request bodies stream"),
    "secure_scheme_headers": (Kind.REFUSE, _SCHEME),
    "disable_redirect_access_to_syslog": (Kind.IGNORE, "no syslog"),
    "capture_output": (Kind.IGNORE, "workers inherit the master's stdout and stderr"),
    "logger_class": (Kind.REFUSE, _LOGGING),
    "logconfig": (Kind.IGNORE, _LOGGING),
    "logconfig_dict": (Kind.IGNORE, _LOGGING),
    "logconfig_json": (Kind.IGNORE, _LOGGING),
    "syslog_addr": (Kind.IGNORE, "no syslog: " + _LOGGING),
    "syslog": (Kind.IGNORE, "no syslog: " + _LOGGING),
    "syslog_prefix": (Kind.IGNORE, "no syslog"),
    "syslog_facility": (Kind.IGNORE, "no syslog"),
    "enable_stdio_inheritance": (Kind.IGNORE, "workers inherit stdio; output is unbuffered by -u"),
    "statsd_host": (Kind.IGNORE, "no StatsD: scrape --stats HOST:PORT/metrics (Prometheus)"),
    "dogstatsd_tags": (Kind.IGNORE, "no StatsD: scrape /metrics"),
    "statsd_prefix": (Kind.IGNORE, "no StatsD: scrape /metrics"),
    "enable_backlog_metric": (Kind.IGNORE, "no StatsD: scrape /metrics"),
    "proc_name": (Kind.IGNORE, "process titles are 'corral master', 'corral worker N [app]'"),
    "default_proc_name": (Kind.IGNORE, "process titles are fixed"),
    "paste": (Kind.REFUSE, "no PasteDeploy: name the WSGI callable (module:attr)"),
    "raw_paste_global_conf": (Kind.REFUSE, "no PasteDeploy"),
    "protocol": (Kind.REFUSE, "HTTP only (no uwsgi protocol)"),
    "uwsgi_allow_ips": (Kind.IGNORE, "no uwsgi protocol"),
    "ssl_version": (Kind.IGNORE, "deprecated in gunicorn; use ssl_min_version"),
    "suppress_ragged_eofs": (Kind.IGNORE, "a TLS EOF without close_notify ends the connection"),
    "do_handshake_on_connect": (
        Kind.IGNORE,
        "corral always handshakes in the worker loop, without blocking, before the request",
    ),
    "http_protocols": (Kind.IGNORE, _HTTP2),
    "http2_cleartext": (Kind.REFUSE, _HTTP2),
    "http2_max_concurrent_streams": (Kind.IGNORE, _HTTP2),
    "http2_initial_window_size": (Kind.IGNORE, _HTTP2),
    "http2_max_frame_size": (Kind.IGNORE, _HTTP2),
    "http2_max_header_list_size": (Kind.IGNORE, _HTTP2),
    "permit_obsolete_folding": (Kind.REFUSE, _STRICT),
    "strip_header_spaces": (Kind.REFUSE, _STRICT),
    "permit_unconventional_http_method": (Kind.REFUSE, _STRICT),
    "permit_unconventional_http_version": (Kind.REFUSE, _STRICT),
    "casefold_http_method": (Kind.REFUSE, _STRICT),
    "forwarder_headers": (Kind.REFUSE, _FORWARDER),
    "header_map": (
        Kind.IGNORE,
        "corral always drops header names containing '_' (gunicorn's drop)",
    ),
    "asgi_disconnect_grace_period": (
        Kind.IGNORE,
        "corral's ASGI worker tells the app http.disconnect and lets it finish; the graceful "
        "timeout bounds it",
    ),
    "dirty_apps": (Kind.REFUSE, _DIRTY),
    "dirty_workers": (Kind.REFUSE, _DIRTY),
    "dirty_timeout": (Kind.IGNORE, _DIRTY),
    "dirty_threads": (Kind.IGNORE, _DIRTY),
    "dirty_graceful_timeout": (Kind.IGNORE, _DIRTY),
    "control_socket": (Kind.IGNORE, "control corral with signals (docs/signals.md)"),
    "control_socket_mode": (Kind.IGNORE, "no control socket"),
    "control_socket_disable": (Kind.IGNORE, "no control socket"),
    # hooks corral never calls (defining one in a config file logs a warning)
    "on_reload": (Kind.IGNORE, "not called: HUP starts a new generation (docs/signals.md)"),
    "worker_abort": (
        Kind.IGNORE,
        "not called: a stuck worker's SIGABRT dumps its stacks from C (faulthandler), where "
        "Python code may never run again",
    ),
    "pre_exec": (Kind.IGNORE, _UNUSED_HOOK),
    "ssl_context": (Kind.IGNORE, "the context comes from the TLS settings (corral.tlsconfig)"),
    "on_dirty_starting": (Kind.IGNORE, _DIRTY),
    "dirty_post_fork": (Kind.IGNORE, _DIRTY),
    "dirty_worker_init": (Kind.IGNORE, _DIRTY),
    "dirty_worker_exit": (Kind.IGNORE, _DIRTY),
}


class ConfigFileError(Exception):
    """The Python config file could not be run; the message is meant for the user."""


def run_config_file(path: str) -> dict[str, Any]:
    """Execute a gunicorn-style config file; return its public module variables.

    Modules, classes and names starting with ``_`` are left out (a config file imports
    ``multiprocessing`` or defines helpers); everything else is for the caller to map.
    """
    try:
        namespace = runpy.run_path(path, run_name="__config__")
    except OSError as exc:
        raise ConfigFileError(f"cannot read config file {path}: {exc.strerror}") from exc
    except SyntaxError as exc:
        raise ConfigFileError(f"config file {path} line {exc.lineno}: {exc.msg}") from exc
    except Exception as exc:
        raise ConfigFileError(f"config file {path} raised {exc!r}") from exc
    return {
        name: value
        for name, value in namespace.items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType | type)
    }


DEFAULTS: dict[str, Any] = {name: default for name, _, _, default in GUNICORN_SETTINGS}


def matters(name: str, value: Any) -> bool:
    """Whether a value of an unsupported gunicorn setting differs from gunicorn's default."""
    return value not in (DEFAULTS.get(name), None, False, "", [], 0)
