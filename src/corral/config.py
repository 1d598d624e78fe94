"""One table of settings; the CLI, the environment, config files, the typed ``Config`` and
docs/settings.md all come from it.

Theory of operation: every setting is a ``Setting`` row (name, type, default, unit in the name,
env variable, CLI flags, aliases, validator, help). ``load()`` merges, lowest precedence first:
defaults, the config file (``--config``: TOML, or a gunicorn-style ``.py``), ``CORRAL_<NAME>``
environment variables, then command-line flags, and returns a frozen ``Config``. Unknown config
file keys are an error that names the closest valid key. Values are validated once, here, so the
rest of corral can trust them. What a row is made of (``Setting``, validators, conversion) is
in ``corral.settings_core``; gunicorn's names without a row are in ``corral.gunicorn_compat``.

Typing: ``Config`` subclasses ``corral._settings_gen.Settings``, a frozen dataclass generated
from this table (``corral settings --python``), so ``cfg.graceful_timeout_s`` is a ``float`` to
mypy and ``cfg.gracefull_timeout_s`` is an error. After adding or changing a row, regenerate it
and docs/settings.md (``make settings``); tests fail while either is stale. A row whose ``type``
is a ``StrEnum`` (``corral.choices``) accepts exactly the enum's values and is typed as the enum.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import logging
import os
import tomllib
from collections.abc import Callable, Mapping
from typing import Any

from corral import gunicorn_compat as compat
from corral._settings_gen import Settings
from corral.choices import AccessLogFormat, LogLevel, WorkerClass
from corral.memory.gcpolicy import GcPreset
from corral.memory.recycle import Metric
from corral.settings_core import (  # the row type and validators, re-exported for the rows
    ConfigError,
    Setting,
    _bind_list,
    _coerce,
    _from_python,
    _is_enum,
    _key_values,
    _log_format,
    _non_negative,
    _octal,
    _one_of,
    _positive,
    _root_path,
    _toml_value,
    _worker_class,
    unsupported,
)

__all__ = ["BY_KEY", "BY_NAME", "SETTINGS", "Config", "ConfigError", "Setting", "load"]


def _cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


S = Setting
SETTINGS: tuple[Setting, ...] = (
    # --- server -----------------------------------------------------------------------------
    S(
        "app",
        str,
        "",
        "WSGI application as module:attr or module:factory(); empty = the built-in demo app.",
        flags=("app",),
        metavar="APP",
        aliases=("wsgi_app",),
    ),
    S(
        "bind",
        list,
        ["127.0.0.1:8000"],
        "Address to listen on: HOST:PORT, [IPv6]:PORT or "
        "unix:PATH. Repeat for several. Port 0 picks a free port (printed when ready).",
        flags=("-b", "--bind"),
        validator=_bind_list,
        metavar="ADDR",
    ),
    S(
        "workers",
        int,
        0,
        "Number of worker processes; 0 means one per CPU.",
        flags=("-w", "--workers"),
        validator=_non_negative,
        default_doc="0 (= CPU count)",
    ),
    S("chdir", str, "", "Change to this directory before loading the app.", metavar="DIR"),
    S(
        "pythonpath",
        str,
        "",
        "Comma-separated directories put first on sys.path before the app is loaded "
        "(relative ones after chdir).",
        metavar="DIRS",
    ),
    S(
        "config",
        str,
        "",
        "Config file: TOML (keys are the setting names), or a gunicorn-style Python file "
        "(*.py: settings and server hooks as module variables).",
        flags=("-c", "--config"),
        metavar="FILE",
    ),
    S(
        "root_path",
        str,
        "",
        "SCRIPT_NAME prefix the app is mounted under (e.g. /api).",
        validator=_root_path,
    ),
    S("backlog", int, 2048, "listen() backlog (gunicorn's default).", validator=_positive),
    S(
        "threads",
        int,
        1,
        "Threads per worker running the app (1 = the app runs in the I/O "
        "loop's thread, one request at a time; more suits I/O-bound apps).",
        validator=_positive,
    ),
    S(
        "worker_class",
        WorkerClass,
        WorkerClass.SYNC,
        "gunicorn's worker class: sync and gthread both mean corral's worker (threads > 1 runs "
        "the app on a thread pool); others are refused.",
        aliases=("-k",),
        convert=_worker_class,
    ),
    S(
        "worker_connections",
        int,
        1000,
        "Most open client connections per worker (gunicorn --worker-connections 1000); "
        "past it new connections wait in the listen backlog, except that a waiting client "
        "takes the place of the oldest connection that never sent a byte (as nginx does).",
        validator=_positive,
    ),
    S(
        "post_fork",
        str,
        "",
        "Callable (module:function) run in each worker after fork, before "
        "it serves, e.g. to open per-process connections; if it raises, the worker fails to "
        "boot.",
        metavar="CALLABLE",
    ),
    S(
        "preload",
        bool,
        False,
        "Accepted for gunicorn's --preload and does nothing: corral always preloads (the zygote "
        "imports the app once per generation).",
        aliases=("preload_app",),
    ),
    S(
        "pidfile",
        str,
        "",
        "Write the master's pid to this file. During a USR2 upgrade the old master's is renamed "
        "to FILE.oldbin, as gunicorn does.",
        metavar="FILE",
        aliases=("-p", "--pid"),
    ),
    S(
        "reexec_stop_old",
        bool,
        True,
        "After USR2, the new master sends TERM to the old one as soon as its workers are ready: "
        "one signal upgrades. Off: both serve until you stop the old master yourself "
        "(gunicorn's USR2, then TERM to the pid in PIDFILE.oldbin).",
    ),
    S(
        "user",
        str,
        "",
        "Run workers as this user (name or uid) after binding; empty = do not switch.",
        aliases=("-u",),
    ),
    S(
        "group",
        str,
        "",
        "Run workers as this group (name or gid) after binding; empty = do not switch.",
        aliases=("-g",),
    ),
    S(
        "umask",
        int,
        -1,
        "umask for files and unix sockets corral creates, e.g. 0o007 or 007 (octal); "
        "-1 = keep the inherited one.",
        aliases=("-m",),
        convert=_octal,
        default_doc="-1 (inherited)",
    ),
    S(
        "env",
        list,
        [],
        "KEY=VALUE put into the environment before the app is loaded (repeatable).",
        flags=("-e", "--env"),
        validator=_key_values,
        metavar="KEY=VALUE",
        aliases=("raw_env",),
    ),
    S(
        "ready_fd",
        int,
        -1,
        "Write 'ready <addresses>' to this inherited fd once every worker "
        "serves (for supervisors and tests).",
        validator=None,
        section="server",
    ),
    # --- http -------------------------------------------------------------------------------
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
        "access_log",
        AccessLogFormat,
        AccessLogFormat.OFF,
        "Access log format: off, common or combined.",
        section="http",
    ),
    # --- supervision --------------------------------------------------------------------------
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
    # --- memory -------------------------------------------------------------------------------
    S(
        "gc",
        GcPreset,
        GcPreset.AUTO,
        "Copy-on-write GC policy: auto, freeze, cpython or instagram (see docs/memory.md).",
        section="memory",
    ),
    S(
        "warmup",
        list,
        [],
        "Request paths to run through the app in the preloading process "
        "before the heap is frozen (repeatable).",
        section="memory",
        metavar="PATH",
    ),
    S(
        "gc_collect_before_freeze",
        bool,
        False,
        "Run gc.collect() before gc.freeze() (frees "
        "garbage but leaves holes every worker then fills).",
        section="memory",
    ),
    S(
        "max_worker_memory_mib",
        float,
        0.0,
        "Recycle a worker whose memory (see "
        "worker_memory_metric) stays above this many MiB (0 = off).",
        validator=_non_negative,
        section="memory",
    ),
    S(
        "worker_memory_metric",
        Metric,
        Metric.USS,
        "Which figure max_worker_memory_mib limits: uss (private), pss or rss.",
        section="memory",
    ),
    S(
        "worker_memory_hard_limit_mib",
        float,
        0.0,
        "A ceiling the kernel enforces (RLIMIT_AS): each worker may map this many MiB more "
        "than it had at fork; past it allocations fail (0 = off; see docs/memory.md).",
        validator=_non_negative,
        section="memory",
    ),
    S(
        "track_writes",
        bool,
        False,
        "Count, per request path, the pre-fork heap pages each request writes (userfaultfd "
        "write-protect + PAGEMAP_SCAN, Linux >= 6.7); a diagnostic costing ~5-10 us per page "
        "written. Reports go to $TMPDIR/corral-writes-PID.json while the worker runs (removed at "
        "exit; the final figures are logged).",
        section="memory",
    ),
    S(
        "memory_sample_s",
        float,
        2.0,
        "Seconds between smaps_rollup samples of each worker.",
        validator=_positive,
        section="memory",
    ),
    # --- stats --------------------------------------------------------------------------------
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
BY_NAME: dict[str, Setting] = {s.name: s for s in SETTINGS}


class Config(Settings):
    """Effective settings: one typed attribute per row (see ``corral._settings_gen``)."""

    __slots__ = ()

    @property
    def values(self) -> dict[str, Any]:
        """Every setting by name, in table order."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def effective_workers(self) -> int:
        return self.workers or _cpu_count()

    def to_toml(self) -> str:
        return "".join(f"{k} = {_toml_value(v)}\n" for k, v in self.values.items())


