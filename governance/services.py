"""Writes of budgets, rate limits, guardrail policies, access rules and prices.

Like ``keys.services``, every change bumps the configuration revision so the
data plane picks it up.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from django.db import transaction
from django.utils import timezone

from audit.services import audit_event_record
from audit.snapshots import audit_snapshot
from governance.guardrails import RULE_FIELDS
from governance.models import (
    MICROS,
    Budget,
    BudgetPeriodHistory,
    GuardrailPolicy,
    ModelPrice,
    RateLimit,
    Reconciliation,
)
from keys.models import Customer, Team, VirtualKey
from keys.services import ServiceError, config_revision_bump

Owner = Customer | Team | VirtualKey


def _record(action: str, instance: Any, before: dict[str, Any] | None) -> None:
    # Last in the transaction: the audit chain's lock is taken after the rows'.
    audit_event_record(
        action=action, instance=instance, before=before, after=audit_snapshot(instance)
    )


def _delete(instance: Any) -> None:
    before = audit_snapshot(instance)
    instance.delete()
    config_revision_bump()
    audit_event_record(action="delete", instance=instance, before=before, after=None)


def scope_filter(owner: Owner) -> dict[str, Any]:
    """The fields (and lookup) attaching a budget or limit to ``owner``."""
    if isinstance(owner, Customer):
        return {"customer": owner}
    if isinstance(owner, Team):
        return {"team": owner}
    if isinstance(owner, VirtualKey):
        return {"virtual_key": owner}
    raise ServiceError(f"budgets and limits attach to a customer, team or key, not {owner!r}")


def money_to_micros(amount: Decimal | int | str) -> int:
    """Micro-units from a decimal amount (``"12.50"`` → 12,500,000)."""
    value = Decimal(str(amount)) * MICROS
    if value != value.to_integral_value():
        raise ServiceError(f"{amount} has more than six decimal places")
    if value < 0:
        raise ServiceError("an amount cannot be negative")
    return int(value)


def micros_to_money(micros: int) -> str:
    """A decimal amount from micro-units (12,500,000 → ``"12.5"``)."""
    text = f"{Decimal(micros) / MICROS:f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


@transaction.atomic
def budget_create(
    *,
    owner: Owner,
    amount_micros: int,
    period: str,
    calendar_aligned: bool = True,
    anchor: dt.datetime | None = None,
) -> Budget:
    budget = Budget(
        **scope_filter(owner),
        amount_micros=amount_micros,
        period=period,
        calendar_aligned=calendar_aligned,
        anchor=anchor or timezone.now(),
    )
    budget.full_clean()
    budget.save()
    config_revision_bump()
    _record("create", budget, None)
    return budget


@transaction.atomic
def budget_update(*, budget: Budget, amount_micros: int) -> Budget:
    if budget.amount_micros != amount_micros:
        before = audit_snapshot(budget)
        budget.amount_micros = amount_micros
        budget.full_clean()
        budget.save(update_fields=["amount_micros", "updated_at"])
        config_revision_bump()
        _record("update", budget, before)
    return budget


@transaction.atomic
def budget_delete(*, budget: Budget) -> None:
    _delete(budget)


@transaction.atomic
def rate_limit_create(
    *, owner: Owner, metric: str, limit: int, window_seconds: int = 60
) -> RateLimit:
    rate_limit = RateLimit(
        **scope_filter(owner), metric=metric, limit=limit, window_seconds=window_seconds
    )
    rate_limit.full_clean()
    rate_limit.save()
    config_revision_bump()
    _record("create", rate_limit, None)
    return rate_limit


@transaction.atomic
def rate_limit_update(*, rate_limit: RateLimit, limit: int) -> RateLimit:
    if rate_limit.limit != limit:
        before = audit_snapshot(rate_limit)
        rate_limit.limit = limit
        rate_limit.full_clean()
        rate_limit.save(update_fields=["limit", "updated_at"])
        config_revision_bump()
        _record("update", rate_limit, before)
    return rate_limit


@transaction.atomic
def rate_limit_delete(*, rate_limit: RateLimit) -> None:
    _delete(rate_limit)


@transaction.atomic
def model_price_set(
    *,
    provider_kind: str,
    model: str,
    input_micros_per_mtok: int,
    output_micros_per_mtok: int,
    cached_input_micros_per_mtok: int | None = None,
    max_output_tokens: int | None = None,
    effective_from: dt.datetime | None = None,
) -> tuple[ModelPrice, bool]:
    """Create or change the price of a model from a date; returns (price, changed)."""
    effective_from = effective_from or dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
    values = {
        "input_micros_per_mtok": input_micros_per_mtok,
        "output_micros_per_mtok": output_micros_per_mtok,
        "cached_input_micros_per_mtok": cached_input_micros_per_mtok,
        "max_output_tokens": max_output_tokens,
    }
    price = ModelPrice.objects.filter(
        provider_kind=provider_kind, model=model, effective_from=effective_from
    ).first()
    if price is not None and all(getattr(price, name) == value for name, value in values.items()):
        return price, False
    before = audit_snapshot(price) if price is not None else None
    price = price or ModelPrice(
        provider_kind=provider_kind, model=model, effective_from=effective_from
    )
    for name, value in values.items():
        setattr(price, name, value)
    price.full_clean()
    price.save()
    config_revision_bump()
    _record("create" if before is None else "update", price, before)
    return price, True


@transaction.atomic
def model_price_delete(*, price: ModelPrice) -> None:
    _delete(price)


GUARDRAIL_FIELDS = ("name", *RULE_FIELDS, "is_active")


@transaction.atomic
def guardrail_policy_create(
    *,
    name: str,
    owner: Owner | None = None,
    direction: str = "both",
    detectors: dict[str, str] | None = None,
    deny_patterns: list[dict[str, str]] | None = None,
    allow_patterns: list[str] | None = None,
    max_input_tokens: int | None = None,
    max_messages: int | None = None,
    is_active: bool = True,
) -> GuardrailPolicy:
    """A guardrail policy for ``owner`` (a customer, team or key), or global without one."""
    policy = GuardrailPolicy(
        **(scope_filter(owner) if owner is not None else {}),
        name=name,
        direction=direction,
        detectors=detectors or {},
        deny_patterns=deny_patterns or [],
        allow_patterns=allow_patterns or [],
        max_input_tokens=max_input_tokens,
        max_messages=max_messages,
        is_active=is_active,
    )
    policy.full_clean()
    policy.save()
    config_revision_bump()
    _record("create", policy, None)
    return policy


@transaction.atomic
def guardrail_policy_update(*, policy: GuardrailPolicy, **changes: Any) -> GuardrailPolicy:
    """Change a policy's rules (any of ``GUARDRAIL_FIELDS``); its scope stays."""
    unknown = set(changes) - set(GUARDRAIL_FIELDS)
    if unknown:
        raise ServiceError(f"a guardrail policy has no field {sorted(unknown)[0]!r} to change")
    changed = [name for name, value in changes.items() if getattr(policy, name) != value]
    if not changed:
        return policy
    before = audit_snapshot(policy)
    for name in changed:
        setattr(policy, name, changes[name])
    policy.full_clean()
    policy.save(update_fields=[*changed, "updated_at"])
    config_revision_bump()
    _record("update", policy, before)
    return policy


