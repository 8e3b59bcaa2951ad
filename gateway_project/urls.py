"""URLs served by Django: console, admin, REST API, probes, metrics."""

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path, re_path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.permissions import AllowAny

from audit.urls import console_urlpatterns as audit_console
from gateway_project import health
from gateway_project.metrics import metrics_view
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
    path("", RedirectView.as_view(pattern_name="governance:dashboard", permanent=False)),
    path(
        "console/login/",
        auth_views.LoginView.as_view(template_name="console/login.html"),
        name="login",
    ),
    path("console/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("console/audit/", include(audit_console)),
    path("console/", include("governance.urls")),
    path("console/", include("keys.urls")),
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
    path("metrics", metrics_view, name="metrics"),
]
