"""Budget periods and windows start exactly at their boundaries."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest

from governance.limits import AdmissionPlan, CounterCheck, MemoryLimits
from governance.periods import period_bounds, window_bounds


def ts(text: str) -> float:
    return dt.datetime.fromisoformat(text).timestamp()


@pytest.mark.parametrize(
    ("period", "now", "start", "end"),
    [
        (
            "1m",
            "2026-03-10T10:20:30+00:00",
            "2026-03-10T10:20:00+00:00",
            "2026-03-10T10:21:00+00:00",
        ),
        (
            "1h",
            "2026-03-10T10:20:30+00:00",
            "2026-03-10T10:00:00+00:00",
            "2026-03-10T11:00:00+00:00",
        ),
        (
            "1d",
            "2026-03-10T23:59:59+00:00",
            "2026-03-10T00:00:00+00:00",
            "2026-03-11T00:00:00+00:00",
        ),
        (
            "1w",
            "2026-03-12T08:00:00+00:00",
            "2026-03-09T00:00:00+00:00",
            "2026-03-16T00:00:00+00:00",
        ),
        (
            "1M",
            "2026-02-28T12:00:00+00:00",
            "2026-02-01T00:00:00+00:00",
            "2026-03-01T00:00:00+00:00",
        ),
        (
            "1M",
            "2026-12-31T23:59:59+00:00",
            "2026-12-01T00:00:00+00:00",
            "2027-01-01T00:00:00+00:00",
        ),
        (
            "1Q",
            "2026-05-15T00:00:00+00:00",
            "2026-04-01T00:00:00+00:00",
            "2026-07-01T00:00:00+00:00",
        ),
        (
            "1Y",
            "2026-05-15T00:00:00+00:00",
            "2026-01-01T00:00:00+00:00",
            "2027-01-01T00:00:00+00:00",
        ),
    ],
)
def test_calendar_periods_align_to_the_calendar(period, now, start, end):
    assert period_bounds(period, ts(now)) == (ts(start), ts(end))


def test_a_calendar_day_follows_the_configured_time_zone_across_daylight_saving():
    # 2026-03-29 is 23 hours long in Berlin (clocks go forward).
    start, end = period_bounds("1d", ts("2026-03-29T12:00:00+02:00"), timezone="Europe/Berlin")
    assert start == ts("2026-03-29T00:00:00+01:00")
    assert end == ts("2026-03-30T00:00:00+02:00")
    assert end - start == 23 * 3600


def test_rolling_periods_repeat_from_their_anchor():
    anchor = ts("2026-01-31T09:30:00+00:00")
    assert period_bounds(
        "1d", ts("2026-02-02T10:00:00+00:00"), calendar_aligned=False, anchor=anchor
    ) == (
        ts("2026-02-02T09:30:00+00:00"),
        ts("2026-02-03T09:30:00+00:00"),
    )
    # A monthly period anchored on the 31st starts on the last day of February.
    assert period_bounds(
        "1M", ts("2026-03-05T00:00:00+00:00"), calendar_aligned=False, anchor=anchor
    ) == (
        ts("2026-02-28T09:30:00+00:00"),
        ts("2026-03-31T09:30:00+00:00"),
    )


def test_windows_are_aligned_to_the_epoch():
    assert window_bounds(1_000_000_030.5, 60) == (1_000_000_020, 1_000_000_080)


def budget_check(now: float, amount: int) -> AdmissionPlan:
    start, end = period_bounds("1h", now)
    return AdmissionPlan(
        counters=[
            CounterCheck(
                key=f"budget:1:{start}",
                limit=100,
                amount=amount,
                expires_at=end,
                kind="budget",
                label="b",
            )
        ]
    )


def test_a_new_period_begins_exactly_at_the_boundary():
    limits = MemoryLimits()
    boundary = ts("2026-06-01T13:00:00+00:00")
    last_moment, first_moment = boundary - 0.001, boundary

    async def scenario() -> list[bool]:
        outcomes = []
        outcomes.append(
            (await limits.admit(budget_check(last_moment - 10, 100), last_moment - 10)).admitted
        )
        outcomes.append((await limits.admit(budget_check(last_moment, 1), last_moment)).admitted)
        outcomes.append(
            (await limits.admit(budget_check(first_moment, 100), first_moment)).admitted
        )
        outcomes.append((await limits.admit(budget_check(first_moment, 1), first_moment)).admitted)
        return outcomes

    assert asyncio.run(scenario()) == [True, False, True, False]


def test_settlement_returns_what_was_reserved_but_not_used():
    limits = MemoryLimits()
    now = ts("2026-06-01T13:30:00+00:00")

    async def scenario() -> list[bool]:
        plan = budget_check(now, 80)
        first = (await limits.admit(plan, now)).admitted
        blocked = (await limits.admit(budget_check(now, 30), now)).admitted
        await limits.settle(plan, {plan.counters[0].key: 10 - 80}, now)
        after = (await limits.admit(budget_check(now, 30), now)).admitted
        return [first, blocked, after]

    assert asyncio.run(scenario()) == [True, False, True]
