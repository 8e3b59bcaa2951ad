"""The REST endpoints of budgets, rate limits, prices, the request log and usage."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import QuerySet
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.utils import extend_schema
from rest_framework import mixins
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import BaseSerializer

from governance import services
from governance.api import serializers as s
from governance.api.filters import RequestRecordFilter, usage_points
from governance.models import (
    Budget,
    BudgetPeriodHistory,
    GuardrailPolicy,
    ModelPrice,
    RateLimit,
    RequestRecord,
    UsageRollup,
)
from governance.selectors import usage_group_labels
from keys.access import request_access
from keys.api.pagination import CursorPages
from keys.api.viewsets import CrudViewSet, ReadOnlyScopedViewSet, ScopedViewSet


class OwnedViewSet(CrudViewSet):
    """Budgets and limits: a team manager creates them for their teams and keys only."""

    def owner_of(self, data: dict[str, Any]) -> Any:
        return s.OwnedSerializer.owner(data)


class BudgetViewSet(OwnedViewSet):
    """Spending caps per period on a customer, a team or a key (amounts in micro-units)."""

    queryset = Budget.objects.select_related("customer", "team", "virtual_key")
    serializer_class = s.BudgetSerializer
    filterset_fields = ("customer", "team", "virtual_key", "period")
    ordering_fields = ("id", "amount_micros")

    def create_object(self, data: dict[str, Any]) -> Budget:
        return services.budget_create(owner=self.owner_of(data), **s.OwnedSerializer.settings(data))

    def update_object(self, instance: Budget, data: dict[str, Any]) -> Budget:
        amount = data.get("amount_micros", instance.amount_micros)
        return services.budget_update(budget=instance, amount_micros=amount)

    def delete_object(self, instance: Budget) -> None:
        services.budget_delete(budget=instance)


class GuardrailPolicyViewSet(CrudViewSet):
    """What the guardrails check and do, globally or for a customer, team or key.

    Compliance rules: admins change them, viewers read them.
    """

    queryset = GuardrailPolicy.objects.select_related("customer", "team", "virtual_key")
    serializer_class = s.GuardrailPolicySerializer
    filterset_fields = ("customer", "team", "virtual_key", "direction", "is_active")
    ordering_fields = ("id", "name")

    def create_object(self, data: dict[str, Any]) -> GuardrailPolicy:
        owners = [data[name] for name in s.OWNER_FIELDS if data.get(name) is not None]
        rules = {name: value for name, value in data.items() if name not in s.OWNER_FIELDS}
        return services.guardrail_policy_create(owner=owners[0] if owners else None, **rules)

    def update_object(self, instance: GuardrailPolicy, data: dict[str, Any]) -> GuardrailPolicy:
        return services.guardrail_policy_update(policy=instance, **data)

    def delete_object(self, instance: GuardrailPolicy) -> None:
        services.guardrail_policy_delete(policy=instance)


class RateLimitViewSet(OwnedViewSet):
    """Requests or tokens per window on a customer, a team or a key."""

    queryset = RateLimit.objects.select_related("customer", "team", "virtual_key")
    serializer_class = s.RateLimitSerializer
    filterset_fields = ("customer", "team", "virtual_key", "metric")
    ordering_fields = ("id", "limit")

    def create_object(self, data: dict[str, Any]) -> RateLimit:
        return services.rate_limit_create(
            owner=self.owner_of(data), **s.OwnedSerializer.settings(data)
        )

    def update_object(self, instance: RateLimit, data: dict[str, Any]) -> RateLimit:
        limit = data.get("limit", instance.limit)
        return services.rate_limit_update(rate_limit=instance, limit=limit)

    def delete_object(self, instance: RateLimit) -> None:
        services.rate_limit_delete(rate_limit=instance)


class ModelPriceViewSet(CrudViewSet):
    """Prices per million tokens (micro-units) of a model, from a date."""

    queryset = ModelPrice.objects.all()
    serializer_class = s.ModelPriceSerializer
    filterset_fields = ("provider_kind", "model")
    ordering_fields = ("provider_kind", "model", "effective_from")

    def create_object(self, data: dict[str, Any]) -> ModelPrice:
        price, _ = services.model_price_set(**data)
        return price

    def update_object(self, instance: ModelPrice, data: dict[str, Any]) -> ModelPrice:
        values = {name: getattr(instance, name) for name in s.ModelPriceSerializer.Meta.fields}
        values.update(data)
        fields = set(s.ModelPriceSerializer.Meta.fields) - {"id", *s.TIMESTAMPS}
        price, _ = services.model_price_set(**{name: values[name] for name in fields})
        return price

    def delete_object(self, instance: ModelPrice) -> None:
        services.model_price_delete(price=instance)


class RequestLogPagination(CursorPages):
    ordering = ("-time", "-id")


class RequestLogViewSet(ReadOnlyScopedViewSet):
    """The request log (usage ledger): one record per inference request, newest first."""

    queryset = RequestRecord.objects.all()
    serializer_class = s.RequestRecordSerializer
    pagination_class = RequestLogPagination
    filterset_class = RequestRecordFilter
    ordering_fields = ("time", "latency_ms", "cost_micros")

    def get_queryset(self) -> QuerySet[RequestRecord]:
        records = super().get_queryset()
        # Content is read for one record at a time, never for a page of them.
        return records if self.action == "retrieve" else records.defer("content")

    def get_serializer_class(self) -> type[BaseSerializer]:
        if self.action == "retrieve":
            return s.RequestRecordDetailSerializer
        return s.RequestRecordSerializer


class BudgetPeriodViewSet(mixins.ListModelMixin, ScopedViewSet):
    """Finished budget periods: limit, spend per the request log, the live counter's final
    value and whether they agreed (``governance.budget_periods``). Read-only, newest first."""

    queryset = BudgetPeriodHistory.objects.all()
    serializer_class = s.BudgetPeriodHistorySerializer
    filterset_fields = ("budget", "reconciliation")
    ordering_fields = ("period_start", "id")
    ordering = ("-period_start", "-id")


# The most points one usage answer holds (a year of days for a dozen groups).
MAX_USAGE_POINTS = 5000


class UsageViewSet(ScopedViewSet):
    """Aggregates of the request log by hour or day and by key, team, customer, provider, model.

    Takes the request log's filters (time range, key, team...) to choose the
    records, and sees only the records the operator may see.
    """

    queryset = RequestRecord.objects.all()
    filter_backends = [DjangoFilterBackend]  # points come in time order; no ``ordering``
    filterset_class = RequestRecordFilter
    serializer_class = s.UsageSerializer
    pagination_class = None

    @extend_schema(parameters=[s.UsageQuerySerializer], responses={200: s.UsageSerializer})
    def list(self, request: Request) -> Response:
        query = s.UsageQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        bucket = query.validated_data["bucket"]
        group_by = query.validated_data.get("group_by")
        try:
            points, source = usage_points(
                data=request.query_params,
                records=self.get_queryset(),
                rollups=request_access(request).scope(UsageRollup.objects.all()),
                bucket=None if bucket == "total" else bucket,
                group_by=group_by,
                percentiles=query.validated_data["percentiles"],
            )
        except DjangoValidationError as exc:
            raise ValidationError(exc.message_dict) from None
        if len(points) > MAX_USAGE_POINTS:
            raise ValidationError(
                {
                    "bucket": [
                        f"This query has {len(points)} points, more than {MAX_USAGE_POINTS}: "
                        "narrow the time range (since, until), choose a coarser bucket, "
                        "or group by less."
                    ]
                }
            )
        labels = usage_group_labels(group_by, [p.group for p in points]) if group_by else {}
        results = [
            {**asdict(p), "total_tokens": p.total_tokens, "group_label": labels.get(p.group)}
            for p in points
        ]
        body = {"bucket": bucket, "group_by": group_by, "source": source, "results": results}
        return Response(s.UsageSerializer(body).data)
