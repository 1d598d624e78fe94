"""The monolith's in-memory data: a product catalogue and the caches built around it at import.

Theory of operation. Monoliths keep a lot of data on the heap that they load once and only read:
product catalogues, feature-flag tables, translation strings, search indexes. It is the part of
the preloaded heap that a prefork server most hopes to keep shared, and every request *reads* it,
which on CPython writes reference counts and so copies the pages it sits on. The mix here is the
usual one: class instances with a ``__dict__``, unique strings (titles, descriptions), interned
short strings (tags, attribute values), floats, small dicts, lists of tuples (price history),
nested lists of dicts (reviews), and indexes that point back into the catalogue.

Everything is deterministic (a seeded ``random.Random``), so every process that builds it (a
server that loads the app per worker) builds the same thing. ``MONOLITH_PRODUCTS`` sets the
catalogue size (default ``DEFAULT_PRODUCTS``, about 150 MB of heap with the indexes).
"""

from __future__ import annotations

import os
import random
from decimal import Decimal

DEFAULT_PRODUCTS = 40_000
DEPARTMENTS = 40
LANGUAGES = ("en", "fr", "de", "it", "es", "nl")
WAREHOUSES = ("north", "south", "east", "west", "central")
COLOURS = ("red", "blue", "sand", "moss", "ink", "snow", "rust", "teal")
MATERIALS = ("oak", "steel", "wool", "linen", "glass", "cork", "clay", "hemp")
ORIGINS = ("FR", "DE", "IT", "ES", "NL", "PL")
SYLLABLES = (
    "ka", "ro", "mi", "tel", "san", "dor", "vi", "lu", "pen", "qua", "zo", "rim", "ash", "ber",
    "cal", "den", "fio", "gar", "hul", "jin", "kor", "lem", "mar", "nev", "ost", "pra", "sil",
)  # fmt: skip


class Product:
    """One catalogue entry: a plain class with a ``__dict__``, as ORMs and DTO layers produce."""

    def __init__(
        self,
        pid: int,
        rng: random.Random,
        words: list[str],
        tags: list[str],
    ) -> None:
        self.id = pid
        self.app = pid % DEPARTMENTS
        self.sku = f"SKU-{self.app:02d}-{pid:08d}"
        self.title = " ".join(rng.choice(words) for _ in range(rng.randint(3, 6))).title()
        self.description = " ".join(rng.choice(words) for _ in range(rng.randint(18, 36)))
        self.price = round(rng.uniform(2.0, 900.0), 2)
        self.list_price = Decimal(f"{self.price * 1.2:.2f}")
        self.currency = "EUR"
        self.rating = round(rng.uniform(1.0, 5.0), 1)
        self.tags = rng.sample(tags, rng.randint(2, 6))
        self.attributes = {
            "colour": rng.choice(COLOURS),
            "material": rng.choice(MATERIALS),
            "origin": rng.choice(ORIGINS),
            "size": rng.choice(("XS", "S", "M", "L", "XL")),
            "weight_g": rng.randint(50, 9000),
        }
        self.stock = {w: rng.randint(0, 400) for w in WAREHOUSES}
        self.price_history = [
            (f"2026-{m:02d}-01", round(self.price * rng.uniform(0.8, 1.2), 2)) for m in range(1, 9)
        ]
        self.related = tuple(rng.randrange(pid + 1) for _ in range(4))
        self.reviews = [
            {"author": rng.choice(words), "stars": rng.randint(1, 5), "text": rng.choice(words)}
            for _ in range(rng.randint(0, 3))
        ]


def make_words(rng: random.Random, count: int) -> list[str]:
    words = {
        "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 4))) for _ in range(count * 2)
    }
    return sorted(words)[:count]


def build_search_index(products: list[Product]) -> dict[str, list[int]]:
    index: dict[str, list[int]] = {}
    for p in products:
        for word in p.title.lower().split():
            index.setdefault(word, []).append(p.id)
    return index


def build_translations(rng: random.Random, words: list[str]) -> dict[tuple[str, str], str]:
    keys = [f"msg.{w}.{i}" for i, w in enumerate(words[:6000])]
    return {
        (lang, key): f"[{lang}] " + " ".join(rng.choice(words) for _ in range(6))
        for lang in LANGUAGES
        for key in keys
    }


def _product_count() -> int:
    return int(os.environ.get("MONOLITH_PRODUCTS", DEFAULT_PRODUCTS))


_rng = random.Random(2017)
WORDS = make_words(_rng, 12_000)
TAGS = [f"tag-{w}" for w in WORDS[:400]]
PRODUCTS = [Product(i, _rng, WORDS, TAGS) for i in range(_product_count())]
BY_SKU = {p.sku: p for p in PRODUCTS}
BY_DEPARTMENT = [[p.id for p in PRODUCTS if p.app == d] for d in range(DEPARTMENTS)]
SEARCH_INDEX = build_search_index(PRODUCTS)
TRANSLATIONS = build_translations(_rng, WORDS)
del _rng


def department_sample(app: int, count: int) -> list[Product]:
    """The first ``count`` products of a department (deterministic; used by per-app views)."""
    return [PRODUCTS[i] for i in BY_DEPARTMENT[app % DEPARTMENTS][:count]]
