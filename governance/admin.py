"""Admin pages for budgets, rate limits, guardrail policies and prices (saves go
through services)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from audit.admin import ReadOnlyModelAdmin
from governance import services
from governance.models import Budget, GuardrailPolicy, ModelPrice, RateLimit, RequestRecord


class ScopedAdmin(admin.ModelAdmin):
    list_select_related = ("customer", "team", "virtual_key")

    @admin.display(description="applies to")
    def applies_to(self, obj: Any) -> str:
        return obj.scope_label

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        self.delete_one(obj)

    def delete_queryset(self, request: HttpRequest, queryset: Any) -> None:
        for obj in queryset:
            self.delete_one(obj)

    def delete_one(self, obj: Any) -> None:
        raise NotImplementedError


@admin.register(Budget)
class BudgetAdmin(ScopedAdmin):
    list_display = ("applies_to", "amount_micros", "period", "calendar_aligned")
    list_filter = ("period",)
    fields = (
        "customer",
        "team",
        "virtual_key",
        "amount_micros",
        "period",
        "calendar_aligned",
        "anchor",
    )

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        fixed = ("customer", "team", "virtual_key", "period", "calendar_aligned", "anchor")
        return fixed if obj else ()

    def save_model(self, request: HttpRequest, obj: Budget, form: Any, change: bool) -> None:
        if change:
            services.budget_update(
                budget=Budget.objects.get(pk=obj.pk), amount_micros=obj.amount_micros
            )
        else:
            created = services.budget_create(
                owner=obj.customer or obj.team or obj.virtual_key,
                amount_micros=obj.amount_micros,
                period=obj.period,
                calendar_aligned=obj.calendar_aligned,
                anchor=obj.anchor,
            )
            obj.pk = created.pk

    def delete_one(self, obj: Budget) -> None:
        services.budget_delete(budget=obj)


@admin.register(RateLimit)
class RateLimitAdmin(ScopedAdmin):
    list_display = ("applies_to", "metric", "limit", "window_seconds")
    list_filter = ("metric",)
    fields = ("customer", "team", "virtual_key", "metric", "limit", "window_seconds")

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        fixed = ("customer", "team", "virtual_key", "metric", "window_seconds")
        return fixed if obj else ()

    def save_model(self, request: HttpRequest, obj: RateLimit, form: Any, change: bool) -> None:
        if change:
            services.rate_limit_update(rate_limit=RateLimit.objects.get(pk=obj.pk), limit=obj.limit)
        else:
            created = services.rate_limit_create(
                owner=obj.customer or obj.team or obj.virtual_key,
                metric=obj.metric,
                limit=obj.limit,
                window_seconds=obj.window_seconds,
            )
            obj.pk = created.pk

    def delete_one(self, obj: RateLimit) -> None:
        services.rate_limit_delete(rate_limit=obj)


@admin.register(GuardrailPolicy)
class GuardrailPolicyAdmin(ScopedAdmin):
    list_display = ("name", "applies_to", "direction", "is_active")
    list_filter = ("direction", "is_active")
    fields = (
        "customer",
        "team",
        "virtual_key",
        *services.GUARDRAIL_FIELDS,
    )

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        return ("customer", "team", "virtual_key") if obj else ()

    def save_model(
        self, request: HttpRequest, obj: GuardrailPolicy, form: Any, change: bool
    ) -> None:
        values = {name: getattr(obj, name) for name in services.GUARDRAIL_FIELDS}
        if change:
            services.guardrail_policy_update(
                policy=GuardrailPolicy.objects.get(pk=obj.pk), **values
            )
        else:
            created = services.guardrail_policy_create(
                owner=obj.customer or obj.team or obj.virtual_key, **values
            )
            obj.pk = created.pk

    def delete_one(self, obj: GuardrailPolicy) -> None:
        services.guardrail_policy_delete(policy=obj)


@admin.register(ModelPrice)
class ModelPriceAdmin(admin.ModelAdmin):
    list_display = (
        "provider_kind",
        "model",
        "input_micros_per_mtok",
        "cached_input_micros_per_mtok",
        "output_micros_per_mtok",
        "effective_from",
    )
    list_filter = ("provider_kind",)
    search_fields = ("model",)

    def save_model(self, request: HttpRequest, obj: ModelPrice, form: Any, change: bool) -> None:
        price, _ = services.model_price_set(
            provider_kind=obj.provider_kind,
            model=obj.model,
            input_micros_per_mtok=obj.input_micros_per_mtok,
            output_micros_per_mtok=obj.output_micros_per_mtok,
            cached_input_micros_per_mtok=obj.cached_input_micros_per_mtok,
            max_output_tokens=obj.max_output_tokens,
            effective_from=obj.effective_from,
        )
        obj.pk = price.pk

    def delete_model(self, request: HttpRequest, obj: ModelPrice) -> None:
        services.model_price_delete(price=obj)

    def delete_queryset(self, request: HttpRequest, queryset: Any) -> None:
        for price in queryset:
            services.model_price_delete(price=price)


@admin.register(RequestRecord)
class RequestRecordAdmin(ReadOnlyModelAdmin):
    """The usage ledger, read-only: records are written by the data plane only."""

    list_display = (
        "time",
        "request_id",
        "status",
        "error_code",
        "requested_model",
        "provider",
        "input_tokens",
        "output_tokens",
        "cost_micros",
        "latency_ms",
        "guardrail_flags",
    )
    list_filter = ("status", "provider", "stream", "usage_estimated")
    search_fields = ("request_id", "client_request_id", "requested_model")
    date_hierarchy = "time"
    show_full_result_count = False  # no COUNT(*) over millions of rows per page
