"""Filters of the request log, shared by its list and the usage aggregates."""

from __future__ import annotations

import django_filters
from django.db.models import Q, QuerySet

from governance.models import RequestRecord
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
