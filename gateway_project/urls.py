"""URLs served by Django: console, admin, REST API, probes, metrics."""

from django.contrib import admin
from django.urls import include, path, re_path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.permissions import AllowAny

from gateway_project import health
from keys.api.errors import api_not_found

# The REST management API: each app's ``api/urls.py`` under one version prefix.
api_v1 = [
    path("", include("keys.api.urls")),
    path("", include("governance.api.urls")),
    path("", include("audit.api.urls")),
]

admin.site.site_header = "AI Gateway"
admin.site.site_title = "AI Gateway console"
admin.site.index_title = "Administration"

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="admin:index", permanent=False)),
    path("admin/", admin.site.urls),
    path("audit/", include("audit.urls")),
    path("api/v1/", include(api_v1)),
    # The schema describes the API, it holds no data: readable without signing in.
    path(
        "api/schema/", SpectacularAPIView.as_view(permission_classes=[AllowAny]), name="api-schema"
    ),
    path(
        "api/docs/",
        SpectacularSwaggerView.as_view(url_name="api-schema", permission_classes=[AllowAny]),
        name="api-docs",
    ),
    re_path(r"^api/", api_not_found),
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("", include("django_prometheus.urls")),
]
