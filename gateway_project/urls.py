"""URLs served by Django: console, admin, probes, metrics."""

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from django.views.generic import RedirectView

from audit.urls import console_urlpatterns as audit_console
from gateway_project import health

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
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("", include("django_prometheus.urls")),
]
