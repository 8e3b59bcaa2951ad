"""Reads of budgets, limits, guardrail policies and prices, shaped for the data
plane's snapshot."""

from __future__ import annotations

from typing import Any

from django.utils import timezone

from governance.guardrails import RULE_FIELDS
from governance.models import Budget, GuardrailPolicy, ModelPrice, RateLimit
from keys.models import Customer, Team, VirtualKey

SCOPE_FIELDS = ("customer_id", "team_id", "virtual_key_id")


def _scope(row: dict[str, Any]) -> tuple[str, int]:
    if row["customer_id"]:
        return ("customer", row["customer_id"])
    if row["team_id"]:
        return ("team", row["team_id"])
    return ("key", row["virtual_key_id"])


def snapshot_rows() -> dict[str, Any]:
    """Policies by scope, the active guardrail policies, and the prices in force now."""
    policies: dict[tuple[str, int], dict[str, Any]] = {}

    def policy(scope: tuple[str, int]) -> dict[str, Any]:
        return policies.setdefault(
            scope, {"allowed_models": [], "max_concurrent": None, "budgets": [], "rate_limits": []}
        )

    for kind, model in (("customer", Customer), ("team", Team), ("key", VirtualKey)):
        for row in model.objects.values("id", "allowed_models", "max_concurrent_requests"):
            if row["allowed_models"] or row["max_concurrent_requests"] is not None:
                entry = policy((kind, row["id"]))
                entry["allowed_models"] = list(row["allowed_models"] or [])
                entry["max_concurrent"] = row["max_concurrent_requests"]
    for row in Budget.objects.values(
        "id", *SCOPE_FIELDS, "amount_micros", "period", "calendar_aligned", "anchor"
    ):
        policy(_scope(row))["budgets"].append(row)
    for row in RateLimit.objects.values("id", *SCOPE_FIELDS, "metric", "limit", "window_seconds"):
        policy(_scope(row))["rate_limits"].append(row)

    prices: dict[tuple[str, str], dict[str, Any]] = {}
    in_force = ModelPrice.objects.filter(effective_from__lte=timezone.now()).order_by(
        "provider_kind", "model", "-effective_from"
    )
    for row in in_force.values(
        "provider_kind",
        "model",
        "input_micros_per_mtok",
        "output_micros_per_mtok",
        "cached_input_micros_per_mtok",
        "max_output_tokens",
    ):
        prices.setdefault((row["provider_kind"], row["model"]), row)
    guardrail_policies = list(
        GuardrailPolicy.objects.filter(is_active=True).values("id", *SCOPE_FIELDS, *RULE_FIELDS)
    )
    return {"policies": policies, "prices": prices, "guardrail_policies": guardrail_policies}