@transaction.atomic
def guardrail_policy_delete(*, policy: GuardrailPolicy) -> None:
    _delete(policy)


# --- finished budget periods ---------------------------------------------------------


@transaction.atomic
def budget_period_close(
    *,
    budget: Budget,
    period_start: dt.datetime,
    period_end: dt.datetime,
    spent_micros: int,
    requests: int,
    counter_micros: int | None,
) -> BudgetPeriodHistory | None:
    """Record a finished period of ``budget`` and how the counter and the log agreed.

    ``spent_micros`` and ``requests`` come from the request log,
    ``counter_micros`` from the live counter (``None``: no longer there).
    They *match* when equal (or when nothing was spent and no counter was
    kept), are a *mismatch* otherwise, or *no_counter* when spending was
    recorded but the counter is gone. Nothing is corrected: the counter's
    period is over, and the history keeps both numbers. A period already
    closed is left as it was (returns ``None``). One audit event.
    """
    if BudgetPeriodHistory.objects.filter(budget=budget, period_start=period_start).exists():
        return None
    if counter_micros is None:
        outcome = Reconciliation.MATCHED if spent_micros == 0 else Reconciliation.NO_COUNTER
    elif counter_micros == spent_micros:
        outcome = Reconciliation.MATCHED
    else:
        outcome = Reconciliation.MISMATCH
    history = BudgetPeriodHistory.objects.create(
        budget=budget,
        period_start=period_start,
        period_end=period_end,
        limit_micros=budget.amount_micros,
        spent_micros=spent_micros,
        requests=requests,
        counter_micros=counter_micros,
        reconciliation=outcome,
    )
    audit_event_record(action="close", instance=history, before=None, after=audit_snapshot(history))
    return history
