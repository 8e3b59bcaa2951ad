"""Every change made through governance.services records exactly one audit event."""

from __future__ import annotations

import inspect

import pytest

from governance import services
from governance.models import Budget, ModelPrice, RateLimit
from tests.audit_fixtures import build_world, new_events

pytestmark = pytest.mark.django_db

MUTATIONS = {
    "budget_create",
    "budget_update",
    "budget_delete",
    "rate_limit_create",
    "rate_limit_update",
    "rate_limit_delete",
    "model_price_set",
    "model_price_delete",
    "guardrail_policy_create",
    "guardrail_policy_update",
    "guardrail_policy_delete",
    "budget_period_close",
}


def test_the_walk_covers_every_governance_service():
    public = {
        name
        for name, function in inspect.getmembers(services, inspect.isfunction)
        if function.__module__ == services.__name__ and not name.startswith("_")
    }
    readers = {"scope_filter", "money_to_micros", "micros_to_money"}
    assert public - readers == MUTATIONS


def test_budgets_record_create_update_and_delete():
    world = build_world()
    with new_events() as created:
        budget = services.budget_create(owner=world.team, amount_micros=5_000_000, period="1d")
    with new_events() as updated:
        services.budget_update(budget=budget, amount_micros=7_000_000)
    with new_events() as unchanged:
        services.budget_update(budget=budget, amount_micros=7_000_000)
    with new_events() as deleted:
        services.budget_delete(budget=Budget.objects.get(pk=budget.pk))
    assert [e.action for e in created] == ["create"]
    assert created[0].after["amount_micros"] == 5_000_000
    assert [(e.before["amount_micros"], e.after["amount_micros"]) for e in updated] == [
        (5_000_000, 7_000_000)
    ]
    assert unchanged == []
    assert [(e.action, e.after) for e in deleted] == [("delete", None)]
    assert deleted[0].object_type == "governance.budget"


def test_rate_limits_record_create_update_and_delete():
    world = build_world()
    with new_events() as events:
        limit = services.rate_limit_create(owner=world.key, metric="requests", limit=10)
        services.rate_limit_update(rate_limit=limit, limit=20)
        services.rate_limit_update(rate_limit=limit, limit=20)
        services.rate_limit_delete(rate_limit=RateLimit.objects.get(pk=limit.pk))
    assert [e.action for e in events] == ["create", "update", "delete"]
    assert events[1].before["limit"] == 10 and events[1].after["limit"] == 20


def test_prices_record_a_change_once():
    with new_events() as events:
        price, _ = services.model_price_set(
            provider_kind="openai", model="gpt-x", input_micros_per_mtok=1, output_micros_per_mtok=2
        )
        services.model_price_set(
            provider_kind="openai", model="gpt-x", input_micros_per_mtok=1, output_micros_per_mtok=2
        )
        services.model_price_set(
            provider_kind="openai", model="gpt-x", input_micros_per_mtok=3, output_micros_per_mtok=2
        )
        services.model_price_delete(price=ModelPrice.objects.get(pk=price.pk))
    assert [e.action for e in events] == ["create", "update", "delete"]


def test_closing_a_budget_period_records_one_event_and_a_second_close_none():
    import datetime as dt

    world = build_world()
    budget = services.budget_create(owner=world.team, amount_micros=1_000, period="1d")
    start = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
    close = {
        "budget": budget,
        "period_start": start,
        "period_end": start + dt.timedelta(days=1),
        "spent_micros": 400,
        "requests": 3,
        "counter_micros": 400,
    }
    with new_events() as events:
        history = services.budget_period_close(**close)
        again = services.budget_period_close(**close)
    assert again is None
    [event] = events
    assert (event.action, event.object_type) == ("close", "governance.budgetperiodhistory")
    assert event.object_id == str(history.pk)
    assert event.before is None and event.after["spent_micros"] == 400
