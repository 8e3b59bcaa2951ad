"""The audit trail in the console: read-only, for everyone, superusers included."""

from __future__ import annotations

import json
from typing import Any

from django.contrib import admin
from django.http import HttpRequest
from django.utils.html import format_html

from audit.models import AuditEvent


class ReadOnlyModelAdmin(admin.ModelAdmin):
    """An admin that shows records and never adds, edits or deletes them."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyModelAdmin):
    list_display = ("sequence", "time", "actor_name", "action", "object_type", "object_repr")
    list_filter = ("action", "actor_kind", "object_type")
    search_fields = ("actor_name", "object_repr", "object_id", "request_id")
    fields = (
        ("sequence", "time"),
        ("actor_kind", "actor_id", "actor_name"),
        ("action", "object_type", "object_id", "object_repr"),
        "before_json",
        "after_json",
        ("request_id", "client_ip"),
        "user_agent",
        "previous_hash",
        "hash",
    )
    readonly_fields = tuple(
        name for group in fields for name in (group if isinstance(group, tuple) else (group,))
    )

    @admin.display(description="before")
    def before_json(self, event: AuditEvent) -> str:
        return _pretty(event.before)

    @admin.display(description="after")
    def after_json(self, event: AuditEvent) -> str:
        return _pretty(event.after)


def _pretty(value: Any) -> str:
    if value is None:
        return "—"
    return format_html("<pre>{}</pre>", json.dumps(value, indent=2, sort_keys=True))
