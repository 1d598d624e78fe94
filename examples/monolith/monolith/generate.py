"""Write the monolith's generated Django apps: ``shopapps/app00`` ... ``shopapps/appNN``.

Theory of operation. A real monolith's preloaded heap is mostly *code and framework state*
(thousands of modules, models with their fields and descriptors, admin classes, URL patterns,
compiled templates) plus *application data* built at import (catalogues, caches, indexes). The
code half is produced here: ``APPS`` apps of ``MODELS`` models each, every app with ``models.py``,
``admin.py``, ``forms.py``, ``views.py``, ``urls.py``, ``services.py`` (pricing and presentation
rules that the benchmark view calls) and one compiled template per model plus an item snippet.
The data half lives in ``monolith.catalogue``.

The output is deterministic (no randomness, no clock) and is written next to the ``monolith``
package, to ``shopapps/`` (git-ignored). ``ensure_generated()`` is called by the settings module
so that ``django.setup()`` finds the apps; it regenerates only when the output would change (a
stamp holds its digest) and it publishes the tree with an atomic ``rename`` so that several
processes importing at once (servers that load the app per worker) never see a half-written
tree.

Run ``python -m monolith.generate`` from ``examples/monolith`` to (re)write it by hand.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

APPS = 40
MODELS = 15
RULES_PER_APP = 36

ROOT = Path(__file__).resolve().parent.parent
TARGET = ROOT / "shopapps"
STAMP = "STAMP"

NOUNS = (
    "Product", "Variant", "Supplier", "Warehouse", "Shipment", "Invoice", "Customer", "Address",
    "Review", "Coupon", "Category", "Brand", "Basket", "Payment", "Refund",
)  # fmt: skip
FIELD_KINDS = (
    'models.CharField(max_length=64, blank=True, default="")',
    "models.IntegerField(default=0)",
    "models.DecimalField(max_digits=12, decimal_places=2, default=0)",
    "models.DateTimeField(null=True, blank=True)",
    "models.BooleanField(default=False)",
    'models.TextField(blank=True, default="")',
    "models.PositiveIntegerField(default=1)",
    "models.FloatField(default=0.0)",
    "models.JSONField(default=dict, blank=True)",
    'models.SlugField(max_length=80, blank=True, default="")',
)
FIELD_NAMES = (
    "code", "quantity", "amount", "created_at", "active", "notes", "position", "weight",
    "extra", "slug", "label", "stock", "total", "updated_at", "visible", "summary",
)  # fmt: skip


def model_names() -> tuple[str, ...]:
    return NOUNS[:MODELS]


def app_label(app: int) -> str:
    return f"app{app:02d}"


# --- one file each ------------------------------------------------------------------------------


def apps_py(app: int) -> str:
    label = app_label(app)
    return (
        "from django.apps import AppConfig\n\n\n"
        f"class App{app:02d}Config(AppConfig):\n"
        f'    name = "shopapps.{label}"\n'
        f'    label = "{label}"\n'
        f'    verbose_name = "Shop department {app}"\n'
        '    default_auto_field = "django.db.models.BigAutoField"\n'
    )


def _fields(app: int, index: int) -> Iterator[tuple[str, str]]:
    count = 6 + (app + index) % 5
    for k in range(count):
        kind = FIELD_KINDS[(app * 7 + index * 3 + k) % len(FIELD_KINDS)]
        yield FIELD_NAMES[k], kind


def _index_name(app: int, index: int) -> str:
    return f"{app_label(app)}_{index:02d}_name"


def model_class(app: int, index: int) -> str:
    name = model_names()[index]
    lines = [f"class {name}(models.Model):"]
    lines.append('    name = models.CharField(max_length=120, db_index=True, default="")')
    lines += [f"    {field} = {kind}" for field, kind in _fields(app, index)]
    if index > 0:
        parent = model_names()[index - 1]
        lines.append(
            f'    parent = models.ForeignKey("{parent}", on_delete=models.CASCADE, null=True)'
        )
    if index >= 2 and index % 4 == 2:
        lines.append(f'    links = models.ManyToManyField("{model_names()[0]}", blank=True)')
    lines += [
        "",
        "    class Meta:",
        '        ordering = ["-id"]',
        f'        verbose_name = "{name.lower()} of department {app}"',
        f'        indexes = [models.Index(fields=["name"], name="{_index_name(app, index)}")]',
        "",
        "    def __str__(self) -> str:",
        "        return self.name",
        "",
        "    def get_absolute_url(self) -> str:",
        f'        return reverse("{app_label(app)}:{name.lower()}-detail", args=[self.pk])',
        "",
        "    @property",
        "    def display_code(self) -> str:",
        f'        return "{app_label(app).upper()}-{index:02d}-" + str(self.pk or 0).zfill(8)',
    ]
    return "\n".join(lines) + "\n"


def models_py(app: int) -> str:
    head = "from django.db import models\nfrom django.urls import reverse\n\n\n"
    return head + "\n\n".join(model_class(app, i) for i in range(MODELS))


def admin_py(app: int) -> str:
    out = ["from django.contrib import admin\n", "from . import models\n"]
    for i, name in enumerate(model_names()):
        fields = [f for f, _ in _fields(app, i)][:3]
        out.append(
            f"\n@admin.register(models.{name})\n"
            f"class {name}Admin(admin.ModelAdmin):\n"
            f'    list_display = ("id", "name", {", ".join(repr(f) for f in fields)})\n'
            '    search_fields = ("name",)\n'
            "    list_per_page = 50\n"
            '    ordering = ("-id",)\n'
        )
    return "\n".join(out)


def forms_py(app: int) -> str:
    out = ["from django import forms\n", "from . import models\n"]
    for i, name in enumerate(model_names()[:6]):
        fields = ["name", *[f for f, _ in _fields(app, i)][:4]]
        out.append(
            f"\nclass {name}Form(forms.ModelForm):\n"
            "    class Meta:\n"
            f"        model = models.{name}\n"
            f"        fields = {fields!r}\n"
        )
    return "\n".join(out)


def views_py(app: int) -> str:
    out = [
        "from typing import Any\n",
        "from django.views.generic import TemplateView\n",
        "from monolith import catalogue\n",
        "from . import services\n",
    ]
    for i, name in enumerate(model_names()):
        out.append(
            f"\nclass {name}List(TemplateView):\n"
            f'    template_name = "{app_label(app)}/m{i:02d}.html"\n\n'
            "    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:\n"
            "        ctx = super().get_context_data(**kwargs)\n"
            f"        ctx['rows'] = catalogue.department_sample({app}, {10 + i})\n"
            "        ctx['price'] = services.price\n"
            "        return ctx\n\n\n"
            f"class {name}Detail({name}List):\n"
            "    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:\n"
            "        ctx = super().get_context_data(**kwargs)\n"
            "        ctx['rows'] = ctx['rows'][:1]\n"
            "        return ctx\n"
        )
    return "\n".join(out)


def urls_py(app: int) -> str:
    out = [
        "from django.urls import path\n",
        "from . import views\n",
        f'app_name = "{app_label(app)}"\n',
    ]
    out.append("urlpatterns = [")
    for name in model_names():
        low = name.lower()
        out.append(f'    path("{low}/", views.{name}List.as_view(), name="{low}-list"),')
        out.append(
            f'    path("{low}/<int:pk>/", views.{name}Detail.as_view(), name="{low}-detail"),'
        )
    out.append("]\n")
    return "\n".join(out)


_COLOURS = ("blue", "ink", "moss", "red", "sand")


def _rule(app: int, k: int) -> str:
    """One small business rule; the bodies vary so code objects and constants differ."""
    shape = (app + k) % 4
    if shape == 0:
        return (
            f"def rule_{k:02d}(p: Product) -> float:\n"
            f"    if p.rating > {3 + k % 2}.{k % 10}:\n"
            f"        return p.price * {1 + (k % 7) / 100:.2f}\n"
            f"    return p.price * {1 - (k % 5) / 100:.2f}\n"
        )
    if shape == 1:
        return (
            f"def rule_{k:02d}(p: Product) -> str:\n"
            f"    tag = p.tags[{k % 3}] if len(p.tags) > {k % 3} else 'plain'\n"
            f"    return f'{{tag}}-{app_label(app)}-{k}'\n"
        )
    if shape == 2:
        return (
            f"def rule_{k:02d}(p: Product) -> int:\n"
            f"    stock = p.stock.get('{('north', 'south', 'east', 'west')[k % 4]}', 0)\n"
            f"    return stock // {1 + k % 3} + {k}\n"
        )
    return (
        f"def rule_{k:02d}(p: Product) -> bool:\n"
        f"    colour = p.attributes.get('colour', '')\n"
        f"    return colour in {_COLOURS[: 1 + k % 5]!r}\n"
    )


def services_py(app: int) -> str:
    rules = "\n\n".join(_rule(app, k) for k in range(RULES_PER_APP))
    picks = [(app * 5 + j * 7) % RULES_PER_APP for j in range(4)]
    thresholds = [(50 + 25 * j + app, round(0.99 - j * 0.01, 2), f"tier{j}") for j in range(12)]
    return (
        f'"""Pricing and presentation rules of department {app} (generated)."""\n\n'
        "from __future__ import annotations\n\n"
        "from monolith.catalogue import Product\n\n"
        f"APP = {app}\n"
        f"MARGIN = {1 + (app % 9) / 20:.2f}\n"
        'TAX = {"FR": 0.2, "DE": 0.19, "IT": 0.22, "ES": 0.21, "NL": 0.21, "PL": 0.23}\n'
        f"TIERS = {thresholds!r}\n"
        f"BADGES = {tuple(f'{w}-{app}' for w in ('new', 'sale', 'top', 'eco', 'last'))!r}\n\n\n"
        f"{rules}\n\n"
        "def price(p: Product) -> float:\n"
        "    base = p.price * MARGIN\n"
        "    for threshold, factor, _label in TIERS:\n"
        "        if base > threshold:\n"
        "            base *= factor\n"
        "            break\n"
        "    return round(base * (1 + TAX.get(p.attributes.get('origin', 'FR'), 0.2)), 2)\n\n\n"
        "def badge(p: Product) -> str:\n"
        "    if p.rating > 4.5:\n"
        "        return BADGES[2]\n"
        "    return BADGES[p.id % len(BADGES)] if p.id % 3 == 0 else ''\n\n\n"
        "def describe(p: Product) -> str:\n"
        f"    extras = (rule_{picks[0]:02d}(p), rule_{picks[1]:02d}(p), "
        f"rule_{picks[2]:02d}(p), rule_{picks[3]:02d}(p))\n"
        '    return f"{p.title}: {p.description[:80]} {extras!r}"\n'
    )


def model_template(app: int, index: int) -> str:
    name = model_names()[index]
    return (
        '{% extends "base.html" %}\n'
        f"{{% block title %}}{name} of department {app}{{% endblock %}}\n"
        "{% block content %}\n"
        f'<h1 class="m{index}">{name} list</h1>\n'
        "<table>\n"
        "{% for row in rows %}\n"
        "  <tr><td>{{ row.sku }}</td><td>{{ row.title|truncatechars:40 }}</td>"
        "<td>{{ row.price|floatformat:2 }}</td>\n"
        "  {% if row.rating > 4 %}<td>top</td>{% else %}<td>{{ row.rating }}</td>{% endif %}\n"
        "  <td>{% for t in row.tags %}{{ t|upper }}{% if not forloop.last %}, {% endif %}"
        "{% endfor %}</td></tr>\n"
        "{% empty %}\n"
        "  <tr><td>nothing here</td></tr>\n"
        "{% endfor %}\n"
        "</table>\n"
        "{% endblock %}\n"
    )


def item_template(app: int) -> str:
    return (
        f'<li class="item {app_label(app)}">\n'
        f'  <a href="/shop/{app_label(app)}/product/{{{{ item.product.id }}}}/">'
        "{{ item.product.title }}</a>\n"
        "  <span>{{ item.price|floatformat:2 }} {{ item.product.currency }}</span>\n"
        "  {% if item.badge %}<b>{{ item.badge }}</b>{% endif %}\n"
        "  <p>{{ item.blurb|truncatewords:12 }}</p>\n"
        "  <ul>{% for k, v in item.product.attributes.items %}<li>{{ k }}: {{ v }}</li>"
        "{% endfor %}</ul>\n"
        "</li>\n"
    )


# --- the tree -----------------------------------------------------------------------------------


def app_files(app: int) -> Iterator[tuple[str, str]]:
    label = app_label(app)
    yield f"{label}/__init__.py", f'"""Shop department {app} (generated)."""\n'
    yield f"{label}/apps.py", apps_py(app)
    yield f"{label}/models.py", models_py(app)
    yield f"{label}/admin.py", admin_py(app)
    yield f"{label}/forms.py", forms_py(app)
    yield f"{label}/views.py", views_py(app)
    yield f"{label}/urls.py", urls_py(app)
    yield f"{label}/services.py", services_py(app)
    for i in range(MODELS):
        yield f"{label}/templates/{label}/m{i:02d}.html", model_template(app, i)
    yield f"{label}/templates/{label}/item.html", item_template(app)


def all_files() -> Iterator[tuple[str, str]]:
    yield "__init__.py", '"""Generated shop departments: see monolith/generate.py."""\n'
    for app in range(APPS):
        yield from app_files(app)


def source_hash() -> str:
    """A digest of the tree this generator writes (not of its source: reformatting this file
    must not make every server regenerate)."""
    digest = hashlib.sha256()
    for rel, text in all_files():
        digest.update(f"{rel}\0{text}\0".encode())
    return digest.hexdigest()[:16]


def is_current(target: Path = TARGET) -> bool:
    try:
        return (target / STAMP).read_text() == source_hash()
    except OSError:
        return False


def write_tree(dest: Path) -> None:
    for rel, text in all_files():
        path = dest / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    (dest / STAMP).write_text(source_hash())


def ensure_generated(target: Path = TARGET) -> bool:
    """Write ``target`` unless it is current; True when this call wrote it."""
    if is_current(target):
        return False
    tmp = target.with_name(f"{target.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    write_tree(tmp)
    if target.exists():  # stale: move it aside first (rename is atomic, rmtree is not)
        old = target.with_name(f"{target.name}.old-{os.getpid()}")
        try:
            target.rename(old)
        except OSError:
            pass  # another process replaced it at the same moment
        shutil.rmtree(old, ignore_errors=True)
    try:
        tmp.rename(target)
    except OSError:  # another process published first; its tree is identical
        shutil.rmtree(tmp, ignore_errors=True)
        return False
    return True


def app_modules() -> list[str]:
    return [f"shopapps.{app_label(a)}" for a in range(APPS)]


if __name__ == "__main__":
    wrote = ensure_generated()
    print(f"{TARGET}: {'written' if wrote else 'already current'} ({APPS} apps x {MODELS} models)")
