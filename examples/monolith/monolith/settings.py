"""Settings of the reference monolith.

The generated departments (``shopapps.appNN``) are written on first import by
``monolith.generate`` so that ``INSTALLED_APPS`` can name them. The database is an in-memory
SQLite that no benchmark request touches: per-request work is pure Python, so a benchmark
measures the server and the heap rather than a database. ``DEBUG`` is off, which makes Django
use the cached template loader (templates compiled once, then kept on the heap).
"""

from __future__ import annotations

from pathlib import Path

from monolith.generate import app_modules, ensure_generated

ensure_generated()

BASE_DIR = Path(__file__).resolve().parent
SECRET_KEY = "corral-monolith-benchmark-not-secret"  # a local benchmark app
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "[::1]"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "monolith",
    *app_modules(),
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "monolith.urls"
WSGI_APPLICATION = "monolith.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
LOGGING_CONFIG = None  # leave the server's logging alone
