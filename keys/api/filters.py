"""Filter pieces every app's API shares."""

from __future__ import annotations

import datetime as dt
from typing import Any

import django_filters
from django.core.exceptions import ValidationError
from django_filters.fields import IsoDateTimeField


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
