"""URLs served by Django: console, admin, probes, metrics."""

from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

from gateway_project import health
from gateway_project.metrics import metrics_view

admin.site.site_header = "AI Gateway"
admin.site.site_title = "AI Gateway console"
admin.site.index_title = "Administration"

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="admin:index", permanent=False)),
    path("admin/", admin.site.urls),
    path("audit/", include("audit.urls")),
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", metrics_view, name="metrics"),
]
