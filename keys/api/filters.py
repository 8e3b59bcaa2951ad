"""Filter pieces every app's API shares."""

from __future__ import annotations

import datetime as dt
from typing import Any

import django_filters
from django import forms
from django.core.exceptions import ValidationError
from django_filters.fields import IsoDateTimeField
from django_filters.rest_framework import DjangoFilterBackend


class UtcDateTimeField(IsoDateTimeField):
    """An ISO 8601 date-time, converted to UTC (the database may not take any offset)."""

    def to_python(self, value: Any) -> dt.datetime | None:
        try:
            parsed = super().to_python(value)
            return parsed.astimezone(dt.UTC) if parsed is not None else None
        except OverflowError:
            raise ValidationError("This date-time is out of range.", code="invalid") from None


class UtcDateTimeFilter(django_filters.IsoDateTimeFilter):
    """A time bound given in any offset, compared in UTC."""

    field_class = UtcDateTimeField


class IdFilter(django_filters.NumberFilter):
    """A related object named by its id, compared as a number.

    Django-filter's default for a foreign key checks that the object exists,
    which would tell a team manager whether another team's id exists (400)
    or not (an empty page); a plain comparison answers both with no rows.
    """

    field_class = forms.IntegerField

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # Ids are 64-bit integers; a larger number is a 400, not a database error.
        kwargs.setdefault("min_value", -(2**63))
        kwargs.setdefault("max_value", 2**63 - 1)
        super().__init__(*args, **kwargs)


class ApiFilterSet(django_filters.FilterSet):
    """The base of the API's generated filters: relations filter by id, unvalidated."""

    @classmethod
    def filter_for_lookup(cls, field: Any, lookup_type: str) -> tuple[type, dict[str, Any]]:
        if field.is_relation and lookup_type == "exact":
            return IdFilter, {}
        return super().filter_for_lookup(field, lookup_type)


class ApiFilterBackend(DjangoFilterBackend):
    """``DjangoFilterBackend`` generating its filter sets from ``ApiFilterSet``."""

    filterset_base = ApiFilterSet
