"""Closing finished budget periods: history, reconciliation with the live counters, one audit
event each, never rewritten; read-only over the API.

The live counters are taken through the real limits backend of the mode
(Redis in cluster mode, this process's memory embedded), as admission does.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid

import pytest
from django.conf import settings
from django.test import override_settings
from django.utils import timezone

from audit.models import AuditEvent
from governance import enforcement, services
from governance.budget_periods import counter_final_value
from governance.limits import AdmissionPlan, CounterCheck, RedisLimits
from governance.models import Budget, BudgetPeriodHistory, RequestRecord
from governance.tasks import budget_periods_close
from tests.api_fixtures import ApiWorld

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("immediate_closing")]

HOUR = dt.timedelta(hours=1)


@pytest.fixture
def immediate_closing():
    """Periods close as soon as they end; counters of this test only (ids repeat across tests)."""
    prefix = f"{settings.GATEWAY_REDIS_PREFIX}-{uuid.uuid4().hex[:6]}"
    with override_settings(GATEWAY_BUDGET_CLOSE_DELAY_SECONDS=0, GATEWAY_REDIS_PREFIX=prefix):
        yield


def this_hour() -> dt.datetime:
    return timezone.now().astimezone(dt.UTC).replace(minute=0, second=0, microsecond=0)


def take(budget: Budget, start: dt.datetime, micros: int) -> None:
    """Spend ``micros`` on the counter of the period starting at ``start``, as admission does."""
    check = CounterCheck(
        key=enforcement.budget_counter_key(budget.pk, int(start.timestamp())),
        limit=10**15,
        amount=micros,
        expires_at=int((start + HOUR).timestamp()),
        kind="budget",
        label="test",
        keep_seconds=enforcement.budget_counter_keep_seconds(),
    )

    async def admit() -> None:
        if settings.REDIS_URL:
            from gateway_project.redis_client import async_client

            client = async_client()
            await RedisLimits(client).admit(AdmissionPlan(counters=[check]), start.timestamp())
            await client.aclose()
        else:
            await enforcement.backend().admit(AdmissionPlan(counters=[check]), start.timestamp())

    asyncio.run(admit())


def spend(team_id: int, moment: dt.datetime, micros: int) -> None:
    RequestRecord.objects.create(
        request_id=f"b-{team_id}-{moment.timestamp()}-{micros}",
        time=moment,
        team_id=team_id,
        status=200,
        cost_micros=micros,
    )


@pytest.fixture
def hourly(db):
    """An hourly team budget created three hours ago; counters agreeing, disagreeing, missing."""
    world = ApiWorld()
    budget = services.budget_create(owner=world.team, amount_micros=5_000, period="1h")
    hour = this_hour()
    Budget.objects.filter(pk=budget.pk).update(created_at=hour - 3 * HOUR + dt.timedelta(minutes=5))
    budget.refresh_from_db()
    first, second, third = hour - 3 * HOUR, hour - 2 * HOUR, hour - HOUR
    spend(world.team.pk, first + dt.timedelta(minutes=1), 700)
    spend(world.team.pk, first + dt.timedelta(minutes=50), 300)
    take(budget, first, 1_000)  # matches
    spend(world.team.pk, second + dt.timedelta(minutes=3), 400)
    take(budget, second, 450)  # a settlement the log does not have
    spend(world.team.pk, third + dt.timedelta(minutes=3), 90)  # no counter at all
    spend(world.other_team.pk, third + dt.timedelta(minutes=4), 5)  # another team's
    world.budget_periods = (first, second, third)
    world.hourly = budget
    return world


def history_of(budget: Budget) -> list[BudgetPeriodHistory]:
    return list(BudgetPeriodHistory.objects.filter(budget=budget).order_by("period_start"))


def test_each_finished_period_gets_its_limit_spend_counter_and_verdict(hourly):
    budget_periods_close()

    first, second, third = history_of(hourly.hourly)
    assert [h.period_start for h in (first, second, third)] == list(hourly.budget_periods)
    assert all(h.period_end - h.period_start == HOUR for h in (first, second, third))
    assert all(h.limit_micros == 5_000 for h in (first, second, third))
    assert (first.spent_micros, first.requests, first.counter_micros) == (1_000, 2, 1_000)
    assert first.reconciliation == "matched"
    assert (second.spent_micros, second.counter_micros, second.reconciliation) == (
        400,
        450,
        "mismatch",
    )
    assert second.difference_micros == 50
    assert (third.spent_micros, third.counter_micros, third.reconciliation) == (
        90,
        None,
        "no_counter",
    )


def test_the_current_period_and_those_inside_the_delay_stay_open(hourly):
    with override_settings(GATEWAY_BUDGET_CLOSE_DELAY_SECONDS=3 * 3600):
        budget_periods_close()
    assert history_of(hourly.hourly) == []  # none has been over for three hours

    budget_periods_close()

    assert this_hour() not in [h.period_start for h in history_of(hourly.hourly)]


def test_closing_again_changes_nothing_and_rewrites_no_counter(hourly):
    budget_periods_close()
    closed = [(h.pk, h.spent_micros, h.counter_micros) for h in history_of(hourly.hourly)]
    events = AuditEvent.objects.count()
    second = hourly.budget_periods[1]
    spend(hourly.team.pk, second + dt.timedelta(minutes=30), 50)  # a record arriving late

    budget_periods_close()

    assert [(h.pk, h.spent_micros, h.counter_micros) for h in history_of(hourly.hourly)] == closed
    assert AuditEvent.objects.count() == events
    assert counter_final_value(hourly.hourly.pk, int(second.timestamp())) == 450


def test_each_closing_writes_one_audit_event_by_the_system_job(hourly):
    before = AuditEvent.objects.count()

    budget_periods_close()

    events = AuditEvent.objects.order_by("sequence")[before:]
    closings = [e for e in events if e.object_type == "governance.budgetperiodhistory"]
    assert (
        len(events)
        == len(closings)
        == len(history_of(hourly.hourly)) + len(history_of(hourly.budget))
    )
    assert {(e.action, e.actor_kind, e.actor_name) for e in closings} == {
        ("close", "system", "system:budget_periods_close")
    }
    assert closings[0].after["spent_micros"] is not None


def test_the_api_lists_the_history_to_readers_of_the_budgets_only(hourly):
    budget_periods_close()

    admin = hourly.client("admin").get(f"/api/v1/budget-periods/?budget={hourly.hourly.pk}")
    assert admin.status_code == 200
    rows = admin.json()["results"]
    assert [row["reconciliation"] for row in rows] == ["no_counter", "mismatch", "matched"]
    assert rows[1]["difference_micros"] == 50
    manager_rows = hourly.client("manager").get("/api/v1/budget-periods/").json()["results"]
    other_budget_ids = {hourly.other_budget.pk}
    assert manager_rows and not {row["budget"] for row in manager_rows} & other_budget_ids
    assert hourly.client("auditor").get("/api/v1/budget-periods/").status_code == 403
    assert hourly.client("admin").post("/api/v1/budget-periods/", {}).status_code == 405


def test_the_console_shows_a_budgets_finished_periods_to_those_who_see_the_budget(hourly):
    from django.test import Client
    from django.urls import reverse

    budget_periods_close()
    admin, manager = Client(), Client()
    admin.force_login(hourly.users["admin"])
    manager.force_login(hourly.users["manager"])
    url = reverse("governance:budget_periods", args=[hourly.hourly.pk])

    page = admin.get(url)
    assert page.status_code == 200
    rows = [row["cells"] for row in page.context["table"]]
    assert [row[-1] for row in rows] == ["counter unavailable", "mismatch", "matched"]
    assert rows[-1][2] == "0.001"  # 1,000 micro-units spent in the first period
    assert manager.get(url).status_code == 200
    other = reverse("governance:budget_periods", args=[hourly.other_budget.pk])
    assert manager.get(other).status_code == 404
    edit = admin.get(reverse("governance:budgets_edit", args=[hourly.hourly.pk]))
    assert url in edit.content.decode()
