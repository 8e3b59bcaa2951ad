"""The console's URLs for identities and credentials (under ``/console/``)."""

from django.urls import path

from keys import views

app_name = "keys"

urlpatterns = [
    *views.customers.urls(),
    *views.teams.urls(),
    *views.providers.urls(),
    *views.routes.urls(),
    path("keys/", views.key_list, name="key_list"),
    path("keys/new", views.key_new, name="key_new"),
    path("keys/<int:pk>/", views.key_detail, name="key_detail"),
    path("keys/<int:pk>/revoke", views.key_revoke, name="key_revoke"),
    path("keys/<int:pk>/rotate", views.key_rotate, name="key_rotate"),
    path("providers/<int:pk>/keys/", views.provider_keys, name="provider_keys"),
    path("providers/<int:pk>/keys/new", views.provider_key_new, name="provider_key_new"),
    path(
        "providers/<int:pk>/keys/<int:key_pk>/",
        views.provider_key_edit,
        name="provider_key_edit",
    ),
    path(
        "providers/<int:pk>/keys/<int:key_pk>/delete",
        views.provider_key_delete,
        name="provider_key_delete",
    ),
]
