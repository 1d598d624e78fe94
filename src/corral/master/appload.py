"""Finding the WSGI application named on the command line.

``module:attr`` imports the module and takes the attribute (dotted paths allowed); ``module``
alone means ``module:application`` (gunicorn's default, Django's wsgi.py name);
``module:factory()`` calls it with no arguments; ``module:factory('x', n=1)`` passes literal
arguments (parsed with ``ast``, never ``eval``). An empty spec is the built-in demo app.
Every failure is an ``AppLoadError`` with a message for the user; the import traceback is kept
as ``__cause__`` so the zygote can log it.
"""

from __future__ import annotations

import ast
import importlib
import os
import sys
from collections.abc import Callable
from typing import Any

WSGIApp = Callable[..., Any]
DEMO = "corral.demo:app"
DEFAULT_CALLABLE = "application"  # gunicorn's, and what Django's wsgi.py defines


class AppLoadError(Exception):
    """The application could not be imported or is not callable."""


def load_app(spec: str, chdir: str = "", pythonpath: str = "") -> WSGIApp:
    """Import the app named by ``spec``; ``pythonpath`` is comma-separated directories."""
    spec = spec or DEMO
    if chdir:
        try:
            os.chdir(chdir)
        except OSError as exc:
            raise AppLoadError(f"cannot chdir to {chdir!r}: {exc.strerror}") from exc
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    dirs = [os.path.abspath(d.strip()) for d in pythonpath.split(",") if d.strip()]
    sys.path[:0] = [d for d in dirs if d not in sys.path]
    module_name, sep, expr = spec.partition(":")
    expr = expr if sep else DEFAULT_CALLABLE
    if not module_name or not expr:
        raise AppLoadError(f"app {spec!r}: expected module, module:attribute or module:factory()")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        if getattr(exc, "name", None) == module_name:
            raise AppLoadError(f"app {spec!r}: no module named {module_name!r}") from exc
        raise AppLoadError(f"app {spec!r}: importing {module_name} failed: {exc!r}") from exc
    except BaseException as exc:
        raise AppLoadError(f"app {spec!r}: importing {module_name} raised {exc!r}") from exc
    app = _resolve(module, expr, spec)
    if not callable(app):
        raise AppLoadError(f"app {spec!r}: {expr} is {type(app).__name__}, not a WSGI callable")
    found: WSGIApp = app
    return found


def _resolve(module: Any, expr: str, spec: str) -> Any:
    try:
        node = ast.parse(expr, mode="eval").body
    except SyntaxError as exc:
        raise AppLoadError(f"app {spec!r}: {expr!r} is not an attribute or a call") from exc
    call = node if isinstance(node, ast.Call) else None
    target = call.func if call else node
    obj = _attr_path(module, target, spec)
    if call is None:
        return obj
    try:
        args = [ast.literal_eval(a) for a in call.args]
        kwargs = {k.arg: ast.literal_eval(k.value) for k in call.keywords if k.arg}
    except ValueError as exc:
        raise AppLoadError(f"app {spec!r}: factory arguments must be literals") from exc
    try:
        return obj(*args, **kwargs)
    except BaseException as exc:
        raise AppLoadError(f"app {spec!r}: the factory raised {exc!r}") from exc


def _attr_path(module: Any, node: ast.expr, spec: str) -> Any:
    names: list[str] = []
    while isinstance(node, ast.Attribute):
        names.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        raise AppLoadError(f"app {spec!r}: expected a name after ':'")
    names.append(node.id)
    obj = module
    for name in reversed(names):
        try:
            obj = getattr(obj, name)
        except AttributeError as exc:
            raise AppLoadError(
                f"app {spec!r}: {module.__name__} has no attribute {name!r}"
            ) from exc
    return obj
