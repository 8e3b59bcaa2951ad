"""URLs of the audit trail in the console."""

from django.urls import path

from audit import views

app_name = "audit"

urlpatterns = [
    path("export", views.audit_export, name="export"),
]
