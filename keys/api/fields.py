"""Serializer pieces every app's API shares: scoped references, create-only fields."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import FieldDoesNotExist
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

    # What an update that tries to change a fixed field is told, by field.
    fixed_field_hints: dict[str, str] = {}

    def get_fields(self) -> dict[str, serializers.Field]:
        fields = super().get_fields()
        for name in self._fixed_fields():
            if name in fields:
                fields[name].read_only = True
                fields[name].required = False
        return fields

    def _fixed_fields(self) -> dict[str, str]:
        """Fields this request may not set, with the reason."""
        fixed = {}
        if self.instance is not None:
            for name in getattr(self.Meta, "create_only_fields", ()):
                fixed[name] = self.fixed_field_hints.get(
                    name, "This field is set when the object is created and cannot change."
                )
        request = self.context.get("request")
        if request is not None:
            # Admin-only fields (keys.access.ADMIN_ONLY_FIELDS) are read-only to others.
            for name in request_access(request).fixed_fields(self.Meta.model):
                fixed[name] = "Only admins may set this field."
        return fixed

    def to_internal_value(self, data: Any) -> Any:
        values = super().to_internal_value(data)
        # A fixed field sent with a different value is refused, not ignored:
        # the caller would otherwise believe the change was made.
        if isinstance(data, dict):
            errors = {
                name: [reason]
                for name, reason in self._fixed_fields().items()
                if name in data and not self._unchanged(name, data[name])
            }
            if errors:
                raise serializers.ValidationError(errors)
        return values

    def _unchanged(self, name: str, value: Any) -> bool:
        """Whether ``value`` is what the object has (on creation: the field's default)."""
        field = self.fields.get(name)
        if field is None or field.write_only:
            return False
        try:
            if self.instance is None:
                model_field = self.Meta.model._meta.get_field(field.source)
                if not model_field.has_default():
                    return False
                current = model_field.get_default()
            else:
                current = field.get_attribute(self.instance)
            # (A relation reads as an object holding its id, which may be None.)
            shown = None if current is None else field.to_representation(current)
            if value is None or shown is None:
                return value is None and shown is None
            return field.to_representation(field.to_internal_value(value)) == shown
        except (serializers.ValidationError, TypeError, ValueError, FieldDoesNotExist):
            return False
