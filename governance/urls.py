"""The console's URLs for usage, budgets, limits and prices (under ``/console/``)."""

from django.urls import path

from governance import views

app_name = "governance"

urlpatterns = [
    path("", views.home, name="dashboard"),
    path("requests/", views.request_log, name="request_log"),
    path("requests/<str:request_id>/", views.request_detail, name="request_detail"),
    path("live/", views.live, name="live"),
    path("settings/", views.runtime_settings, name="runtime_settings"),
    path("budgets/<int:pk>/periods/", views.budget_periods, name="budget_periods"),
    *views.budgets.urls(),
    *views.rate_limits.urls(),
    *views.prices.urls(),
    *views.guardrails.urls(),
]
