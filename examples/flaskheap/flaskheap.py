"""A Flask app with a large preloaded heap: the second app of the copy-on-write benchmark.

Theory of operation. Unlike the Django monolith (framework state dominates: models, admin, URL
patterns, compiled templates), this app's heap is mostly *data* built at import, the shape of
a service that loads a social graph and a gazetteer into memory and answers read-only queries:

* ``USERS``: plain dicts (JSON-shaped records) with unique strings, lists of friend ids, nested
  dicts of settings;
* ``PLACES``: a ``NamedTuple`` per place with floats and interned country codes;
* ``BY_HANDLE`` and ``BY_COUNTRY``: indexes pointing back into those.

Templates are compiled at import (``app.jinja_env.get_template``) so that preloading shares them.
Routes read across the heap: ``/users`` (random users, their friends and their places, rendered
through Jinja), ``/nearby`` (a scan of one country's places), ``/health``.
Deterministic (seeded ``random.Random``); ``FLASKHEAP_USERS`` sets the size (default
``DEFAULT_USERS``: about 170 MB of heap in all).
"""

from __future__ import annotations

import os
import random
from typing import Any, NamedTuple

from flask import Flask, render_template, request

DEFAULT_USERS = 90_000
PLACES_COUNT = 150_000
COUNTRIES = ("FR", "DE", "IT", "ES", "NL", "PL", "SE", "PT", "IE", "AT", "BE", "CZ")
LETTERS = "abcdefghijklmnopqrstuvwxyz"


class Place(NamedTuple):
    id: int
    name: str
    country: str
    lat: float
    lon: float
    population: int


def _name(rng: random.Random, low: int, high: int) -> str:
    return "".join(rng.choices(LETTERS, k=rng.randint(low, high))).capitalize()


def make_places(rng: random.Random, count: int) -> list[Place]:
    return [
        Place(
            i,
            _name(rng, 5, 12),
            rng.choice(COUNTRIES),
            rng.uniform(35, 70),
            rng.uniform(-10, 30),
            rng.randint(100, 2_000_000),
        )
        for i in range(count)
    ]


def make_user(rng: random.Random, uid: int, users: int, vocab: list[str]) -> dict[str, Any]:
    first, last = _name(rng, 3, 8), _name(rng, 4, 10)
    return {
        "id": uid,
        "handle": f"{first.lower()}.{last.lower()}{uid}",
        "name": f"{first} {last}",
        "bio": " ".join(rng.choices(vocab, k=rng.randint(8, 20))),
        "place": rng.randrange(PLACES_COUNT),
        "friends": rng.choices(range(users), k=rng.randint(5, 25)),
        "score": rng.random() * 100,
        "settings": {"lang": rng.choice(("en", "fr", "de")), "dark": rng.random() < 0.4},
    }


def _user_count() -> int:
    return int(os.environ.get("FLASKHEAP_USERS", DEFAULT_USERS))


_rng = random.Random(683)
PLACES = make_places(_rng, PLACES_COUNT)
VOCABULARY = [_name(_rng, 2, 9).lower() for _ in range(20_000)]
USERS = [make_user(_rng, i, _user_count(), VOCABULARY) for i in range(_user_count())]
BY_HANDLE = {u["handle"]: u for u in USERS}
BY_COUNTRY: dict[str, list[Place]] = {c: [] for c in COUNTRIES}
for _place in PLACES:
    BY_COUNTRY[_place.country].append(_place)
del _rng, _place

app = Flask(__name__)
TEMPLATES = ("base.html", "users.html", "nearby.html")
for _template in TEMPLATES:  # compile now, in the preloading process
    app.jinja_env.get_template(_template)
_rngs: dict[int, random.Random] = {}


def _proc_rng() -> random.Random:
    """One generator per process, so that forked workers do not all draw the same users."""
    pid = os.getpid()
    if pid not in _rngs:
        _rngs[pid] = random.Random(pid)
    return _rngs[pid]


def _view(user: dict[str, Any]) -> dict[str, Any]:
    friends = [USERS[f] for f in user["friends"]]
    return {
        "user": user,
        "place": PLACES[user["place"]],
        "friends": sorted(friends, key=lambda f: f["score"], reverse=True)[:3],
        "reach": sum(len(f["friends"]) for f in friends),
    }


@app.route("/users")
def users() -> str:
    n = max(1, min(200, request.args.get("n", 20, type=int)))
    rng = _proc_rng()
    views = [_view(USERS[rng.randrange(len(USERS))]) for _ in range(n)]
    return render_template("users.html", views=views[:3], looked_up=n)


@app.route("/nearby")
def nearby() -> str:
    rng = _proc_rng()
    country = rng.choice(COUNTRIES)
    lat = rng.uniform(40, 65)
    places = [p for p in BY_COUNTRY[country] if abs(p.lat - lat) < 0.05]
    return render_template("nearby.html", country=country, places=places[:10], total=len(places))


@app.route("/health")
def health() -> tuple[str, int, dict[str, str]]:
    return "ok\n", 200, {"Content-Type": "text/plain"}
