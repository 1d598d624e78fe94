"""WSGI entry point that loads the whole monolith at import, so a preloading server shares it.

Loading completely means: settings and generated apps (``django.setup()`` imports every app's
models), the catalogue and its indexes, every URLconf (the resolver is populated by resolving
and reversing once), and every template compiled into the cached loader. Django would otherwise
do much of this lazily on the first requests, in each worker, in private memory.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "monolith.settings")

import django  # type: ignore[import-untyped]

django.setup()

from django.apps import apps  # type: ignore[import-untyped]  # noqa: E402
from django.core.handlers.wsgi import WSGIHandler  # type: ignore[import-untyped]  # noqa: E402
from django.template.loader import get_template  # type: ignore[import-untyped]  # noqa: E402
from django.urls import (  # type: ignore[import-untyped]  # noqa: E402
    URLResolver,
    get_resolver,
    resolve,
    reverse,
)

from monolith import catalogue  # noqa: E402


def _import_app_modules() -> int:
    count = 0
    for config in apps.get_app_configs():
        for sub in ("admin", "forms", "views", "urls", "services"):
            try:
                importlib.import_module(f"{config.name}.{sub}")
                count += 1
            except ModuleNotFoundError as exc:
                if exc.name != f"{config.name}.{sub}":
                    raise
    return count


def _compile_templates() -> int:
    names: list[str] = []
    for config in apps.get_app_configs():
        tdir = Path(config.path) / "templates"
        if config.name.startswith("shopapps.") and tdir.is_dir():
            names += [str(p.relative_to(tdir)) for p in sorted(tdir.rglob("*.html"))]
    names += ["base.html", "catalogue/page.html"]
    for name in names:
        get_template(name)
    return len(names)


def _populate_urls() -> int:
    """Resolve and reverse once (populates every resolver's caches); return the pattern count."""
    resolve("/catalogue/")
    reverse("app00:product-list")
    reverse("admin:index")
    return _count_patterns(get_resolver())


def _count_patterns(resolver: URLResolver) -> int:
    return sum(
        _count_patterns(p) if isinstance(p, URLResolver) else 1 for p in resolver.url_patterns
    )


application = WSGIHandler()
LOADED = {
    "modules": _import_app_modules(),
    "templates": _compile_templates(),
    "url_patterns": _populate_urls(),
    "models": len(apps.get_models()),
    "products": len(catalogue.PRODUCTS),
}