# Config-file keys: setting names and their bare-word aliases (gunicorn's names).
BY_KEY: dict[str, Setting] = {k: s for s in SETTINGS for k in (s.name, *s.alias_keys)}
Hook = Callable[..., Any]
log = logging.getLogger("corral.config")
_unused = (_is_enum, _one_of)  # kept importable from here for rows on other branches


def closest(name: str, cutoff: float = 0.5) -> str:
    valid = [*BY_KEY, *compat.HOOKS]
    match = difflib.get_close_matches(name, valid, n=1, cutoff=cutoff)
    return f" (did you mean {match[0]!r}?)" if match else ""


def read_config_file(path: str) -> tuple[dict[str, Any], dict[str, Hook]]:
    """Settings (and, from a ``.py`` file, server hooks) of the file given with --config."""
    if path.endswith(".py"):
        return read_python(path)
    return read_toml(path), {}


def read_toml(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc
    values: dict[str, Any] = {}
    for key, raw in data.items():
        setting = BY_KEY.get(key.replace("-", "_"))
        if setting is None or setting.name == "config":
            raise ConfigError(f"{path}: unknown setting {key!r}{closest(key)}")
        values[setting.name] = _coerce(setting, raw, path)
    return values


def read_python(path: str) -> tuple[dict[str, Any], dict[str, Hook]]:
    """A gunicorn-style config: settings and hooks as module variables, gunicorn's names too.

    Helpers are fine (modules, classes, ``_names`` and functions that are not hooks are left
    alone); a name that is close to a valid one is an error naming it, others get a warning.
    """
    try:
        namespace = compat.run_config_file(path)
    except compat.ConfigFileError as exc:
        raise ConfigError(str(exc)) from exc
    values: dict[str, Any] = {}
    hooks: dict[str, Hook] = {}
    for key, raw in namespace.items():
        setting = BY_KEY.get(key)
        if key in compat.HOOKS and callable(raw):
            hooks[key] = raw
        elif setting is not None and setting.name != "config":
            if raw is not None:  # gunicorn's "unset"
                values[setting.name] = _coerce(setting, _from_python(setting, raw), path)
        elif key in compat.NOT_SUPPORTED or key in compat.DEFAULTS:
            unsupported(key, raw, f"{path}: {key}")
        elif closest(key, cutoff=0.8):
            raise ConfigError(f"{path}: unknown setting {key!r}{closest(key, 0.8)}")
        elif not callable(raw):
            log.warning("%s: ignoring %r: not a corral or gunicorn setting", path, key)
    return values, hooks


def read_env(environ: Mapping[str, str]) -> dict[str, Any]:
    """CORRAL_<NAME> variables. Others under CORRAL_ are tolerated with one warning: Kubernetes
    makes CORRAL_SERVICE_HOST, CORRAL_PORT_8000_TCP... for a Service named corral."""
    values: dict[str, Any] = {}
    foreign: list[str] = []
    for key, raw in environ.items():
        if not key.startswith("CORRAL_"):
            continue
        name = key[len("CORRAL_") :].lower()
        setting = BY_NAME.get(name)
        if setting is None:
            foreign.append(key + closest(name, cutoff=0.8))
            continue
        values[name] = _coerce(setting, raw, "environment " + key)
    if foreign:
        log.warning("environment: ignoring unknown %s", ", ".join(sorted(foreign)))
    return values


def load(
    args: argparse.Namespace | None = None, environ: Mapping[str, str] | None = None
) -> Config:
    """Merge defaults < config file < environment < command line into a validated Config."""
    return load_with_hooks(args, environ)[0]


def load_with_hooks(
    args: argparse.Namespace | None = None, environ: Mapping[str, str] | None = None
) -> tuple[Config, dict[str, Hook]]:
    """``load``, plus the server hooks a Python config file defined (by gunicorn's names)."""
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {s.name: _copy(s.default) for s in SETTINGS}
    given_all = vars(args or argparse.Namespace())
    given = {k: v for k, v in given_all.items() if k in BY_NAME and v is not None}
    for dest, value in given_all.items():  # gunicorn flags without a row (corral.cliargs)
        if dest.startswith(GUNICORN_DEST) and value is not None:
            unsupported(dest[len(GUNICORN_DEST) :], value, "command line")
    env_values = read_env(environ)
    config_path = given.get("config") or env_values.get("config")
    hooks: dict[str, Hook] = {}
    if config_path:
        file_values, hooks = read_config_file(config_path)
        values.update(file_values)
    values.update(env_values)
    for name, raw in given.items():
        values[name] = _coerce(BY_NAME[name], raw, "command line")
    return _build(values), hooks


GUNICORN_DEST = "gunicorn:"  # argparse dest prefix of gunicorn flags corral has no row for


def _build(values: dict[str, Any]) -> Config:
    try:
        return Config(**values)
    except TypeError as exc:  # a row added or renamed without regenerating the typed module
        raise ConfigError(
            f"corral/_settings_gen.py does not match the settings table ({exc}): "
            "run `corral settings --python > src/corral/_settings_gen.py`"
        ) from exc


def defaults() -> Config:
    """The Config production runs with when nothing is given (tests build from it too)."""
    return load(argparse.Namespace(), environ={})


def _copy(v: Any) -> Any:
    return list(v) if isinstance(v, list) else v
