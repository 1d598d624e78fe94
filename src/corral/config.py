"""One table of settings; the CLI, the environment, TOML files and docs/settings.md come from it.

Theory of operation: every setting is a ``Setting`` row (name, type, default, unit in the name,
env variable, CLI flags, validator, help). ``load()`` merges, lowest precedence first: defaults,
the TOML file (``--config``), ``CORRAL_<NAME>`` environment variables, then command-line flags, and
returns a frozen ``Config``. Unknown TOML keys are an error that names the closest valid key.
Values are validated once, here, so the rest of corral can trust them.
"""

from __future__ import annotations

import argparse
import difflib
import os
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any


class ConfigError(ValueError):
    """A setting has an invalid value or name; the message is meant for the user."""


def _positive(v: Any) -> None:
    if v <= 0:
        raise ConfigError("must be greater than 0")


def _non_negative(v: Any) -> None:
    if v < 0:
        raise ConfigError("must be 0 or more")


def _one_of(*choices: str) -> Callable[[Any], None]:
    def check(v: Any) -> None:
        if v not in choices:
            raise ConfigError(f"must be one of {', '.join(choices)}")

    check.choices = choices  # type: ignore[attr-defined]
    return check


def _bind_list(v: Any) -> None:
    from corral.master.listeners import parse_address  # local: avoid an import cycle

    if not v:
        raise ConfigError("needs at least one address")
    for item in v:
        try:
            parse_address(item)
        except ValueError as exc:
            raise ConfigError(str(exc)) from exc


def _root_path(v: Any) -> None:
    if v and (not v.startswith("/") or v.endswith("/")):
        raise ConfigError("must start with '/' and not end with '/' (e.g. /api)")


def _cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@dataclass(frozen=True)
class Setting:
    name: str
    type: type
    default: Any
    help: str
    flags: tuple[str, ...] = ()
    validator: Callable[[Any], None] | None = None
    section: str = "server"
    default_doc: str | None = None  # how to show a computed default in the docs
    metavar: str | None = None

    @property
    def env(self) -> str:
        return "CORRAL_" + self.name.upper()

    @property
    def cli_flags(self) -> tuple[str, ...]:
        return self.flags or ("--" + self.name.replace("_", "-"),)


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
        "config",
        str,
        "",
        "TOML file with settings (keys are the setting names).",
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
    S("pidfile", str, "", "Write the master's pid to this file.", metavar="FILE"),
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
        str,
        "off",
        "Access log format: off, common or combined.",
        validator=_one_of("off", "common", "combined"),
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
    ),
    S(
        "graceful_timeout_s",
        float,
        30.0,
        "Seconds a stopping worker may take to finish "
        "in-flight requests before it is killed (gunicorn 30).",
        validator=_positive,
        section="supervision",
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
        str,
        "auto",
        "Copy-on-write GC policy: auto, freeze, cpython or instagram (see docs/memory.md).",
        validator=_one_of("auto", "freeze", "cpython", "instagram"),
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
        str,
        "uss",
        "Which figure max_worker_memory_mib limits: uss (private), pss or rss.",
        validator=_one_of("uss", "pss", "rss"),
        section="memory",
    ),
    S(
        "track_writes",
        bool,
        False,
        "Count, per request path, the pre-fork heap pages each request writes (userfaultfd "
        "write-protect + PAGEMAP_SCAN, Linux >= 6.7); a diagnostic costing ~5-10 us per page "
        "written. Reports go to $TMPDIR/corral-writes-PID.json.",
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
        "log_level",
        str,
        "info",
        "Log level: debug, info, warning, error.",
        validator=_one_of("debug", "info", "warning", "error"),
        section="logging",
    ),
)
BY_NAME: dict[str, Setting] = {s.name: s for s in SETTINGS}


@dataclass(frozen=True)
class Config:
    """Effective settings: attribute access by setting name."""

    values: Mapping[str, Any] = field(default_factory=dict)

    def __getattr__(self, name: str) -> Any:
        try:
            return self.values[name]
        except KeyError:
            raise AttributeError(name) from None

    def effective_workers(self) -> int:
        return int(self.values["workers"]) or _cpu_count()

    def to_toml(self) -> str:
        return "".join(f"{k} = {_toml_value(v)}\n" for k, v in self.values.items())


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return repr(v)


def _coerce(setting: Setting, raw: Any, origin: str) -> Any:
    """Turn a raw value (str from env/CLI, typed from TOML) into the setting's type."""
    try:
        value = _convert(setting, raw)
        if setting.validator is not None:
            setting.validator(value)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{origin}: {setting.name}={raw!r}: {exc}") from exc
    return value


