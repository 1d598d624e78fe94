"""A Django project in one module, served through Django's own ASGI handler: an async view,
a sync view (run in Django's thread), a POST read with request.body, and is_secure()."""

from __future__ import annotations

import asyncio
import os

import django
from django.conf import settings

if not settings.configured:
    settings.configure(
        DEBUG=False,
        SECRET_KEY="corral-test-only",
        ROOT_URLCONF=__name__,
        ALLOWED_HOSTS=["*"],
        MIDDLEWARE=[],
        INSTALLED_APPS=[],
        USE_TZ=True,
    )
    django.setup()

from django.core.asgi import get_asgi_application
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import path


async def async_view(request: HttpRequest) -> JsonResponse:
    await asyncio.sleep(0)
    return JsonResponse({"async": True, "path": request.path, "pid": os.getpid()})


def sync_view(request: HttpRequest) -> HttpResponse:
    return HttpResponse(f"sync {request.method} secure={request.is_secure()}")


async def upload(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"size": len(request.body)})


urlpatterns = [
    path("async/", async_view),
    path("sync/", sync_view),
    path("upload/", upload),
]

application = get_asgi_application()
