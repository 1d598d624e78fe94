"""A realistic Django page for benchmarks/django_page.py: a template and four ORM queries on
sqlite, served through Django's own WSGI handler with its usual middleware.

The page lists the 20 newest books with their authors (one ``select_related`` join), counts
authors and books, and shows the five authors with the most books (an aggregate), rendered
from ``djpage/templates/page.html`` (about 3 KiB of HTML). ``DEBUG`` is off, as deployed.

The database is ``$DJPAGE_DB`` (default ``/tmp/corral-djpage.sqlite3``); importing this module
creates and fills it when the file is missing (``django_page.py`` does that once, before any
server starts, so workers only read it).
"""

from __future__ import annotations

import datetime
import os
from pathlib import Path

import django
from django.conf import settings

DB = os.environ.get("DJPAGE_DB", "/tmp/corral-djpage.sqlite3")
HERE = Path(__file__).resolve().parent

if not settings.configured:
    settings.configure(
        DEBUG=False,
        SECRET_KEY="corral-benchmark-only",
        ROOT_URLCONF=__name__,
        ALLOWED_HOSTS=["*"],
        INSTALLED_APPS=["djpage"],
        MIDDLEWARE=[
            "django.middleware.security.SecurityMiddleware",
            "django.middleware.common.CommonMiddleware",
            "django.middleware.clickjacking.XFrameOptionsMiddleware",
        ],
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": DB}},
        TEMPLATES=[
            {
                "BACKEND": "django.template.backends.django.DjangoTemplates",
                "DIRS": [str(HERE / "djpage" / "templates")],
            }
        ],
        USE_TZ=True,
    )
    django.setup()

from django.core.wsgi import get_wsgi_application  # noqa: E402
from django.db import connection  # noqa: E402
from django.db.models import Count  # noqa: E402
from django.http import HttpRequest, HttpResponse  # noqa: E402
from django.shortcuts import render  # noqa: E402
from django.urls import path  # noqa: E402
from djpage.models import Author, Book  # noqa: E402

COUNTRIES = ["Ireland", "Chile", "Japan", "Nigeria", "Norway", "Peru", "India", "Canada"]


def create() -> None:
    """Tables and rows: 50 authors, 1,000 books (deterministic)."""
    with connection.schema_editor() as editor:
        editor.create_model(Author)
        editor.create_model(Book)
    authors = Author.objects.bulk_create(
        Author(name=f"Author {i}", country=COUNTRIES[i % len(COUNTRIES)]) for i in range(50)
    )
    start = datetime.date(1990, 1, 1)
    Book.objects.bulk_create(
        Book(
            title=f"the book of {i} things",
            author=authors[(i * 7) % len(authors)],
            published=start + datetime.timedelta(days=(i * 37) % 12000),
            pages=100 + (i * 13) % 600,
        )
        for i in range(1000)
    )


def page(request: HttpRequest) -> HttpResponse:
    books = list(Book.objects.select_related("author").order_by("-published", "id")[:20])
    prolific = Author.objects.annotate(n=Count("books")).order_by("-n", "id")[:5]
    context = {
        "title": "The newest books",
        "books": books,
        "author_count": Author.objects.count(),
        "book_count": Book.objects.count(),
        "prolific": prolific,
    }
    return render(request, "page.html", context)


urlpatterns = [path("", page)]

if not os.path.exists(DB):
    create()

application = app = get_wsgi_application()