def _convert(setting: Setting, raw: Any) -> Any:
    t = setting.type
    if t is list:
        if isinstance(raw, str):
            return [p.strip() for p in raw.split(",") if p.strip()]
        if not isinstance(raw, list) or not all(isinstance(x, str) for x in raw):
            raise ConfigError("expected a list of strings")
        return list(raw)
    if t is bool:
        if isinstance(raw, bool):
            return raw
        text = str(raw).strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off"):
            return False
        raise ConfigError("expected true or false")
    if t is int and isinstance(raw, float | bool):
        raise ConfigError("expected an integer")
    if t is float and isinstance(raw, bool):
        raise ConfigError("expected a number")
    if t is str and not isinstance(raw, str):
        raise ConfigError("expected a string")
    return t(raw)


def closest(name: str) -> str:
    match = difflib.get_close_matches(name, list(BY_NAME), n=1, cutoff=0.5)
    return f" (did you mean {match[0]!r}?)" if match else ""


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
        setting = BY_NAME.get(key.replace("-", "_"))
        if setting is None or setting.name == "config":
            raise ConfigError(f"{path}: unknown setting {key!r}{closest(key)}")
        values[setting.name] = _coerce(setting, raw, path)
    return values


def read_env(environ: Mapping[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for key, raw in environ.items():
        if not key.startswith("CORRAL_"):
            continue
        name = key[len("CORRAL_") :].lower()
        setting = BY_NAME.get(name)
        if setting is None:
            raise ConfigError(f"environment: unknown setting {key}{closest(name)}")
        values[name] = _coerce(setting, raw, "environment " + key)
    return values


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add one argument per setting; every default is None so we can tell what was given."""
    groups: dict[str, argparse._ArgumentGroup] = {}
    for s in SETTINGS:
        group = groups.get(s.section) or groups.setdefault(
            s.section, parser.add_argument_group(s.section)
        )
        helptext = f"{s.help} [env {s.env}; default {s.default_doc or _show(s.default)}]"
        if s.flags == ("app",):
            group.add_argument("app", nargs="?", default=None, help=s.help, metavar="APP")
        elif s.type is bool:
            group.add_argument(
                *s.cli_flags,
                dest=s.name,
                default=None,
                action=argparse.BooleanOptionalAction,
                help=helptext,
            )
        elif s.type is list:
            group.add_argument(
                *s.cli_flags,
                dest=s.name,
                default=None,
                action="append",
                help=helptext,
                metavar=s.metavar or "VALUE",
            )
        else:
            group.add_argument(
                *s.cli_flags,
                dest=s.name,
                default=None,
                help=helptext,
                metavar=s.metavar or s.type.__name__.upper(),
            )


def _show(v: Any) -> str:
    if isinstance(v, list):
        return ", ".join(v) if v else "none"
    if v == "":
        return "empty"
    return str(v)


def load(
    args: argparse.Namespace | None = None, environ: Mapping[str, str] | None = None
) -> Config:
    """Merge defaults < TOML < environment < command line into a validated Config."""
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {s.name: _copy(s.default) for s in SETTINGS}
    given = {
        k: v
        for k, v in vars(args or argparse.Namespace()).items()
        if k in BY_NAME and v is not None
    }
    env_values = read_env(environ)
    config_path = given.get("config") or env_values.get("config")
    if config_path:
        values.update(read_toml(config_path))
    values.update(env_values)
    for name, raw in given.items():
        values[name] = _coerce(BY_NAME[name], raw, "command line")
    return Config(values)


def _copy(v: Any) -> Any:
    return list(v) if isinstance(v, list) else v


def settings_markdown() -> str:
    """docs/settings.md, generated: one section per group, one row per setting."""
    out = [
        "# Settings\n",
        "Generated from `corral/config.py` by `corral settings --markdown`; do not edit.\n",
        "Every setting can be given as a command-line flag, as an environment variable, or as",
        "a key in a TOML file passed with `--config` (precedence: flag > env > file >",
        "default). List values take a comma-separated string in the environment.\n",
    ]
    for section in dict.fromkeys(s.section for s in SETTINGS):
        out.append(f"\n## {section}\n")
        out.append("| setting (TOML key) | flag | env | type | default | meaning |")
        out.append("|---|---|---|---|---|---|")
        for s in (s for s in SETTINGS if s.section == section):
            flags = " ".join(f"`{f}`" for f in s.cli_flags)
            default = s.default_doc or _show(s.default)
            out.append(
                f"| `{s.name}` | {flags} | `{s.env}` | {s.type.__name__} | {default} | {s.help} |"
            )
    return "\n".join(out) + "\n"


def known_names() -> Sequence[str]:
    return [s.name for s in SETTINGS]
