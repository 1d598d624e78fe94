"""What is generated from the settings table: docs/settings.md and corral/_settings_gen.py.

Theory of operation: both are pure functions of ``corral.config.SETTINGS`` and are checked in;
tests compare the files with a fresh rendering, so a row added without regenerating fails the
suite with the command to run (``make settings``, which runs ``corral settings --markdown`` and
``corral settings --python``). The typed module is a plain frozen dataclass, so what mypy checks
is what runs: no ``__getattr__``, no stub that could disagree with the code.
"""

from __future__ import annotations

import textwrap

from corral.config import SETTINGS, Setting, _is_enum, _show

GENERATED = "corral settings --python > src/corral/_settings_gen.py"


def settings_markdown() -> str:
    """docs/settings.md, generated: one section per group, one row per setting."""
    out = [
        "# Settings\n",
        "Generated from `corral/config.py` by `corral settings --markdown`; do not edit.",
        "To add a setting: add a `Setting(...)` row next to related ones in `corral/config.py`,",
        "then run `make settings` (regenerates this page and the typed `corral/_settings_gen.py`;",
        "the tests fail while either is stale). Merging branches that added rows needs the same",
        "step once after the merge.\n",
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
    out += [f"from {m} import {', '.join(sorted(n))}" for m, n in sorted(imports.items())]
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
