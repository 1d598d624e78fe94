"""What is generated from the settings table: docs/settings.md, corral/_settings_gen.py and
docs/migrating.md (with corral/gunicorn_compat.py).

Theory of operation: both are pure functions of ``corral.config.SETTINGS`` and are checked in;
tests compare the files with a fresh rendering, so a row added without regenerating fails the
suite with the command to run (``make settings``, which runs ``corral settings --markdown``,
``--python`` and ``--migrating``). The typed module is a plain frozen dataclass, so what mypy checks
is what runs: no ``__getattr__``, no stub that could disagree with the code.
"""

from __future__ import annotations

import textwrap

from corral import gunicorn_compat as compat
from corral.config import BY_KEY, SETTINGS, Setting
from corral.settings_core import _is_enum, _show

GENERATED = "corral settings --python > src/corral/_settings_gen.py"


def settings_markdown() -> str:
    """docs/settings.md, generated: one section per group, one row per setting."""
    out = [
        "# Settings\n",
        "Generated from `corral/config.py` by `corral settings --markdown`; do not edit.",
        "To add a setting: add a `Setting(...)` row next to related ones in",
        "`corral/settings_rows/`, then run `make settings` (regenerates this page and the",
        "typed `corral/_settings_gen.py`; the tests fail while either is stale). Merging",
        "branches that added rows needs the same step once after the merge.\n",
        "Every setting can be given as a command-line flag, as an environment variable, or as",
        "a key in a config file passed with `--config` (TOML, or a gunicorn-style `.py`;",
        "precedence: flag > env > file > default). List values take a comma-separated string",
        "in the environment. Aliases are other accepted spellings (mostly gunicorn's):",
        "flags, and config-file keys. See [migrating.md](migrating.md) for gunicorn's names.\n",
    ]
    for section in dict.fromkeys(s.section for s in SETTINGS):
        out.append(f"\n## {section}\n")
        out.append("| setting (TOML key) | flag | env | type | default | meaning |")
        out.append("|---|---|---|---|---|---|")
        for s in (s for s in SETTINGS if s.section == section):
            flags = " ".join(f"`{f}`" for f in s.cli_flags + s.alias_flags)
            if s.alias_keys:
                flags += " (key " + ", ".join(f"`{k}`" for k in s.alias_keys) + ")"
            default = s.default_doc or _show(s.default)
            out.append(
                f"| `{s.name}` | {flags} | `{s.env}` | {_type_doc(s)} | {default} | {s.help} |"
            )
    return "\n".join(out) + "\n"


def _type_doc(s: Setting) -> str:
    if s.choices:
        return " \\| ".join(s.choices)
    return "list of str" if s.type is list else s.type.__name__


def _annotation(s: Setting) -> str:
    if s.type is list:
        return "list[str]"
    return s.type.__name__


def _import_line(module: str, names: list[str]) -> str:
    """One ``from`` import, wrapped as ruff formats it when it would pass 100 columns."""
    line = f"from {module} import {', '.join(names)}"
    if len(line) <= 100:
        return line
    return "\n".join([f"from {module} import (", *(f"    {n}," for n in names), ")"])


def settings_python() -> str:
    """corral/_settings_gen.py: a frozen dataclass with one typed field per row, in order."""
    imports: dict[str, set[str]] = {}
    for s in SETTINGS:
        if _is_enum(s.type):
            imports.setdefault(s.type.__module__, set()).add(s.type.__name__)
    out = [
        '"""Generated from the settings table in corral/config.py; do not edit. Regenerate with',
        "",
        f"    {GENERATED}",
        "",
        "(or ``make settings``). One typed attribute per setting, so a misspelled ``cfg.name`` is",
        "a mypy error. ``corral.config.Config`` subclasses ``Settings``; build one with",
        '``config.load``."""',
        "",
        "from __future__ import annotations",
        "",
        "from dataclasses import dataclass",
        "",
    ]
    out += [_import_line(m, sorted(n)) for m, n in sorted(imports.items())]
    out += [
        "",
        "",
        "@dataclass(frozen=True, slots=True)",
        "class Settings:",
        '    """Every setting of corral, in table order; units are in the names."""',
        "",
    ]
    for s in SETTINGS:
        out += textwrap.wrap(s.help, 95, initial_indent="    #: ", subsequent_indent="    #: ")
        out.append(f"    {s.name}: {_annotation(s)}")
    return "\n".join(out) + "\n"


_HOOK_WHERE = {
    "on_starting": "master, before binding",
    "when_ready": "master, once every worker of the first generation serves",
    "pre_fork": "the process about to fork the worker (forked from the zygote)",
    "post_fork": "the new worker, before it serves",
    "post_worker_init": "the new worker, after post_fork, before it serves",
    "worker_int": "the worker, on SIGINT/SIGQUIT, from its loop",
    "pre_request": "the worker, before the app is called",
    "post_request": "the worker, after the response is sent",
    "child_exit": "master, after a worker is reaped",
    "worker_exit": "the worker, just before it exits",
    "nworkers_changed": "master, on TTIN/TTOU",
    "on_exit": "master, just before it exits",
}


def migrating_markdown() -> str:
    """docs/migrating.md: every gunicorn setting and hook, and what corral makes of it."""
    out = [
        "# Migrating from gunicorn\n",
        "Generated by `corral settings --migrating` from the settings table and",
        "`corral/gunicorn_compat.py`; do not edit (a test checks it is fresh).\n",
        "Replace the word `gunicorn` with `corral serve`: the same command line and the same",
        "`-c gunicorn.conf.py` work, with gunicorn's flag and setting names, for everything",
        "marked *same* below. `module` alone means `module:application`, as in gunicorn.",
        "Hooks are called with gunicorn's arguments; `server` and `worker` carry `pid`, `log`,",
        "`cfg` (readable by gunicorn's names too), and `worker.age`/`worker.ppid`.\n",
        "A gunicorn setting corral does not support is an **error** when set to anything but",
        "gunicorn's default if ignoring it would change what the server does, else a",
        "**warning**. In a Python config file, helper variables and functions are fine; a name",
        "close to a valid one is an error that names it.\n",
        f"Compared with gunicorn {compat.GUNICORN_VERSION}.\n",
        "| gunicorn | flag | corral | notes |",
        "|---|---|---|---|",
    ]
    for name, flags, _, default in compat.GUNICORN_SETTINGS:
        out.append(_migrating_row(name, flags, default))
    for name in compat.GUNICORN_HOOKS:
        if name in compat.HOOKS:
            args = ", ".join(compat.HOOKS[name])
            out.append(f"| `{name}({args})` | hook | same | called in {_HOOK_WHERE[name]} |")
        else:
            out.append(f"| `{name}` | hook | {_not_supported(name)}")
    return "\n".join(out) + "\n"


def _migrating_row(name: str, flags: tuple[str, ...], default: object) -> str:
    gflags = " ".join(f"`{f}`" for f in flags) or "(file only)"
    s = BY_KEY.get(name)
    if s is None:
        return f"| `{name}` | {gflags} | {_not_supported(name)}"
    note = s.help if s.name == name else f"`{s.name}`: {s.help}"
    if default is not None and default != s.default and s.name != "config":
        ours = s.default_doc or _show(s.default)
        note += f" Default: gunicorn {_show(default)}, corral {ours}."
    return f"| `{name}` | {gflags} | same (`{s.name}`) | {note} |"


def _not_supported(name: str) -> str:
    kind, reason = compat.NOT_SUPPORTED[name]
    word = "not supported (error)" if kind is compat.Kind.REFUSE else "ignored (warning)"
    return f"{word} | {reason} |"
