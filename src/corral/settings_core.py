"""The settings table's row type, its validators and how a raw value becomes a typed one.

Theory of operation: ``corral.config`` holds the one table of ``Setting`` rows and the loading;
this module holds what a row is made of, so the table module stays a table. A raw value (a
string from the environment or the command line, a typed one from TOML or a Python config
file) goes through ``coerce``: the row's ``convert`` or its type, then its validator; every
failure is a ``ConfigError`` whose message names the origin and the setting. Nothing here
imports the table, so ``corral.config`` can import all of it.
"""

from __future__ import annotations

import enum
import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from corral import gunicorn_compat as compat
from corral.addresses import parse_address
from corral.choices import WorkerClass

log = logging.getLogger("corral.config")


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


def _key_values(v: Any) -> None:
    for item in v:
        if "=" not in item or item.startswith("="):
            raise ConfigError(f"{item!r} is not KEY=VALUE")


def _log_format(v: Any) -> None:
    from corral.worker.accesslog import check_format  # the worker's own formatter decides

    if v:
        try:
            check_format(v)
        except ValueError as exc:
            raise ConfigError(str(exc)) from exc


def _octal(text: str) -> int:
    text = text.strip()
    try:
        return int(text, 8) if re.fullmatch(r"0\d+", text) else int(text, 0)  # as gunicorn
    except ValueError:
        raise ConfigError("expected an octal number such as 007 or 0o022") from None


_ASGI_WORKERS = frozenset(
    {
        "uvicorn.workers.uvicornworker",
        "uvicorn_worker.uvicornworker",
        "uvicorn.workers.uvicornh11worker",
        "uvicorn_worker.uvicornh11worker",
        "gunicorn.workers.gasgi.asgiworker",
    }
)


def _worker_class(text: str) -> WorkerClass:
    word = text.strip().lower()
    if word in _ASGI_WORKERS:
        return WorkerClass.ASGI
    try:
        return WorkerClass(word)
    except ValueError:
        raise ConfigError(
            f"worker class {text!r} is not supported: corral has a WSGI worker, epoll-driven, "
            "that runs the app in its thread (sync) or on a pool (gthread, --threads N), and "
            "an ASGI worker (asgi, uvicorn.workers.UvicornWorker)"
        ) from None


@dataclass(frozen=True)
class Setting:
    """One row of the table. ``type`` is int, float, str, bool, list (of str) or a StrEnum."""

    name: str
    type: type
    default: Any
    help: str
    flags: tuple[str, ...] = ()
    validator: Callable[[Any], None] | None = None
    section: str = "server"
    default_doc: str | None = None  # how to show a computed default in the docs
    metavar: str | None = None
    # Other spellings, mostly gunicorn's: "-t"/"--keep-alive" (starting with "-") are extra
    # command-line flags; bare words ("keepalive") are extra keys in config files.
    aliases: tuple[str, ...] = ()
    convert: Callable[[str], Any] | None = None  # parses a string value instead of type()

    @property
    def env(self) -> str:
        return "CORRAL_" + self.name.upper()

    @property
    def cli_flags(self) -> tuple[str, ...]:
        return self.flags or ("--" + self.name.replace("_", "-"),)

    @property
    def alias_flags(self) -> tuple[str, ...]:
        return tuple(a for a in self.aliases if a.startswith("-"))

    @property
    def alias_keys(self) -> tuple[str, ...]:
        return tuple(a for a in self.aliases if not a.startswith("-"))

    @property
    def choices(self) -> tuple[str, ...]:
        """The accepted words of an enum-typed setting; empty for any other type."""
        if not _is_enum(self.type):
            return ()
        members: Iterable[enum.Enum] = self.type  # type: ignore[assignment]
        return tuple(str(m.value) for m in members)


def _is_enum(t: type) -> bool:
    return isinstance(t, type) and issubclass(t, enum.Enum)


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
    if setting.convert is not None and isinstance(raw, str):
        return setting.convert(raw)
    if _is_enum(t):
        try:
            return t(raw)
        except ValueError:
            raise ConfigError(f"must be one of {', '.join(setting.choices)}") from None
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


def _from_python(setting: Setting, raw: Any) -> Any:
    """gunicorn's looser Python values: a str for a list, a tuple, an int user id."""
    if setting.type is list and isinstance(raw, str):
        return [raw]
    if setting.type is list and isinstance(raw, tuple):
        return list(raw)
    if setting.type is str and isinstance(raw, int) and not isinstance(raw, bool):
        return str(raw)
    return raw


def unsupported(name: str, value: Any, origin: str) -> None:
    """A gunicorn setting corral has no row for: an error, a warning, or nothing (default)."""
    kind, reason = compat.NOT_SUPPORTED.get(name, (compat.Kind.REFUSE, "no equivalent"))
    if not compat.matters(name, value):
        return
    if kind is compat.Kind.REFUSE:
        raise ConfigError(f"{origin}: gunicorn's {name} is not supported by corral: {reason}")
    log.warning("%s: gunicorn's %s is ignored: %s", origin, name, reason)


def _show(v: Any) -> str:
    if isinstance(v, list):
        return ", ".join(v) if v else "none"
    if v == "":
        return "empty"
    return str(v)
