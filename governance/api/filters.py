"""Filters of the request log, shared by its list and the usage aggregates.

Usage is read from the rollups whenever the filters allow it
(:func:`usage_points`): whole hours, and no filter on the status.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import django_filters
from django.core.exceptions import ValidationError
from django.db.models import Q, QuerySet

from governance.models import RequestRecord, UsageRollup
from governance.selectors import (
    UsagePoint,
    rollup_granularity,
    usage_series,
    usage_series_from_rollups,
)
from keys.api.filters import UtcDateTimeFilter


class RequestRecordFilter(django_filters.FilterSet):
    """Time range (``since`` inclusive, ``until`` exclusive), owner, model, provider, status."""

    since = UtcDateTimeFilter(field_name="time", lookup_expr="gte")
    until = UtcDateTimeFilter(field_name="time", lookup_expr="lt")
    key = django_filters.NumberFilter(field_name="key_id")
    team = django_filters.NumberFilter(field_name="team_id")
    customer = django_filters.NumberFilter(field_name="customer_id")
    provider = django_filters.CharFilter(field_name="provider")
    model = django_filters.CharFilter(
        method="filter_model", help_text="the model asked for or the one that served"
    )
    status = django_filters.NumberFilter(field_name="status")
    errors = django_filters.BooleanFilter(
        method="filter_errors", help_text="only answers with a status of 400 or more (or none)"
    )

    class Meta:
        model = RequestRecord
        fields = ("since", "until", "key", "team", "customer", "provider", "model", "status")

    def filter_model(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        return queryset.filter(Q(requested_model=value) | Q(served_model=value))

    def filter_errors(self, queryset: QuerySet, name: str, value: bool) -> QuerySet:
        return queryset.filter(status__gte=400) if value else queryset.filter(status__lt=400)


class UsageRollupFilter(django_filters.FilterSet):
    """The request log's filters that rollups can answer: time, owner, model, provider."""

    since = UtcDateTimeFilter(field_name="bucket", lookup_expr="gte")
    until = UtcDateTimeFilter(field_name="bucket", lookup_expr="lt")
    key = django_filters.NumberFilter(field_name="key_id")
    team = django_filters.NumberFilter(field_name="team_id")
    customer = django_filters.NumberFilter(field_name="customer_id")
    provider = django_filters.CharFilter(field_name="provider")
    model = django_filters.CharFilter(method="filter_model")

    class Meta:
        model = UsageRollup
        fields = ("since", "until", "key", "team", "customer", "provider", "model")

    def filter_model(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        return queryset.filter(Q(requested_model=value) | Q(served_model=value))


ROLLUP_FILTERS = frozenset(UsageRollupFilter.base_filters)


def usage_points(
    *,
    data: Mapping[str, Any],
    records: QuerySet[RequestRecord],
    rollups: QuerySet[UsageRollup],
    bucket: str | None,
    group_by: str | None,
) -> tuple[list[UsagePoint], str]:
    """The usage series under the request log's filters ``data``, and where it came from.

    ``"rollups"`` when every filter is one rollups hold and the time range
    is whole hours; ``"records"`` (the request log itself) otherwise.
    ``records`` and ``rollups`` are what the operator may see. Raises
    ``ValidationError`` on filters that do not parse.
    """
    chosen = RequestRecordFilter(data=data, queryset=records)
    if not chosen.is_valid():
        raise ValidationError(chosen.errors)
    values = chosen.form.cleaned_data
    since, until = values.get("since"), values.get("until")
    used = {name for name, value in values.items() if value not in (None, "")}
    granularity = rollup_granularity(bucket, since, until)
    if granularity is not None and used <= ROLLUP_FILTERS:
        narrowed = UsageRollupFilter(data=data, queryset=rollups).qs
        points = usage_series_from_rollups(
            rollups=narrowed, granularity=granularity, bucket=bucket, group_by=group_by
        )
        return points, "rollups"
    return usage_series(records=chosen.qs, bucket=bucket, group_by=group_by), "records"
