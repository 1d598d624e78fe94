"""The benchmark view: read across the heap the way a monolith's page does.

``catalogue_page`` looks up ``n`` random products (default 20) and the hits of one random search
word, calls the pricing and presentation rules of each product's department (a different
generated module for each), reads their related products, and renders a compiled template that
shows the ``SHOWN`` best of them through each department's item snippet plus a summary of all.
Reading many objects and rendering few keeps a request near a millisecond of CPU, so a 100k
request benchmark is about the heap and the server, not template speed. Nothing shared is
written (except one per-process entry in ``_rngs``): the pages a worker copies are the
interpreter's doing (reference counts, GC headers, caches, allocator pools), not the app's.
"""

from __future__ import annotations

import importlib
import os
import random
from types import ModuleType
from typing import Any

from django.http import HttpRequest, HttpResponse  # type: ignore[import-untyped]
from django.shortcuts import render  # type: ignore[import-untyped]

from monolith import catalogue
from monolith.generate import APPS, app_label

SERVICES: list[ModuleType] = [
    importlib.import_module(f"shopapps.{app_label(a)}.services") for a in range(APPS)
]
MAX_ITEMS = 200
SHOWN = 2
_rngs: dict[int, random.Random] = {}


def _rng() -> random.Random:
    """One generator per process, so that forked workers do not all draw the same products."""
    pid = os.getpid()
    rng = _rngs.get(pid)
    if rng is None:
        rng = _rngs[pid] = random.Random(pid)
    return rng


def _item(p: catalogue.Product) -> dict[str, Any]:
    svc = SERVICES[p.app]
    return {
        "product": p,
        "price": svc.price(p),
        "badge": svc.badge(p),
        "blurb": svc.describe(p),
        "template": f"{app_label(p.app)}/item.html",
        "related": [catalogue.PRODUCTS[r].title for r in p.related],
    }


def catalogue_items(rng: random.Random, n: int) -> list[dict[str, Any]]:
    products = catalogue.PRODUCTS
    picked = [products[rng.randrange(len(products))] for _ in range(n)]
    hits = catalogue.SEARCH_INDEX.get(rng.choice(catalogue.WORDS), [])[:5]
    picked += [products[i] for i in hits]
    return [_item(p) for p in picked]


def catalogue_page(request: HttpRequest) -> HttpResponse:
    rng = _rng()
    try:
        n = max(1, min(MAX_ITEMS, int(request.GET.get("n", "20"))))
    except ValueError:
        n = 20
    lang = catalogue.LANGUAGES[rng.randrange(len(catalogue.LANGUAGES))]
    key = f"msg.{catalogue.WORDS[0]}.0"
    items = catalogue_items(rng, n)
    items.sort(key=lambda item: item["price"], reverse=True)
    departments = sorted({item["product"].app for item in items})
    context = {
        "items": items[:SHOWN],
        "greeting": catalogue.TRANSLATIONS[(lang, key)],
        "count": len(catalogue.PRODUCTS),
        "looked_up": len(items),
        "total": round(sum(item["price"] for item in items), 2),
        "departments": departments,
    }
    return render(request, "catalogue/page.html", context)


def health(request: HttpRequest) -> HttpResponse:
    return HttpResponse(b"ok\n", content_type="text/plain")
