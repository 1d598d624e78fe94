"""Root URLconf: the catalogue view, a health check, the admin, and every department."""

from __future__ import annotations

from django.contrib import admin  # type: ignore[import-untyped]
from django.urls import include, path  # type: ignore[import-untyped]

from monolith import views
from monolith.generate import APPS, app_label

urlpatterns = [
    path("", views.catalogue_page, name="catalogue"),
    path("catalogue/", views.catalogue_page, name="catalogue-page"),
    path("health", views.health, name="health"),
    path("admin/", admin.site.urls),
    *[path(f"shop/{app_label(a)}/", include(f"shopapps.{app_label(a)}.urls")) for a in range(APPS)],
]
