"""Usage series: the request log summed by hour or day and by key, team, provider or model."""

from __future__ import annotations

import datetime as dt
import itertools

import pytest

from governance.models import RequestRecord
from governance.selectors import percentile_cont, usage_group_labels, usage_series
from keys import services

pytestmark = pytest.mark.django_db

DAY = dt.datetime(2026, 3, 2, tzinfo=dt.UTC)
_ids = itertools.count()


def record(time: dt.datetime, **fields) -> RequestRecord:
    values = {
        "request_id": f"req-{next(_ids)}",
        "time": time,
        "status": 200,
        "provider": "openai",
        "served_model": "gpt-4o",
        "requested_model": "gpt-4o",
    }
    values.update(fields)
    return RequestRecord.objects.create(**values)


def test_it_sums_requests_errors_tokens_and_cost_per_day():
    record(DAY, input_tokens=10, output_tokens=5, cached_tokens=2, cost_micros=100)
    record(DAY + dt.timedelta(hours=5), status=502, input_tokens=3, cost_micros=7)
    record(DAY + dt.timedelta(days=1), status=429)

    first, second = usage_series(bucket="day")

    assert first.bucket == DAY
    assert (first.requests, first.errors) == (2, 1)
    assert (first.input_tokens, first.output_tokens, first.cached_tokens) == (13, 5, 2)
    assert first.total_tokens == 18
    assert first.cost_micros == 107
    assert second.bucket == DAY + dt.timedelta(days=1)
    assert (second.requests, second.errors, second.cost_micros) == (1, 1, 0)


def test_it_buckets_by_hour_and_keeps_the_range_half_open():
    record(DAY + dt.timedelta(minutes=5))
    record(DAY + dt.timedelta(minutes=55))
    record(DAY + dt.timedelta(hours=1, minutes=1))
    record(DAY + dt.timedelta(hours=2))  # at ``until``: left out

    points = usage_series(bucket="hour", since=DAY, until=DAY + dt.timedelta(hours=2))

    assert [(p.bucket, p.requests) for p in points] == [
        (DAY, 2),
        (DAY + dt.timedelta(hours=1), 1),
    ]


def test_latency_percentiles_interpolate_between_ranks():
    for latency in (100, 200, 300, 400, 1000):
        record(DAY, latency_ms=latency)

    (point,) = usage_series(bucket=None)

    assert point.latency_p50_ms == pytest.approx(300)
    assert point.latency_p95_ms == pytest.approx(880)  # 400 + 0.8 * (1000 - 400)
    assert percentile_cont([], 0.5) is None


def test_it_splits_by_team_and_names_the_groups():
    customer = services.customer_create(name="acme")
    team = services.team_create(name="search", customer=customer)
    record(DAY, team_id=team.pk, cost_micros=5)
    record(DAY, team_id=team.pk, cost_micros=6)
    record(DAY, team_id=999_999, cost_micros=1)

    points = usage_series(bucket=None, group_by="team")

    assert {p.group: p.cost_micros for p in points} == {team.pk: 11, 999_999: 1}
    labels = usage_group_labels("team", [p.group for p in points])
    assert labels == {team.pk: "search", 999_999: "#999999"}


def test_the_model_of_a_request_no_provider_served_is_the_one_asked_for():
    record(DAY, served_model="gpt-4o-2024-08-06", requested_model="gpt-4o")
    record(DAY, served_model="", requested_model="claude-sonnet", status=404)

    points = usage_series(bucket="day", group_by="model")

    assert {p.group: (p.requests, p.errors) for p in points} == {
        "claude-sonnet": (1, 1),
        "gpt-4o-2024-08-06": (1, 0),
    }


def test_it_aggregates_only_the_records_it_is_given():
    record(DAY, key_id=1, provider="openai")
    record(DAY, key_id=2, provider="anthropic")

    points = usage_series(records=RequestRecord.objects.filter(key_id=2), group_by="provider")

    assert [(p.group, p.requests) for p in points] == [("anthropic", 1)]


def test_it_refuses_an_unknown_bucket_or_group():
    with pytest.raises(ValueError, match="bucket"):
        usage_series(bucket="week")
    with pytest.raises(ValueError, match="group_by"):
        usage_series(group_by="colour")
