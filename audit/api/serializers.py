"""The audit trail as the API shows it: every field, nothing writable."""

from __future__ import annotations

from rest_framework import serializers

from audit.export import COLUMNS, CONTENT_TYPES
from audit.models import AuditEvent


class AuditEventSerializer(serializers.ModelSerializer):
    class Meta:
        model = AuditEvent
        fields = ("id", *COLUMNS)  # what an export holds, hashes included
        read_only_fields = fields


class ExportQuerySerializer(serializers.Serializer):
    output = serializers.ChoiceField(
        choices=list(CONTENT_TYPES), default="jsonl", help_text="jsonl or csv"
    )
