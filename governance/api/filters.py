"""Filters of the request log, shared by its list and the usage aggregates.

Usage is read from the rollups whenever they hold the answer
(:func:`usage_points`): whole hours, a team and one other dimension.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import django_filters
from django.core.exceptions import ValidationError
from django.db.models import Q, QuerySet

from governance.models import RequestRecord, UsageRollup
from governance.rollups import rollup_cursor, rollups_snapshot
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


# Filters a rollup row can answer: the team, and the value of its dimension.
ROLLUP_DIMENSIONS = ("key", "customer", "provider")


def _rollups_for(
    values: dict[str, Any], group_by: str | None, rollups: QuerySet[UsageRollup]
) -> tuple[str, QuerySet[UsageRollup]] | None:
    """The dimension and the rows answering these filters and split, or None.

    Rollups hold each dimension per team: they answer a team filter plus at
    most one other dimension (filtered, split by, or both). The model
    filter matches the model asked for *or* the one that served, which
    rows keyed by one model name cannot tell apart: it reads the log.
    """
    used = {name for name, value in values.items() if value not in (None, "")}
    used -= {"since", "until"}
    if not used <= {"team", *ROLLUP_DIMENSIONS}:
        return None
    others = (used - {"team"}) | ({group_by} - {None, "team"})
    if len(others) > 1:
        return None
    dimension = others.pop() if others else "team"
    rows = rollups
    if values.get("team") is not None:
        rows = rows.filter(team_id=values["team"])
    wanted = values.get(dimension)
    if wanted not in (None, ""):
        if dimension != "provider":  # an id: rows hold it as digits
            if wanted != int(wanted):
                return None
            wanted = int(wanted)
        rows = rows.filter(value=str(wanted))
    if values.get("since") is not None:
        rows = rows.filter(bucket__gte=values["since"])
    if values.get("until") is not None:
        rows = rows.filter(bucket__lt=values["until"])
    return dimension, rows


def usage_points(
    *,
    data: Mapping[str, Any],
    records: QuerySet[RequestRecord],
    rollups: QuerySet[UsageRollup],
    bucket: str | None,
    group_by: str | None,
    percentiles: bool = True,
) -> tuple[list[UsagePoint], str]:
    """The usage series under the request log's filters ``data``, and where it came from.

    ``"rollups"`` when the rollups hold the answer (whole hours; the
    filters and split of :func:`_rollups_for`; plus the records inserted
    since the last rollup run), ``"records"`` (the request log itself)
    otherwise. ``records`` and ``rollups`` are what the
    operator may see. Raises ``ValidationError`` on filters that do not
    parse.
    """
    chosen = RequestRecordFilter(data=data, queryset=records)
    if not chosen.is_valid():
        raise ValidationError(chosen.errors)
    values = chosen.form.cleaned_data
    granularity = rollup_granularity(bucket, values.get("since"), values.get("until"))
    answer = _rollups_for(values, group_by, rollups) if granularity else None
    if granularity is not None and answer is not None:
        dimension, rows = answer
        with rollups_snapshot():  # the cursor, the rows and the records above it: one view
            points = usage_series_from_rollups(
                rollups=rows,
                dimension=dimension,
                granularity=granularity,
                bucket=bucket,
                group_by=group_by,
                recent=chosen.qs.filter(id__gt=rollup_cursor()),
                percentiles=percentiles,
                span=(values.get("since"), values.get("until")),
            )
        return points, "rollups"
    series = usage_series(
        records=chosen.qs, bucket=bucket, group_by=group_by, percentiles=percentiles
    )
    return series, "records"
