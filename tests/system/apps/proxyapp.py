"""A one-file Django app that says what it sees of the request: is_secure(), the client
address, the host, an absolute URL (tests/system/test_proxy_system.py). ``/file`` serves a
file through ``wsgi.file_wrapper``; ``/big`` a large body in one piece."""

import hashlib
import os
from collections.abc import Callable, Iterable
from typing import IO, Any

from django.conf import settings

if not settings.configured:
    settings.configure(
        DEBUG=False,
        ALLOWED_HOSTS=["*"],
        ROOT_URLCONF=__name__,
        SECRET_KEY="proxyapp-test-only",
        MIDDLEWARE=[],
        INSTALLED_APPS=[],
    )

from django.core.wsgi import get_wsgi_application
from django.http import HttpRequest, JsonResponse
from django.urls import path

BIG = os.urandom(3 * 1024 * 1024 + 17)
BIG_SHA = hashlib.sha256(BIG).hexdigest()
FILE = os.environ.get("PROXYAPP_FILE", "")


def whoami(request: HttpRequest) -> JsonResponse:
    meta = request.META
    return JsonResponse(
        {
            "secure": request.is_secure(),
            "remote": meta["REMOTE_ADDR"],
            "remote_port": meta.get("REMOTE_PORT", ""),
            "host": request.get_host(),
            "url": request.build_absolute_uri("/x"),
            "server": [meta["SERVER_NAME"], meta["SERVER_PORT"]],
            "pid": os.getpid(),
            "big_sha": BIG_SHA,
        }
    )


urlpatterns = [path("", whoami)]
WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
django_app: WSGIApp = get_wsgi_application()


def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    if environ["PATH_INFO"] == "/file":
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        file_wrapper: Callable[[IO[bytes], int], Iterable[bytes]] = environ["wsgi.file_wrapper"]
        return file_wrapper(open(FILE, "rb"), 65536)
    if environ["PATH_INFO"] == "/big":
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return [BIG]
    return django_app(environ, start_response)
