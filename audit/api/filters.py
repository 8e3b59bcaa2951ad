"""Filters of the audit trail: time, actor and object."""

from __future__ import annotations

import django_filters

from audit.models import ActorKind, AuditEvent
from keys.api.filters import UtcDateTimeFilter


class AuditEventFilter(django_filters.FilterSet):
    """``since`` inclusive, ``until`` exclusive; the actor by name or kind; the object."""

    since = UtcDateTimeFilter(field_name="time", lookup_expr="gte")
    until = UtcDateTimeFilter(field_name="time", lookup_expr="lt")
    actor = django_filters.CharFilter(field_name="actor_name")
    actor_kind = django_filters.ChoiceFilter(choices=ActorKind.choices)
    action = django_filters.CharFilter()
    object_type = django_filters.CharFilter(help_text="e.g. keys.virtualkey")
    object_id = django_filters.CharFilter()
    request_id = django_filters.CharFilter()

    class Meta:
        model = AuditEvent
        fields = (
            "since",
            "until",
            "actor",
            "actor_kind",
            "action",
            "object_type",
            "object_id",
            "request_id",
        )
