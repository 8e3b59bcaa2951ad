"""What the API shows and accepts for budgets, rate limits, prices, the log and usage."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from governance.models import (
    Budget,
    BudgetPeriodHistory,
    GuardrailPolicy,
    ModelPrice,
    RateLimit,
    RequestRecord,
)
from governance.selectors import USAGE_BUCKETS, USAGE_GROUPS
from keys.api.fields import ApiModelSerializer

OWNER_FIELDS = ("customer", "team", "virtual_key")
TIMESTAMPS = ("created_at", "updated_at")


class OwnedSerializer(ApiModelSerializer):
    """Attached to exactly one of a customer, a team or a virtual key, fixed at creation."""

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if self.instance is None:
            given = [name for name in OWNER_FIELDS if attrs.get(name) is not None]
            if len(given) != 1:
                raise serializers.ValidationError(
                    "Attach it to exactly one of customer, team or virtual_key."
                )
        return attrs

    @staticmethod
    def owner(attrs: dict[str, Any]) -> Any:
        """The customer, team or key of validated creation data."""
        return next(attrs[name] for name in OWNER_FIELDS if attrs.get(name) is not None)

    @staticmethod
    def settings(attrs: dict[str, Any]) -> dict[str, Any]:
        """Validated data without its owner."""
        return {name: value for name, value in attrs.items() if name not in OWNER_FIELDS}


class BudgetSerializer(OwnedSerializer):
    class Meta:
        model = Budget
        fields = (
            "id",
            *OWNER_FIELDS,
            "amount_micros",
            "period",
            "calendar_aligned",
            "anchor",
            *TIMESTAMPS,
        )
        extra_kwargs = {"anchor": {"required": False}}
        create_only_fields = (*OWNER_FIELDS, "period", "calendar_aligned", "anchor")


class GuardrailPolicySerializer(ApiModelSerializer):
    """Global (no owner) or attached to one customer, team or key, fixed at creation."""

    class Meta:
        model = GuardrailPolicy
        fields = (
            "id",
            "name",
            *OWNER_FIELDS,
            "direction",
            "detectors",
            "deny_patterns",
            "allow_patterns",
            "max_input_tokens",
            "max_messages",
            "is_active",
            *TIMESTAMPS,
        )
        create_only_fields = ("name", *OWNER_FIELDS)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if self.instance is None:
            given = [name for name in OWNER_FIELDS if attrs.get(name) is not None]
            if len(given) > 1:
                raise serializers.ValidationError(
                    "Attach it to at most one of customer, team or virtual_key (none: global)."
                )
        return attrs


class RateLimitSerializer(OwnedSerializer):
    class Meta:
        model = RateLimit
        fields = ("id", *OWNER_FIELDS, "metric", "limit", "window_seconds", *TIMESTAMPS)
        create_only_fields = (*OWNER_FIELDS, "metric", "window_seconds")


class ModelPriceSerializer(ApiModelSerializer):
    class Meta:
        model = ModelPrice
        fields = (
            "id",
            "provider_kind",
            "model",
            "input_micros_per_mtok",
            "output_micros_per_mtok",
            "cached_input_micros_per_mtok",
            "max_output_tokens",
            "effective_from",
            *TIMESTAMPS,
        )
        create_only_fields = ("provider_kind", "model", "effective_from")


class RequestRecordSerializer(serializers.ModelSerializer):
    """A record as the request log lists it: without message content."""

    class Meta:
        model = RequestRecord
        exclude = ("content",)
        read_only_fields = tuple(
            field.name for field in RequestRecord._meta.concrete_fields if field.name != "content"
        )


class RequestRecordDetailSerializer(RequestRecordSerializer):
    """One record, with its message content when its team keeps content (else null)."""

    class Meta:
        model = RequestRecord
        fields = "__all__"
        read_only_fields = tuple(field.name for field in RequestRecord._meta.concrete_fields)


class BudgetPeriodHistorySerializer(serializers.ModelSerializer):
    difference_micros = serializers.IntegerField(
        allow_null=True, help_text="the counter minus the request log (null without a counter)"
    )

    class Meta:
        model = BudgetPeriodHistory
        fields = (
            "id",
            "budget",
            "period_start",
            "period_end",
            "limit_micros",
            "spent_micros",
            "counter_micros",
            "difference_micros",
            "reconciliation",
            "requests",
            "closed_at",
        )
        read_only_fields = fields


class UsageQuerySerializer(serializers.Serializer):
    bucket = serializers.ChoiceField(
        choices=[*USAGE_BUCKETS, "total"],
        default="day",
        help_text="hour or day (UTC), or total for one point over the whole range",
    )
    group_by = serializers.ChoiceField(choices=list(USAGE_GROUPS), required=False)
    percentiles = serializers.BooleanField(
        default=True,
        help_text="false: sums only, latency percentiles null (a month split by key in "
        "milliseconds rather than seconds)",
    )


class UsagePointSerializer(serializers.Serializer):
    bucket = serializers.DateTimeField(allow_null=True)
    group = serializers.JSONField(allow_null=True, help_text="an id, a provider or a model name")
    group_label = serializers.CharField(allow_null=True)
    requests = serializers.IntegerField()
    errors = serializers.IntegerField()
    input_tokens = serializers.IntegerField()
    output_tokens = serializers.IntegerField()
    cached_tokens = serializers.IntegerField()
    total_tokens = serializers.IntegerField()
    cost_micros = serializers.IntegerField()
    latency_p50_ms = serializers.FloatField(allow_null=True)
    latency_p95_ms = serializers.FloatField(allow_null=True)
    latency_p99_ms = serializers.FloatField(allow_null=True)
    ttft_p50_ms = serializers.FloatField(allow_null=True, help_text="time to first token")
    ttft_p95_ms = serializers.FloatField(allow_null=True)
    ttft_p99_ms = serializers.FloatField(allow_null=True)


class UsageSerializer(serializers.Serializer):
    bucket = serializers.CharField()
    group_by = serializers.CharField(allow_null=True)
    source = serializers.ChoiceField(
        choices=["rollups", "records"],
        help_text="rollups (whole hours, as of the last rollup run) or the request log itself "
        "(a status filter, or a range not on the hour)",
    )
    results = UsagePointSerializer(many=True)
