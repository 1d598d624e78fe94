"""The ``corral serve`` flags, from the settings table (and gunicorn's, for a clear refusal).

Theory of operation: one argparse argument per row, with the row's flags and alias flags, and
``default=None`` so ``config.load`` can tell what was given. gunicorn flags that have no row
(``--daemon``, ``--reload``, ...) are registered too, hidden from ``--help``, under a
``gunicorn:NAME`` dest, so that using one gives gunicorn's name and corral's reason in one line
(``config.unsupported``) instead of argparse's "unrecognized arguments". Abbreviations are off:
``--timeout`` is a real flag, not a prefix of ``--timeout-s``.
"""

from __future__ import annotations

import argparse

from corral import config
from corral import gunicorn_compat as compat
from corral.config import SETTINGS, Setting
from corral.settings_core import _show


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add one argument per setting; every default is None so we can tell what was given."""
    groups: dict[str, argparse._ArgumentGroup] = {}
    for s in SETTINGS:
        group = groups.get(s.section) or groups.setdefault(
            s.section, parser.add_argument_group(s.section)
        )
        _add_setting(group, s)


def _add_setting(group: argparse._ArgumentGroup, s: Setting) -> None:
    helptext = f"{s.help} [env {s.env}; default {s.default_doc or _show(s.default)}]"
    flags = s.cli_flags + s.alias_flags
    if s.flags == ("app",):
        group.add_argument("app", nargs="?", default=None, help=s.help, metavar="APP")
    elif s.type is bool:
        group.add_argument(
            *flags,
            dest=s.name,
            default=None,
            action=argparse.BooleanOptionalAction,
            help=helptext,
        )
    elif s.type is list:
        group.add_argument(
            *flags,
            dest=s.name,
            default=None,
            action="append",
            help=helptext,
            metavar=s.metavar or "VALUE",
        )
    else:
        group.add_argument(
            *flags, dest=s.name, default=None, help=helptext, metavar=s.metavar or _metavar(s)
        )


def _metavar(s: Setting) -> str:
    return "{" + ",".join(s.choices) + "}" if s.choices else s.type.__name__.upper()


def add_gunicorn_flags(parser: argparse.ArgumentParser) -> None:
    """gunicorn's flags that no row claims, hidden; call after every other argument."""
    taken = set(parser._option_string_actions)
    for name, flags, action, _ in compat.GUNICORN_SETTINGS:
        free = [f for f in flags if f not in taken]
        if not free or name in config.BY_KEY:
            continue
        kind = {"value": "store", "append": "append", "store_true": "store_true"}[action]
        parser.add_argument(
            *free,
            dest=config.GUNICORN_DEST + name,
            default=None,
            action=kind,
            help=argparse.SUPPRESS,
        )
