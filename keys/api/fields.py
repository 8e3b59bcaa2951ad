"""Serializer pieces every app's API shares: scoped references, create-only fields."""

from __future__ import annotations

from typing import Any

from django.db import models
from rest_framework import serializers

from keys.access import request_access


def _reject_nul(value: Any) -> None:
    # PostgreSQL cannot store U+0000 in text or jsonb; refuse it as input.
    if isinstance(value, str):
        if "\x00" in value:
            raise serializers.ValidationError("Null characters are not allowed.")
    elif isinstance(value, dict):
        for key, item in value.items():
            _reject_nul(key)
            _reject_nul(item)
    elif isinstance(value, list):
        for item in value:
            _reject_nul(item)


class JSONValueField(serializers.JSONField):
    """JSON that the database can store whatever the backend."""

    def to_internal_value(self, data: Any) -> Any:
        value = super().to_internal_value(data)
        _reject_nul(value)
        return value


class ScopedRelatedField(serializers.PrimaryKeyRelatedField):
    """A reference by id to an object the operator may see; others do not exist for them."""

    def get_queryset(self) -> models.QuerySet:
        queryset = super().get_queryset()
        request = self.context.get("request")
        return queryset if request is None else request_access(request).scope(queryset)


class ApiModelSerializer(serializers.ModelSerializer):
    """A model serializer whose ``Meta.create_only_fields`` are read-only once the object exists.

    Names identify objects (in the configuration file too) and do not change;
    nor do the owner or secret of some objects.
    """

    serializer_field_mapping = {
        **serializers.ModelSerializer.serializer_field_mapping,
        models.JSONField: JSONValueField,
    }
    serializer_related_field = ScopedRelatedField

    def get_fields(self) -> dict[str, serializers.Field]:
        fields = super().get_fields()
        if self.instance is not None:
            for name in getattr(self.Meta, "create_only_fields", ()):
                fields[name].read_only = True
                fields[name].required = False
        request = self.context.get("request")
        if request is not None:
            # Admin-only fields (keys.access.ADMIN_ONLY_FIELDS) are read-only to others.
            for name in request_access(request).fixed_fields(self.Meta.model):
                if name in fields:
                    fields[name].read_only = True
        return fields
