"""One table of settings; the CLI, the environment, config files, the typed ``Config`` and
docs/settings.md all come from it.

Theory of operation: every setting is a ``Setting`` row (name, type, default, unit in the name,
env variable, CLI flags, aliases, validator, help). ``load()`` merges, lowest precedence first:
defaults, the config file (``--config``: TOML, or a gunicorn-style ``.py``), ``CORRAL_<NAME>``
environment variables, then command-line flags, and returns a frozen ``Config``. Unknown config
file keys are an error that names the closest valid key. Values are validated once, here, so the
rest of corral can trust them. What a row is made of (``Setting``, validators, conversion) is
in ``corral.settings_core``; the rows, one module per section, in
``corral.settings_rows``; gunicorn's names without a row are in ``corral.gunicorn_compat``.

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
from corral.settings_core import (  # the row type; validators live there too
    ConfigError,
    Setting,
    _coerce,
    _from_python,
    _toml_value,
    unsupported,
)
from corral.settings_rows import SECTIONS

__all__ = ["BY_KEY", "BY_NAME", "SETTINGS", "Config", "ConfigError", "Setting", "load"]


def _cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


SETTINGS: tuple[Setting, ...] = tuple(row for section in SECTIONS for row in section.ROWS)
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
    for name, var in compat.DEFAULT_ENV.items():  # gunicorn's defaults from the environment
        if var in environ:
            values[name] = _coerce(BY_NAME[name], environ[var], "environment " + var)
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
