"""URLs of the audit trail: the console's pages and the export."""

from django.urls import path

from audit import views

app_name = "audit"

urlpatterns = [
    path("export", views.audit_export, name="export"),
]

# Under /console/audit/, in the namespace "audit_console".
console_urlpatterns = (
    [
        path("", views.audit_trail, name="trail"),
        path("<int:sequence>/", views.audit_event_detail, name="event"),
    ],
    "audit_console",
)
