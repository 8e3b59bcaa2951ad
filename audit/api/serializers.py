"""The audit trail as the API shows it: every field, nothing writable."""

from __future__ import annotations

from rest_framework import serializers

from audit.export import CONTENT_TYPES
from audit.models import AuditEvent


class AuditEventSerializer(serializers.ModelSerializer):
    class Meta:
        model = AuditEvent
        fields = (
            "id",
            "sequence",
            "time",
            "actor_kind",
            "actor_id",
            "actor_name",
            "action",
            "object_type",
            "object_id",
            "object_repr",
            "before",
            "after",
            "request_id",
            "client_ip",
            "user_agent",
            "previous_hash",
            "hash",
        )
        read_only_fields = fields


class ExportQuerySerializer(serializers.Serializer):
    output = serializers.ChoiceField(
        choices=list(CONTENT_TYPES), default="jsonl", help_text="jsonl or csv"
    )
